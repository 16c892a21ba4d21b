"""``ray up`` on-premise, end to end: cluster/local.yaml, edited only where its comments ask, on two "machines"
of this one (the head 127.0.0.3, the worker 127.0.0.4), reached over SSH as a user of their own.

The test makes that user (``tlsweep-ci-<random>``) with an ed25519 key of its own, starts an sshd of its own that
listens on those two loopback addresses only (port 22: Ray's SSH takes no port option), then runs what
docs/CLUSTER.md tells a user to run: ``ray up``, ``ray submit ... cluster/submit.py -- quickstart``,
``ray down``. The nodes reuse this project's venv (``TLSWEEP_NODE_VENV``), so nothing is downloaded. Afterwards
nothing it started is left: no process of that user, no sshd, no user, no temporary file.

Both nodes are this machine and the same user, so the worker's sshd runs in a PID namespace of its own
(``unshare --pid``): the ``ray stop`` that ``worker_start_ray_commands`` runs sees only the worker's processes, as
on a machine of its own, instead of ending the head's Ray. HOME, /tmp and the network stay shared.

Needs root (a user, an sshd on port 22), ``sshd`` (openssh-server) and ``rsync``, which ``.ci/run`` installs.
"""
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from analysis.load import load
from orchestrator.stopping import end_processes

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
HEAD_IP, WORKER_IP = "127.0.0.3", "127.0.0.4"  # never 127.0.0.1: Ray swaps it for the machine's own address
WAIT_S = 900  # generous: other tests share these cores
# `ray submit` passes these to a remote shell unquoted: no spaces, braces or brackets in a value
STUDY_ARGS = ["quickstart", "--set", "model.arch=scratch_cnn", "--set", "training.epochs=2",
              "--set", "resources.cpu=2"]   # two trials (the two learning rates), one per node


def missing() -> str:
    if os.geteuid() != 0:
        return "needs root: it creates a user and starts an sshd on port 22"
    for tool, package in (("sshd", "openssh-server"), ("rsync", "rsync"), ("ssh", "openssh-client")):
        if not shutil.which(tool):
            return f"needs {tool} (apt-get install {package}), as .ci/run installs it"
    for ip in (HEAD_IP, WORKER_IP):
        with socket.socket() as s:
            if s.connect_ex((ip, 22)) == 0:
                return f"port 22 on {ip} is held by another sshd (Ray's SSH takes no port option)"
    return ""


pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(missing()), reason=missing() or "-")]


