"""The cluster launcher files, checked offline: Ray's own config validation, no credentials, a dashboard that
stays private, cluster/submit.py, and every command in docs/CLUSTER.md."""
import ast
import copy
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import jsonschema
import pytest
import yaml
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
DOC = ROOT / "docs" / "CLUSTER.md"
CLOUD_FILES = ["cluster.yaml", "gcp.yaml"]
ALL_FILES = CLOUD_FILES + ["local.yaml"]
COMMAND_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands")


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def ray_check(config: dict) -> dict:
    """Ray's checks of a cluster config: the steps of ``ray up`` (``commands._bootstrap_config``) that run
    before any machine is touched, without contacting a cloud.

    ``_bootstrap_config`` runs: ``prepare_config`` (merge the provider's ``defaults.yaml`` shipped with Ray,
    merge setup commands, check docker, fill per-type min/max workers; for ``local``, ``prepare_local`` builds
    the node type from ``head_ip`` / ``worker_ips``) -> import the provider (AWS needs boto3, GCP
    googleapiclient) -> ``fillout_available_node_types_resources`` (AWS asks EC2 for the instance types) ->
    ``validate_config`` (the JSON schema ``ray/autoscaler/ray-schema.json``, ``head_node_type`` among the node
    types, the sum of ``min_workers`` within ``max_workers``) -> the provider's ``bootstrap_config`` (AWS/GCP:
    create IAM roles, key pairs, security groups in the account). For ``local`` every step is offline
    (its bootstrap returns the config unchanged), so the whole function runs. For AWS and GCP the provider steps
    need the cloud SDKs and the network, so this runs the two steps around them that do not: ``prepare_config``
    then ``validate_config``. Our files declare every node type's ``resources``, so the skipped EC2 lookup would
    not change what ``validate_config`` sees.
    """
    if config["provider"]["type"] == "local":
        return _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def commands(config: dict) -> list[str]:
    found = [c for key in COMMAND_KEYS for c in config.get(key) or []]
    for node_type in (config.get("available_node_types") or {}).values():
        found += [c for key in COMMAND_KEYS for c in node_type.get(key) or []]
    return found


# ---------------------------------------------------------------- Ray's validation

@pytest.mark.parametrize("name", ALL_FILES)
def test_ray_accepts_the_cluster_file(name):
    config = ray_check(load(name))
    assert config["cluster_name"] == "tlsweep"
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("name", CLOUD_FILES)
def test_every_node_type_declares_cpus_and_gpus(name):
    """The autoscaler plans from these numbers: GPU trials only on workers, never on the head."""
    config = ray_check(load(name))
    types = config["available_node_types"]
    for type_name, node_type in types.items():
        res = node_type["resources"]
        assert isinstance(res.get("CPU"), int) and res["CPU"] > 0, type_name
        assert isinstance(res.get("GPU"), int), type_name
        if type_name == config["head_node_type"]:
            assert res["GPU"] == 0 and node_type["max_workers"] == 0
        else:
            assert res["GPU"] >= 1 and node_type["max_workers"] >= 1, type_name
            assert node_type["min_workers"] == 0, f"{type_name}: GPU workers start only when trials wait"
    assert sum(t["max_workers"] for t in types.values()) >= config["max_workers"] >= 1


def test_aws_workers_can_run_on_spot():
    text = (CLUSTER / "cluster.yaml").read_text()
    assert "InstanceMarketOptions:" in text and "MarketType: spot" in text
    assert load("cluster.yaml")["provider"]["cache_stopped_nodes"] is False


def _first_worker(config: dict) -> dict:
    return next(t for n, t in config["available_node_types"].items() if n != config["head_node_type"])


BROKEN_CLOUD = {
    "unknown top-level key": (lambda c: c.update(max_wokers=3), jsonschema.ValidationError),
    "max_workers as a string": (lambda c: c.update(max_workers="10"), jsonschema.ValidationError),
    "a fraction of a GPU in resources": (lambda c: _first_worker(c)["resources"].update(GPU=0.5),
                                         jsonschema.ValidationError),
    "unknown key in a node type": (lambda c: _first_worker(c).update(max_worker=2), jsonschema.ValidationError),
    "head type not among the node types": (lambda c: c.update(head_node_type="nope"), ValueError),
    "min_workers above max_workers": (lambda c: _first_worker(c).update(min_workers=c["max_workers"] + 1),
                                      ValueError),
}
BROKEN_LOCAL = {
    "unknown top-level key": (lambda c: c.update(head_ips=["192.0.2.10"]), jsonschema.ValidationError),
    "worker_ips not a list": (lambda c: c["provider"].update(worker_ips="192.0.2.11"),
                              jsonschema.ValidationError),
    "unknown auth key": (lambda c: c["auth"].update(ssh_key="~/.ssh/id_ed25519"), jsonschema.ValidationError),
}


