"""``tlsweep run --dashboard``: the Ray dashboard shows the study while it runs, on loopback only, opened the way the
CLI prints (Ray's token authentication is on); Ray's usage stats stay off under the CLI."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest
import yaml

from tests.conftest import tiny_study

TLSWEEP = os.path.join(os.path.dirname(sys.executable), "tlsweep")


def get_json(url: str, token: str):
    """GET from the dashboard (loopback only) with Ray's token (Ray 2.60 requires one by default)."""
    headers = {"Authorization": "Bearer " + token}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        assert r.status == 200
        return json.loads(r.read().decode())


def printed_route(text: str) -> tuple[str, str]:
    """(dashboard URL, token) as the printed lines say: run the command that prints the token."""
    m = re.search(r'from a script: curl -H "Authorization: Bearer \$\((.+?)\)" (http://[\d.]+:\d+)/api/jobs/', text)
    assert m, text[-2000:]
    assert f"paste what '{m.group(1).replace(' 2>/dev/null', '')}' prints" in text
    token = subprocess.run(m.group(1), shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    assert token, m.group(1)
    return m.group(2), token


def status_code(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_dashboard_shows_the_running_study_on_loopback_only(tmp_path):
    study = tiny_study("dash", training={"epochs": 30, "lr": {"grid": [0.001, 0.002]}})
    path = tmp_path / "dash.yaml"
    path.write_text(yaml.safe_dump(study))
    log = tmp_path / "out.log"
    # the user did not choose: the CLI turns Ray's usage stats off
    env = {k: v for k, v in {**os.environ, "HF_HUB_OFFLINE": "1"}.items() if k != "RAY_USAGE_STATS_ENABLED"}
    with open(log, "w") as out:
        proc = subprocess.Popen([TLSWEEP, "run", str(path), "--storage", str(tmp_path / "res"), "--dashboard"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        url = None
        deadline = time.time() + 120
        while url is None and time.time() < deadline and proc.poll() is None:
            m = re.search(r"Ray dashboard: (http://[\d.]+:\d+)", log.read_text())
            url = m.group(1) if m else None
            time.sleep(0.5)
        assert url, log.read_text()[-2000:]
        assert url.startswith("http://127.0.0.1:")
        while "from a script:" not in log.read_text() and time.time() < deadline:
            time.sleep(0.2)
        route, token = printed_route(log.read_text())
        assert route == url
        assert status_code(f"{url}/api/jobs/") == 401  # without the token: Ray's authentication is on
        port = int(url.rsplit(":", 1)[1])
        actors = []
        while time.time() < deadline and proc.poll() is None:
            try:
                reply = get_json(f"{url}/api/v0/actors?limit=100", token)
                actors = reply["data"]["result"]["result"]
            except Exception:  # noqa: BLE001 - the dashboard is still starting
                actors = []
            if any("ImplicitFunc" in a.get("class_name", "") and a.get("state") == "ALIVE" for a in actors):
                break
            time.sleep(1)
        assert any("ImplicitFunc" in a.get("class_name", "") for a in actors), actors[:3]
        jobs = get_json(f"{url}/api/jobs/", token)
        assert any(j.get("type") == "DRIVER" and j.get("status") == "RUNNING" for j in jobs), jobs
        # Ray's usage stats are off where they would be sent from: the dashboard head's usage-stats module
        usage = get_json(f"{url}/usage_stats_enabled", token)
        assert usage["data"]["usageStatsEnabled"] is False, usage
        # bound to loopback: the listening socket's address, read from the OS (no traffic to other addresses)
        listening = [c.laddr.ip for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        assert listening and set(listening) <= {"127.0.0.1"}, listening
    finally:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
        except ProcessLookupError:  # it had already ended (the assertion above says why)
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class FakeRay:
    """What start_ray calls of Ray; records the usage-stats variable the Ray processes would inherit."""

    def __init__(self):
        self.seen = "unset"

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.seen = os.environ.get("RAY_USAGE_STATS_ENABLED", "unset")
        return type("Context", (), {"dashboard_url": "127.0.0.1:8265"})()


@pytest.mark.parametrize("user, expected", [(None, "0"), ("1", "1"), ("0", "0")])
def test_the_cli_turns_usage_stats_off_unless_the_user_opted_in(monkeypatch, capsys, user, expected):
    from orchestrator import cli
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    if user is None:
        monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    else:
        monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", user)
    monkeypatch.setattr("orchestrator.dashboard.token_auth_enabled", lambda: True)
    cli.start_ray(None, dashboard=True)
    assert fake.seen == expected
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Ray dashboard: http://127.0.0.1:8265" and "get-auth-token" in out[1]


def test_without_token_authentication_only_the_url_is_printed():
    from orchestrator.dashboard import how_to_open
    assert how_to_open("127.0.0.1:8265", token_auth=False) == "Ray dashboard: http://127.0.0.1:8265"