def run(argv: list[str], log: Path, env: dict, timeout: int = WAIT_S) -> str:
    """Run a command from the repository copy (``file_mounts`` copies "."), its output appended to ``log``."""
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.run(argv, cwd=env["PWD"], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{' '.join(argv[:3])} failed ({proc.returncode}); log:\n{text[-6000:]}"
    return text


def wait_for(what: str, check, timeout: float = WAIT_S, describe=lambda: "") -> None:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{describe()}")
        time.sleep(1)


def logs_tail(folder: Path, pattern: str, chars: int = 3000) -> str:
    """The ends of the log files under ``folder`` that match ``pattern``, for a failure message."""
    return "\n".join(f"==> {f}\n{f.read_text(errors='replace')[-chars:]}" for f in sorted(folder.glob(pattern))
                     if f.is_file())


class Machine:
    """The set-up a cluster of this machine needs, and its undoing: a user, its key, an sshd, a venv it can run.

    ``close()`` undoes everything (also after a failure) and returns what it could not remove.
    """

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="tlsw-up-", dir="/tmp"))  # short: Ray's socket paths are limited
        self.tmp.chmod(0o755)
        self.user = f"tlsweep-ci-{secrets.token_hex(3)}"
        self.sshds: list[subprocess.Popen] = []
        self.opened: list[tuple[Path, int]] = []   # folders given o+x, with their old mode
        self.made_run_sshd = False
        self.ray_ssh_before = set(Path("/tmp").glob("ray_ssh_*"))
        self.closed = False
        self.removed: list[str] = []
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", self.user],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(self.user)
        self.uid, self.home = entry.pw_uid, Path(entry.pw_dir)

    def own(self, path: Path) -> Path:
        os.chown(path, self.uid, pwd.getpwnam(self.user).pw_gid)
        return path

    def let_run(self, paths: list[str]) -> None:
        """Let the user reach ``paths`` (the venv, the Python it was made from, the repository): o+x on every
        folder above them that lacks it (e.g. /root, which holds pyenv), taken back in close()."""
        for p in paths:
            for folder in [Path(p), *Path(p).parents]:
                mode = folder.stat().st_mode
                if folder.is_dir() and not mode & stat.S_IXOTH and all(f != folder for f, _ in self.opened):
                    self.opened.append((folder, stat.S_IMODE(mode)))
                    folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)

    def start_sshd(self) -> Path:
        key = self.tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.user, "-f", str(key)], check=True)
        host_key = self.tmp / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        ssh = self.home / ".ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        self.own(ssh)
        auth = ssh / "authorized_keys"
        auth.write_text(Path(f"{key}.pub").read_text())
        auth.chmod(0o600)
        self.own(auth)
        if not Path("/run/sshd").exists():   # sshd's privilege separation folder, made by the service otherwise
            Path("/run/sshd").mkdir(mode=0o755, parents=True)
            self.made_run_sshd = True
        logs = []
        for name, ip, wrap in (("head", HEAD_IP, []), ("worker", WORKER_IP, ["unshare", "--pid", "--fork",
                                                                             "--mount-proc"])):
            config = self.tmp / f"sshd_config.{name}"
            config.write_text("\n".join([
                "Port 22", f"ListenAddress {ip}", f"HostKey {host_key}", f"PidFile {self.tmp / f'sshd.{name}.pid'}",
                "AuthorizedKeysFile .ssh/authorized_keys", f"AllowUsers {self.user}", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "PermitRootLogin no", "UsePAM no", "MaxSessions 64",
                "MaxStartups 64", ""]))
            logs.append(self.tmp / f"sshd.{name}.log")
            self.sshds.append(subprocess.Popen([*wrap, shutil.which("sshd"), "-D", "-f", str(config), "-E",
                                                str(logs[-1])], start_new_session=True))

        def listening():
            for sshd, log in zip(self.sshds, logs):
                assert sshd.poll() is None, f"sshd ended: {log.read_text()}"
            return all(socket.socket().connect_ex((ip, 22)) == 0 for ip in (HEAD_IP, WORKER_IP))
        wait_for("sshd", listening, timeout=60)
        return key

    def processes(self) -> list:
        return [p for p in psutil.process_iter(["uids", "name", "cmdline"])
                if p.info["uids"] and p.info["uids"].real == self.uid]

    def close(self) -> list[str]:
        """Stop and remove everything; what is left over (should be nothing)."""
        if self.closed:
            return []
        self.closed = True
        left = []
        for sshd in self.sshds:   # the worker's: unshare and its sshd, PID 1 of a namespace that ends with it
            group = [sshd.pid] + [c.pid for c in psutil.Process(sshd.pid).children()] if sshd.poll() is None else []
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in reversed(group):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                try:
                    sshd.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    pass
        procs = self.processes()   # after a failure: whatever Ray of this user is still running
        if procs:
            left.append(f"{len(procs)} processes of {self.user}: {sorted({p.info['name'] for p in procs})}")
        end_processes([[p.pid, round(p.create_time(), 2)] for p in procs], grace_s=30)  # SIGTERM, then SIGKILL
        psutil.wait_procs(procs, timeout=30)
        done = subprocess.run(["userdel", "--remove", self.user], capture_output=True, text=True)
        if done.returncode not in (0, 12):   # 12: the mail spool it never had
            left.append(f"userdel: {done.stderr.strip()}")
        for folder, mode in reversed(self.opened):
            folder.chmod(mode)
        for p in set(Path("/tmp").glob("ray_ssh_*")) - self.ray_ssh_before:   # ray up's SSH control sockets
            shutil.rmtree(p, ignore_errors=True)
        if self.made_run_sshd:
            shutil.rmtree("/run/sshd", ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        # what that user's processes left in the shared folders (a killed process keeps its multiprocessing
        # folder /tmp/pymp-*), removed; reported only if it could not be
        find = ["find", "/tmp", "/dev/shm", "-xdev", "-mindepth", "1", "-maxdepth", "1", "-uid", str(self.uid)]
        self.removed = subprocess.run(find, capture_output=True, text=True).stdout.split()
        for s in self.removed:
            shutil.rmtree(s, ignore_errors=True) if os.path.isdir(s) and not os.path.islink(s) else os.unlink(s)
        left += [f"file of {self.user}: {s}" for s in subprocess.run(find, capture_output=True, text=True).stdout.split()]
        return left


def repository_copy(dest: Path) -> Path:
    """The repository without what .gitignore lists, as a checkout holds it: ``ray up`` reads every file under
    "." to hash it (rsync_filter applies only to the copy), and this repository's .venv alone is ~7 GB."""
    top = {".git", ".venv", "results", "data", "build", ".pytest_cache"}

    def ignore(folder, names):
        return {n for n in names if (Path(folder) == ROOT and n in top) or n == "__pycache__"
                or n.endswith((".pyc", ".egg-info"))}
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def edited_local_yaml(key: Path, user: str, name: str) -> dict:
    """cluster/local.yaml with only the edits its comments ask for: a cluster name of its own, the machines'
    addresses, the SSH user and key, and the venv the machines already have."""
    config = yaml.safe_load((ROOT / "cluster" / "local.yaml").read_text())
    edited = yaml.safe_load((ROOT / "cluster" / "local.yaml").read_text())
    edited["cluster_name"] = name
    edited["provider"].update(head_ip=HEAD_IP, worker_ips=[WORKER_IP])
    edited["auth"].update(ssh_user=user, ssh_private_key=str(key))
    first = edited["setup_commands"][0]
    assert first.startswith("TLSWEEP_NODE_VENV= "), first
    edited["setup_commands"][0] = first.replace("TLSWEEP_NODE_VENV=", f"TLSWEEP_NODE_VENV={sys.prefix}", 1)
    changed = {k for k in config if config[k] != edited[k]}
    assert changed == {"cluster_name", "provider", "auth", "setup_commands"}
    return edited


def ray_args(proc) -> dict:
    """``--name=value`` arguments of a Ray process."""
    return dict(re.findall(r"--([\w-]+)=(\S+)", " ".join(proc.info["cmdline"] or [])))


@pytest.fixture
def machine():
    m = Machine()
    try:
        yield m
    finally:
        m.close()


def test_ray_up_submit_down_on_premise(machine):
    m = machine
    key = m.start_sshd()
    m.let_run([os.path.realpath(sys.executable), sys.prefix, str(ROOT)])
    # This machine is the launcher, the head and the worker at once: the nodes' Ray keeps its files (and the
    # head's autoscaler its node list) apart from the launcher's, and nothing here reaches the internet.
    node_tmp = m.tmp / "node"
    node_tmp.mkdir()
    m.own(node_tmp)
    bashrc = m.home / ".bashrc"
    bashrc.write_text(f"export RAY_TMPDIR={node_tmp} HF_HUB_OFFLINE=1\n" + bashrc.read_text())
    storage = m.tmp / "storage"
    storage.mkdir()
    m.own(storage)

    launcher = m.tmp / "launcher"   # the launcher's HOME: its token, never root's own ~/.ray
    launcher.mkdir()
    repo = repository_copy(m.tmp / "repo")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    env = {**env, "HOME": str(launcher), "RAY_TMPDIR": str(launcher),
           "PATH": f"{Path(RAY).parent}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0", "PWD": str(repo)}
    log = m.tmp / "launcher.log"
    run([RAY, "get-auth-token", "--generate"], log, env, timeout=120)
    token = (launcher / ".ray" / "auth_token").read_text().strip()
    assert len(token) >= 32

    config = m.tmp / "local.yaml"
    config.write_text(yaml.safe_dump(edited_local_yaml(key, m.user, f"tlsweep-ci-{m.user[-6:]}")))
    ray_up_started = time.time()
    try:
        run([RAY, "up", "-y", "--no-config-cache", str(config)], log, env)
        up_s = time.time() - ray_up_started

        # both nodes joined, each at the address it was listed under, with token auth and no usage stats
        def raylets():
            return {ray_args(p).get("node_ip_address") for p in m.processes() if p.info["name"] == "raylet"}
        wait_for("the worker node's raylet", lambda: raylets() == {HEAD_IP, WORKER_IP}, timeout=600,
                 describe=lambda: f"raylets at {raylets()}\n" + logs_tail(node_tmp, "ray/session_*/logs/monitor*"))
        checked = set()
        for p in m.processes():
            args = " ".join(p.info["cmdline"] or [])
            assert not re.search(r"\b192\.0\.2\.\d+", args), args   # never the machine's own address
            if p.info["name"] in ("gcs_server", "raylet"):
                environ = p.environ()
                assert environ.get("RAY_AUTH_MODE") == "token", p.info["name"]
                if p.info["name"] == "gcs_server":   # the head's: the one that would report usage stats
                    assert environ.get("RAY_USAGE_STATS_ENABLED") == "0", environ.get("RAY_USAGE_STATS_ENABLED")
                checked.add(p.info["name"])
        assert checked == {"gcs_server", "raylet"}
        assert (m.home / ".ray" / "auth_token").read_text().strip() == token   # the file_mounts copy
        # the job API on the head's dashboard (loopback): refused with another token, answered with the cluster's
        jobs = [RAY, "job", "list", "--address", "http://127.0.0.1:8265"]
        refused = subprocess.run(jobs, capture_output=True, text=True, timeout=300,
                                 env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64})
        assert refused.returncode != 0 and re.search(r"(?i)authenticat", refused.stdout + refused.stderr), refused
        run(jobs, log, {**env, "RAY_AUTH_MODE": "token"}, timeout=300)   # the token file in the launcher's HOME

        submit_started = time.time()
        run([RAY, "submit", str(config), "cluster/submit.py", "--", *STUDY_ARGS, "--storage", str(storage)],
            log, env)
        submit_s = time.time() - submit_started
        t = load(storage / "quickstart")
        assert len(t.trials) == 2 and set(t.trials["status"]) == {"TERMINATED"}, t.trials.get("status")
        assert not t.epochs.duplicated(["trial_id", "epoch"]).any()
        assert t.epochs.groupby("trial_id")["epoch"].apply(lambda s: sorted(s) == [1, 2]).all()

        down_started = time.time()
        run([RAY, "down", "-y", str(config)], log, env, timeout=600)
        ray_up_started = None
        # then no process of that user at all: Ray's SSH sessions end 10 s after their last use (ControlPersist)
        wait_for("no process of the cluster's user", lambda: not m.processes(), timeout=180)
        down_s = time.time() - down_started
    finally:
        if ray_up_started is not None:   # a failure after `ray up` began: stop the cluster before the user goes
            subprocess.run([RAY, "down", "-y", str(config)], cwd=repo, env=env, capture_output=True, timeout=600)
    print(f"ray up {up_s:.0f} s, ray submit (2 quickstart trials) {submit_s:.0f} s, ray down {down_s:.0f} s")
    uid, tmp = m.uid, m.tmp
    assert m.close() == []
    print(f"removed what {m.user}'s processes left in /tmp and /dev/shm: {m.removed}")
    with pytest.raises(KeyError):
        pwd.getpwnam(m.user)
    assert not tmp.exists() and not [p for p in psutil.process_iter(["uids"]) if p.info["uids"]
                                      and p.info["uids"].real == uid]