@pytest.mark.parametrize("name", CLOUD_FILES)
@pytest.mark.parametrize("case", sorted(BROKEN_CLOUD))
def test_ray_rejects_a_broken_cloud_file(name, case):
    mutate, error = BROKEN_CLOUD[case]
    config = load(name)
    mutate(config)
    with pytest.raises(error):
        ray_check(config)


@pytest.mark.parametrize("case", sorted(BROKEN_LOCAL))
def test_ray_rejects_a_broken_local_file(case):
    mutate, error = BROKEN_LOCAL[case]
    config = load("local.yaml")
    mutate(config)
    with pytest.raises(error):
        ray_check(config)


# ---------------------------------------------------------------- what the files do

SECRET_PATTERNS = [r"aws_access_key_id", r"aws_secret_access_key", r"aws_session_token", r"\bAKIA[0-9A-Z]{16}\b",
                   r"\bASIA[0-9A-Z]{16}\b", r"BEGIN [A-Z ]*PRIVATE KEY", r"\"private_key\"\s*:", r"gcp_credentials",
                   r"password\s*[:=]", r"\bsecret\w*\s*[:=]", r"\btoken\s*[:=]"]


@pytest.mark.parametrize("path", sorted(CLUSTER.glob("*.yaml")) + sorted(CLUSTER.glob("*.py")) + [DOC],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_credentials(path):
    text = path.read_text()
    for pattern in SECRET_PATTERNS:
        assert not re.search(pattern, text, re.IGNORECASE), f"{path.name}: matches {pattern}"


@pytest.mark.parametrize("name", ALL_FILES)
def test_ssh_key_is_a_path_not_a_key(name):
    key = load(name).get("auth", {}).get("ssh_private_key")
    if key is not None:
        assert key.startswith(("~/", "/")) and "\n" not in key and len(key) < 200


@pytest.mark.parametrize("name", ALL_FILES)
def test_dashboard_stays_on_the_head_loopback(name):
    config = load(name)
    for command in commands(config):
        assert "0.0.0.0" not in command, command
    starts = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert starts and all("--head" in c and "--dashboard-host=127.0.0.1" in c for c in starts)
    assert all("--autoscaling-config=~/ray_bootstrap_config.yaml" in c for c in starts)
    assert not config["provider"].get("security_group"), "no extra open ports"
    workers = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    assert workers and all("--address=$RAY_HEAD_IP:6379" in c for c in workers)


@pytest.mark.parametrize("name", ALL_FILES)
def test_nodes_get_the_repository_and_install_it(name):
    config = load(name)
    submit = _submit_module()
    assert config["file_mounts"] == {submit.REPO_ON_NODE: ".", TOKEN_FILE: TOKEN_FILE}
    assert ".gitignore" in config["rsync_filter"], "keep .venv, results and data out of the copy"
    setup = config["setup_commands"]
    if name == "local.yaml":   # cluster/node_setup.sh installs, from the repository copy
        assert any(c.endswith(" sh ~/tlsweep/cluster/node_setup.sh") for c in setup)
        setup = [line.replace('"$REPO"', "~/tlsweep") for line in (CLUSTER / "node_setup.sh").read_text().splitlines()]
    assert any(re.search(r"pip\"? install .*-e ~/tlsweep\b", c) for c in setup)


def _node_setup(home: Path, **env) -> subprocess.CompletedProcess:
    (home / "tlsweep").mkdir(parents=True, exist_ok=True)
    return subprocess.run(["sh", str(CLUSTER / "node_setup.sh")], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home), **env})


def test_node_setup_reuses_an_installed_venv(tmp_path):
    """TLSWEEP_NODE_VENV: ~/tlsweep-venv becomes that venv, nothing is installed; a second run changes nothing."""
    for _ in range(2):
        done = _node_setup(tmp_path, TLSWEEP_NODE_VENV=sys.prefix)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "tlsweep-venv").resolve() == Path(sys.prefix).resolve()
        assert (tmp_path / ".bashrc").read_text() == "source ~/tlsweep-venv/bin/activate\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bashrc", "tlsweep", "tlsweep-venv"]


@pytest.mark.parametrize("env, named", [({"TLSWEEP_NODE_VENV": "/nonexistent/venv"}, "TLSWEEP_NODE_VENV=/nonexistent"),
                                        ({"TLSWEEP_NODE_VENV": sys.prefix, "TLSWEEP_WHEELHOUSE": "/w"},
                                         "TLSWEEP_NODE_VENV and TLSWEEP_WHEELHOUSE"),
                                        ({"TLSWEEP_WHEELHOUSE": "/nonexistent/wheels"}, "TLSWEEP_WHEELHOUSE=")])
