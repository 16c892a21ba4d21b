"""Nodes that share only the network and the study storage, as separate machines do.

Each worker node is a ``ray start`` in a mount namespace of its own (``unshare --mount``) with private tmpfs
folders over HOME, the tlsweep caches (pretrained weights, frozen features), Ray's temp folder and /dev/shm: a file
the driver writes there is not on the node. Every node has an address of its own on the loopback range (the head
127.0.0.3, the workers 127.0.0.2 and 127.0.0.4; Ray replaces 127.0.0.1 by the machine's address). The study
storage is a folder all of them see. The head has no CPUs, so every trial runs on a worker node.
"""
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray
import yaml

from analysis.load import load
from orchestrator.tuner import run_study
from search_spaces import study_from_dict
from tests.conftest import tiny_study

RAY = str(Path(sys.executable).with_name("ray"))
HEAD_IP, WORKER_IPS = "127.0.0.3", ("127.0.0.2", "127.0.0.4")
WAIT_S = 600  # generous: other tests share these cores


def can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not can_unshare(), reason="needs unshare --mount (root or user namespaces)")


def free_port(ip: str = "") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_for(what: str, check, log: Path) -> None:
    deadline = time.time() + WAIT_S
    while not check():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; log:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


class Node:
    """One ``ray start --block`` we started, in its own session: stopped by its process group and pids only."""

    def __init__(self, args: list[str], temp_dir: Path, log: Path, env: dict, private: list[str] = (),
                 keep: list[str] = ()):
        self.temp_dir, self.log = temp_dir, log
        start = [RAY, "start", *args, "--temp-dir", str(temp_dir), "--disable-usage-stats", "--block",
                 "--object-store-memory", str(256 * 2**20),
                 "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())]
        if private:
            # software installed under a private folder (a Python under HOME) comes back: a machine has its own
            views = [(shlex.quote(k), shlex.quote(str(temp_dir.parent / f"{temp_dir.name}-keep{i}")))
                     for i, k in enumerate(keep)]
            save = "".join(f"mkdir -p {v} && mount --bind {k} {v} && " for k, v in views)
            mounts = "".join(f"mount -t tmpfs tmpfs {shlex.quote(p)} && " for p in private)
            back = "".join(f"mkdir -p {k} && mount --bind {v} {k} && " for k, v in views)
            start = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                     f"{save}{mounts}{back}exec {shlex.join(start)}"]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(start, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)

    def ours(self) -> list:
        """Our ``ray start`` and every process it started (they name our temp folder, or descend from it)."""
        import psutil
        procs = []
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        for p in psutil.process_iter(["cmdline"]):
            if str(self.temp_dir) in " ".join(p.info["cmdline"] or []) and p not in procs:
                procs.append(p)
        return procs

    def stop(self) -> None:
        import psutil
        procs = self.ours()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            for p in procs:
                try:
                    p.send_signal(sig)
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(procs, timeout=30)
            if not alive:
                break
        self.proc.wait(timeout=30)


def use_auth(values: dict) -> None:
    """Set (or, with None, unset) this process's Ray token settings: Ray caches both when it first reads them."""
    from ray._raylet import AuthenticationTokenLoader, Config
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture
def separate_nodes(monkeypatch):
    """A head (0 CPUs) and two worker nodes of 1 CPU each that share nothing but the network and ``<root>/storage``."""
    if ray.is_initialized():
        ray.shutdown()
    root = Path(tempfile.mkdtemp(prefix="tlsw-nodes-", dir="/tmp"))  # short: Ray's socket paths are limited
    cache = root / "cache"
    monkeypatch.setenv("TLSWEEP_CACHE", str(cache))  # the driver's pretraining cache: private on every worker
    # token authentication, as the shipped cluster files set it up: every node and the driver get the token
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {k: os.environ.get(k) for k in auth}
    env = {**os.environ, **auth, "RAY_USAGE_STATS_ENABLED": "0"}
    private = [os.path.expanduser("~"), str(cache), os.environ["TLSWEEP_FEATURE_CACHE"], "/dev/shm"]
    for p in private:
        Path(p).mkdir(parents=True, exist_ok=True)
    installed = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, str(Path(__file__).parents[2]))}
    keep = sorted(p for p in installed if any(p == q or p.startswith(q.rstrip("/") + "/") for q in private))
    nodes: list[Node] = []
    port = free_port()
    try:
        head = Node(["--head", "--node-ip-address", HEAD_IP, "--port", str(port), "--num-cpus", "0",
                     "--include-dashboard", "false", "--ray-client-server-port", str(free_port())],
                    root / "head", root / "head.log", env)
        nodes.append(head)
        wait_for("the head", lambda: b"Ray runtime started" in head.log.read_bytes() or head.proc.poll() is not None,
                 head.log)
        assert head.proc.poll() is None, head.log.read_text()[-4000:]
        for i, ip in enumerate(WORKER_IPS):
            temp = root / f"node{i}"
            temp.mkdir()
            nodes.append(Node(["--address", f"{HEAD_IP}:{port}", "--node-ip-address", ip, "--num-cpus", "1"],
                              temp, root / f"node{i}.log", env, private=[*private, str(temp)], keep=keep))
        use_auth(auth)
        ray.init(address=f"{HEAD_IP}:{port}", _node_ip_address=HEAD_IP, log_to_driver=False)
        workers = lambda: [n for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] in WORKER_IPS]  # noqa
        wait_for("both worker nodes", lambda: len(workers()) == 2, nodes[-1].log)
        yield root, {n["NodeID"] for n in workers()}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        use_auth(saved)  # the next tests' Ray finds its own token again
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_pretrained_study_runs_on_nodes_that_share_only_the_storage(separate_nodes):
    root, worker_ids = separate_nodes
    study = study_from_dict(tiny_study(
        "apart", data={"name": "digits", "image_size": 16, "classes": [5, 6, 7, 8, 9], "samples_per_class": 10},
        model={"arch": {"grid": ["scratch_cnn", "baseline_cnn", "test_resnet"]}, "strategy": "linear_probe",
               "weights": {"pretrain": {"data": {"name": "digits", "classes": [0, 1, 2, 3, 4],
                                                 "samples_per_class": 40}, "epochs": 1,
                                        "skip": ["scratch_cnn"]}}},
        training={"epochs": 2, "batch_size": 32, "lr": {"grid": [0.003, 0.01]}},
        resources={"cpu": 1, "gpu": 0, "max_failures": 0, "keep": 1}))
    folder, grid = run_study(study, storage=str(root / "storage"))
    assert not grid.errors, [str(e).splitlines()[-1] for e in grid.errors]
    t = load(folder)
    assert len(t.trials) == 6 and set(t.trials["status"]) == {"TERMINATED"}
    assert not t.epochs.duplicated(["trial_id", "epoch"]).any()
    assert t.epochs.groupby("trial_id")["epoch"].apply(lambda s: sorted(s) == [1, 2]).all()
    assert set(t.epochs["node_id"]) == worker_ids, "trials should have run on both worker nodes"
    # the study folder holds its own copy of the pretrained weights, named relative to it
    pretrained = yaml.safe_load((folder / "pretrained.yaml").read_text())
    assert sorted(pretrained) == ["baseline_cnn", "test_resnet"]
    assert all(not os.path.isabs(p) and (folder / p).is_file() for p in pretrained.values())
