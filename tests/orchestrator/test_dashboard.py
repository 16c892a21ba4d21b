"""``tlsweep run --dashboard``: the Ray dashboard shows the study while it runs, on loopback only."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import yaml

from tests.conftest import tiny_study

TLSWEEP = os.path.join(os.path.dirname(sys.executable), "tlsweep")


def get_json(url: str):
    """GET from the dashboard (loopback only) with Ray's token (Ray 2.60 requires one by default)."""
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    headers = {}
    if os.path.exists(token_file):
        headers["Authorization"] = "Bearer " + open(token_file).read().strip()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return json.loads(r.read().decode())


def test_dashboard_shows_the_running_study_on_loopback_only(tmp_path):
    study = tiny_study("dash", training={"epochs": 30, "lr": {"grid": [0.001, 0.002]}})
    path = tmp_path / "dash.yaml"
    path.write_text(yaml.safe_dump(study))
    log = tmp_path / "out.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([TLSWEEP, "run", str(path), "--storage", str(tmp_path / "res"), "--dashboard"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        url = None
        deadline = time.time() + 120
        while url is None and time.time() < deadline and proc.poll() is None:
            m = re.search(r"Ray dashboard: (http://[\d.]+:\d+)", log.read_text())
            url = m.group(1) if m else None
            time.sleep(0.5)
        assert url, log.read_text()[-2000:]
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        actors = []
        while time.time() < deadline and proc.poll() is None:
            try:
                reply = get_json(f"{url}/api/v0/actors?limit=100")
                actors = reply["data"]["result"]["result"]
            except Exception:  # noqa: BLE001 - the dashboard is still starting
                actors = []
            if any("ImplicitFunc" in a.get("class_name", "") and a.get("state") == "ALIVE" for a in actors):
                break
            time.sleep(1)
        assert any("ImplicitFunc" in a.get("class_name", "") for a in actors), actors[:3]
        jobs = get_json(f"{url}/api/jobs/")
        assert any(j.get("type") == "DRIVER" and j.get("status") == "RUNNING" for j in jobs), jobs
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