def test_node_setup_names_a_wrong_variable(tmp_path, env, named):
    done = _node_setup(tmp_path, **env)
    assert done.returncode == 2 and done.stderr.startswith(named) and len(done.stderr.splitlines()) == 1, done
    assert not (tmp_path / "tlsweep-venv").is_symlink()


def test_shared_storage_is_explained_at_the_top():
    for name, scheme in (("cluster.yaml", "s3://"), ("gcp.yaml", "gs://"), ("local.yaml", "/mnt/")):
        head = (CLUSTER / name).read_text().split("\ncluster_name:")[0]
        assert "Shared storage is required" in head and f"--storage {scheme}" in head, name


# ---------------------------------------------------------------- cluster/submit.py

def _submit_module():
    spec = importlib.util.spec_from_file_location("tlsweep_cluster_submit", CLUSTER / "submit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_submit_help_exits_zero():
    out = subprocess.run([sys.executable, str(CLUSTER / "submit.py"), "--help"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "ray submit cluster/cluster.yaml cluster/submit.py --" in out.stdout


def test_submit_imports_nothing_heavy():
    code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('m', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "print(sorted({n.split('.')[0] for n in sys.modules} & {'ray', 'torch', 'orchestrator', 'pandas', "
            "'yaml', 'trainables'}))")
    out = subprocess.run([sys.executable, "-c", code, str(CLUSTER / "submit.py")], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_submit_runs_tlsweep_run_on_the_cluster(monkeypatch, tmp_path):
    import orchestrator.cli
    calls = []
    monkeypatch.setattr(orchestrator.cli, "main", lambda argv: calls.append(argv) or 7)
    monkeypatch.chdir(ROOT)   # restored after the test; submit.py changes folder
    submit = _submit_module()
    code = submit.main(["--workdir", str(tmp_path), "search_spaces/inaturalist_freezing.yaml",
                        "--storage", "s3://BUCKET/tlsweep", "--set", "training.epochs=2"])
    assert code == 7
    assert calls == [["run", "search_spaces/inaturalist_freezing.yaml", "--address", "auto",
                      "--storage", "s3://BUCKET/tlsweep", "--set", "training.epochs=2"]]
    assert Path.cwd() == tmp_path.resolve()
    # What it builds is a valid `tlsweep run` command line.
    args = orchestrator.cli.build_parser().parse_args(calls[0])
    assert (args.address, args.storage, args.set) == ("auto", "s3://BUCKET/tlsweep", ["training.epochs=2"])


# ---------------------------------------------------------------- docs/CLUSTER.md

def doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.DOTALL)


def doc_commands() -> list[list[str]]:
    """Each shell command of the doc's bash blocks as words, continuation lines joined, VAR=value prefixes off."""
    found = []
    for block in doc_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
                words = words[1:]
            if words:
                found.append(words)
    return found


def parse_ray(words: list[str]) -> dict:
    """Parse a ``ray ...`` command line with Ray's own click CLI, without running it."""
    from ray.scripts.scripts import cli
    cmd, name, rest = cli, "ray", words[1:]
    while isinstance(cmd, click.Group):
        name, rest = rest[0], rest[1:]
        cmd = cmd.get_command(click.Context(cmd), name)
        assert cmd is not None, f"no such ray command: {' '.join(words)}"
    try:
        return cmd.make_context(name, list(rest)).params
    except click.ClickException as e:
        raise AssertionError(f"{' '.join(words)}: {e.format_message()}") from None


def check_tlsweep(words: list[str]) -> None:
    import orchestrator.cli
    from search_spaces import find_study
    try:
        args = orchestrator.cli.build_parser().parse_args(words[1:])
    except SystemExit:
        raise AssertionError(f"not a valid tlsweep command: {' '.join(words)}") from None
    if args.command == "run":
        find_study(str(ROOT / args.study) if "/" in args.study else args.study)


def test_doc_names_only_files_that_exist():
    text = DOC.read_text()
    paths = set(re.findall(r"(?<![\w/.~-])((?:cluster|search_spaces|docs|tests)/[\w./-]*\w)", text))
    assert {"cluster/cluster.yaml", "cluster/submit.py", "search_spaces/inaturalist_freezing.yaml"} <= paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []


def test_doc_shows_the_whole_path():
    text = " ".join(" ".join(w) for w in doc_commands())
    for expected in ["ray up cluster/cluster.yaml",
                     "ray submit cluster/cluster.yaml cluster/submit.py -- search_spaces/inaturalist_freezing.yaml "
                     "--storage s3://BUCKET/tlsweep",
                     "ray dashboard cluster/cluster.yaml",
                     "ray job submit --address http://127.0.0.1:8265 --working-dir . -- tlsweep run search_spaces/",
                     "tlsweep status s3://BUCKET/tlsweep/",
                     "ray down cluster/cluster.yaml"]:
        assert expected in text, expected
    assert 'load("s3://BUCKET/tlsweep/' in DOC.read_text()
    assert "http://127.0.0.1:8265" in DOC.read_text() and "{gpu: 0.5}" in DOC.read_text()


def test_doc_commands_parse_with_the_cli_they_call(monkeypatch):
    monkeypatch.chdir(ROOT)
    submit = _submit_module()
    checked = 0
    for words in doc_commands():
        if words[0] == "ray":
            params = parse_ray(words)
            if "cluster_config_file" in params:
                config = params["cluster_config_file"]
                assert (ROOT / config).is_file() and config.startswith("cluster/"), config
            if words[1] == "submit":
                assert params["script"] == "cluster/submit.py"
                sub = submit.build_parser().parse_args(list(params["script_args"]))
                check_tlsweep(["tlsweep", *submit.run_argv(sub.study, sub.args)])
            if words[1:3] == ["job", "submit"]:
                check_tlsweep(list(params["entrypoint"]))
            checked += 1
        elif words[0] == "tlsweep":
            check_tlsweep(words)
            checked += 1
    assert checked >= 15


def test_doc_python_imports_exist():
    blocks = doc_blocks("python")
    assert blocks
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


@pytest.mark.parametrize("name", ALL_FILES)
def test_the_head_does_not_report_usage_stats(name):
    starts = [c for c in load(name)["head_start_ray_commands"] if "ray start" in c]
    assert starts and all("--disable-usage-stats" in c for c in starts)  # README: Ray's defaults


# ---------------------------------------------------------------- secure defaults

TOKEN_FILE = "~/.ray/auth_token"  # where `ray get-auth-token --generate` writes it, on your machine and each node


@pytest.mark.parametrize("name", ALL_FILES)
def test_token_authentication_is_on_for_every_node_and_driver(name):
    """Every Ray started on a node asks for the token (RAY_AUTH_MODE=token), which reaches the nodes as a file
    copied from the machine that runs `ray up`, never as text in the cluster file."""
    config = ray_check(load(name))
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in config[key]
              if "ray start" in c]
    assert len(starts) == 2
    for command in starts:
        before = command.split("ray start")[0]
        assert re.search(r"(^|[\s;])RAY_AUTH_MODE=token\s", before), command
    assert config["file_mounts"][TOKEN_FILE] == TOKEN_FILE
    assert any("export RAY_AUTH_MODE=token" in c and "~/.bashrc" in c for c in config["setup_commands"])
    assert "RAY_AUTH_TOKEN" not in (CLUSTER / name).read_text()


@pytest.mark.parametrize("name", ALL_FILES)
def test_ray_stop_is_explained_where_it_runs(name):
    """`ray stop` is not scoped to one cluster: the file says so next to the commands that run it."""
    text = (CLUSTER / name).read_text()
    before = text.split("\nhead_start_ray_commands:")[0].rsplit("\n\n", 1)[-1]
    assert "`ray stop`" in before and "a user of its own" in before
    assert "Ray's own ports and ray stop" in DOC.read_text()


def test_local_workers_are_the_listed_ones():
    """On-premise, Ray's node count comes from worker_ips: no max_workers that could disagree with the list."""
    raw = load("local.yaml")
    assert "max_workers" not in raw and "min_workers" not in raw
    config = ray_check(raw)
    node_type = config["available_node_types"][config["head_node_type"]]
    assert config["max_workers"] == node_type["max_workers"] == len(raw["provider"]["worker_ips"])


@pytest.mark.parametrize("name", CLOUD_FILES)
def test_cloud_max_workers_is_what_the_worker_types_allow(name):
    """The cluster-wide cap equals the sum of the worker types' caps: neither one silently lowers the other."""
    config = ray_check(load(name))
    types = config["available_node_types"]
    assert config["max_workers"] == sum(t["max_workers"] for n, t in types.items() if n != config["head_node_type"])


def test_doc_explains_the_token_ports_and_storage():
    text = DOC.read_text()
    for expected in ["ray get-auth-token --generate", "RAY_AUTH_MODE=token", "52365", "--dashboard-agent-listen-port",
                     "pretrained", "node-local", "ray disable-usage-stats"]:
        assert expected in text, expected
