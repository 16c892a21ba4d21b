"""``tlsweep dashboard DIR``: Optuna Dashboard over a study's mirror (orchestrator.mirror), on 127.0.0.1 only.

It runs ``optuna-dashboard`` as a child process over ``<study>/optuna-journal.log`` and restarts it when that
file is replaced (a driver starting or resuming the study rebuilds it from the tables; so does ``--rebuild``),
so one dashboard follows a study from before its first trial to its end, and serves finished studies copied
from a cluster (their mirror is rebuilt from the Parquet tables when it is missing). No Ray, no torch.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from trainables.errors import ConfigError

HOST = "127.0.0.1"  # the dashboard can edit notes and attributes: this machine only
DEFAULT_PORT = 8080


def check_port(port: int) -> None:
    """Fail with one line when ``port`` cannot be bound on loopback (in use, or privileged)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the dashboard's server does
        try:
            s.bind((HOST, port))
        except OSError as e:
            raise ConfigError(f"--port {port}: cannot listen on {HOST}:{port} ({e.strerror or e}); "
                              f"choose another port") from None


def command(journal: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "optuna_dashboard._cli", str(journal), "--storage-class", "JournalFileStorage",
            "--host", HOST, "--port", str(port), "--server", "wsgiref", "--quiet"]


def _inode(path: Path):
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except FileNotFoundError:
        return None


def serve(study_dir: str, port: int = DEFAULT_PORT, rebuild: bool = False, log=print) -> int:
    """Start the dashboard of the study in ``study_dir``; returns when it stops (Ctrl-C, SIGTERM)."""
    from orchestrator._journal import journal_path, rebuild_study
    from orchestrator.stopping import running_driver
    from orchestrator.storage import is_uri, read_objective
    location, _, _ = read_objective(study_dir)  # not a study: ConfigError, one line
    if is_uri(location):
        raise ConfigError(f"{location}: the dashboard reads a local study folder; copy the study here first "
                          f"(its Parquet tables are enough: tlsweep dashboard DIR rebuilds the mirror)")
    journal = journal_path(location)
    if rebuild and running_driver(location) is not None:
        raise ConfigError(f"{location}: the study is running and its driver writes the mirror; --rebuild after "
                          f"it ends (or restarts the study: every driver start rebuilds it)")
    check_port(port)
    if rebuild or not journal.is_file():
        rebuild_study(location)
        log(f"mirror rebuilt from the Parquet tables: {journal}")
    log(f"Optuna Dashboard: http://{HOST}:{port}/dashboard  ({journal}; Ctrl-C stops it)")
    sys.stdout.flush()

    def stop(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, stop)
    child = None
    try:
        while True:
            seen = _inode(journal)
            child = subprocess.Popen(command(journal, port), stdin=subprocess.DEVNULL)
            while True:
                try:
                    return child.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    pass
                now = _inode(journal)
                if now is not None and now != seen:  # replaced by a rebuild: the child's replay is stale
                    break
            child.terminate()
            child.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        signal.signal(signal.SIGTERM, previous)
