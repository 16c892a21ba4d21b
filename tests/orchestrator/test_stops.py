"""Clean stops (orchestrator.stopping): Ctrl-C, SIGTERM and ``tlsweep stop`` end a running study with one line and
exit 130 / 143, its results complete up to the stop, and ``tlsweep resume`` finishes it; a finished study has
nothing to resume (and Ray is not imported); a driver that dies leaves none of its processes behind.

The studies run as ``tlsweep`` subprocesses (each its own Ray); every wait is on a condition (rows in the study's
Parquet, a process ending) with a generous limit, never a fixed sleep. Only processes these tests start are
signalled.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from analysis.load import load
from orchestrator import stopping
from tests.conftest import tiny_study

TLSWEEP = [os.path.join(os.path.dirname(sys.executable), "tlsweep")]
LINE = "stopped: continue with 'tlsweep resume {}'"
EPOCHS, LRS = 3, [0.001, 0.003]
LIMIT_S = 300


def env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def start(args: list, tmp_path: Path, name: str) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen(TLSWEEP + args, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def epoch_rows(folder: Path) -> int:
    n = 0
    for part in (folder / "results" / "epochs").glob("*.parquet"):
        try:
            n += pq.read_metadata(part).num_rows
        except OSError:  # renamed away by a compaction while we looked
            pass
    return n


def wait_for(condition, proc: subprocess.Popen, what: str, limit_s: float = LIMIT_S) -> None:
    deadline = time.time() + limit_s
    while not condition():
        assert proc.poll() is None, f"the driver ended (rc {proc.returncode}) before {what}"
        assert time.time() < deadline, f"{what}: not reached in {limit_s} s"
        time.sleep(0.2)


def finish(proc: subprocess.Popen, log: Path, limit_s: float = LIMIT_S) -> tuple[int, str]:
    try:
        rc = proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # only the process group this test started
        raise
    return rc, log.read_text()


def check_stopped(rc: int, out: str, code: int, folder: Path, rows_before: int) -> None:
    assert rc == code, out[-3000:]
    assert out.count(LINE.format(folder)) == 1, out[-3000:]
    for noise in ("Traceback", "Tuner.restore", "Stop signal received", "StudyNotFound", "interrupted"):
        assert noise not in out, out[-3000:]
    t = load(folder)  # the tables read back whole
    assert len(t.epochs) >= rows_before  # every epoch reported before the stop is kept
    assert not t.epochs.duplicated(["trial_id", "epoch"]).any()
    assert set(t.trials["status"]) <= {"TERMINATED", "INTERRUPTED"}, t.trials["status"].tolist()
    for tid, rows in t.epochs.groupby("trial_id"):
        assert sorted(rows["epoch"]) == list(range(1, len(rows) + 1))
    assert stopping.running_driver(folder) is None


def check_finished(folder: Path) -> None:
    t = load(folder)
    assert len(t.trials) == len(LRS) and set(t.trials["status"]) == {"TERMINATED"}
    assert not t.epochs.duplicated(["trial_id", "epoch"]).any()
    assert t.epochs.groupby("trial_id")["epoch"].apply(sorted).tolist() == [list(range(1, EPOCHS + 1))] * len(LRS)


def write_study(tmp_path: Path, name: str) -> Path:
    study = tiny_study(name, training={"epochs": EPOCHS, "lr": {"grid": LRS}}, search={"max_concurrent": 1})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def test_sigint_and_sigterm_stop_cleanly_and_resume_finishes(tmp_path):
    path, folder = write_study(tmp_path, "stops"), tmp_path / "out" / "stops"
    # Ctrl-C during `tlsweep run`, once the first epoch is in the tables
    proc = start(["run", str(path), "--storage", str(tmp_path / "out")], tmp_path, "run")
    wait_for(lambda: epoch_rows(folder) >= 1, proc, "the first epoch row")
    rows = epoch_rows(folder)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: the driver's whole process group (started by this test)
    check_stopped(*finish(proc, tmp_path / "run.log"), 130, folder, rows)
    assert not (folder / stopping.FINISHED_FILE).exists()
    rows = epoch_rows(folder)  # the graceful stop may have let the running epoch finish

    # SIGTERM during `tlsweep resume`, once one more epoch is in
    proc = start(["resume", str(folder)], tmp_path, "resume1")
    wait_for(lambda: epoch_rows(folder) >= rows + 1, proc, "an epoch row after the resume")
    rows = epoch_rows(folder)
    os.kill(proc.pid, signal.SIGTERM)
    check_stopped(*finish(proc, tmp_path / "resume1.log"), 143, folder, rows)

    out = subprocess.run(TLSWEEP + ["resume", str(folder)], env=env(), capture_output=True, text=True,
                         timeout=LIMIT_S * 2)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "Traceback" not in out.stderr
    check_finished(folder)
    assert (folder / stopping.FINISHED_FILE).exists()

    again = subprocess.run(TLSWEEP + ["resume", str(folder)], env=env(), capture_output=True, text=True,
                           timeout=LIMIT_S)
    assert again.returncode == 0 and "nothing to resume" in again.stdout, again.stdout + again.stderr
    check_finished(folder)


def test_tlsweep_stop_stops_a_running_study_from_another_terminal(tmp_path):
    path, folder = write_study(tmp_path, "stop_cmd"), tmp_path / "out" / "stop_cmd"
    proc = start(["run", str(path), "--storage", str(tmp_path / "out")], tmp_path, "run")
    wait_for(lambda: epoch_rows(folder) >= 1, proc, "the first epoch row")
    rows = epoch_rows(folder)
    out = subprocess.run(TLSWEEP + ["stop", str(folder)], env=env(), capture_output=True, text=True,
                         timeout=LIMIT_S)
    assert out.returncode == 0, out.stdout + out.stderr
    assert LINE.format(folder) in out.stdout
    check_stopped(*finish(proc, tmp_path / "run.log"), 143, folder, rows)
    # nothing runs any more: a second stop says so
    again = subprocess.run(TLSWEEP + ["stop", str(folder)], env=env(), capture_output=True, text=True,
                           timeout=LIMIT_S)
    assert again.returncode == 2 and "no running study" in again.stderr


def test_resume_of_a_finished_study_says_so_without_importing_ray(tmp_path):
    folder = tmp_path / "done"
    folder.mkdir()
    (folder / "study.yaml").write_text(yaml.safe_dump(tiny_study("done")))
    (folder / stopping.FINISHED_FILE).write_text(json.dumps({"finished_at": 0, "trials": 2}))
    code = textwrap.dedent(f"""
        import sys
        from orchestrator.cli import main
        rc = main(["resume", {str(folder)!r}])
        assert "ray" not in sys.modules, "ray was imported"
        sys.exit(rc)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=LIMIT_S,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines() == [f"{folder}: the study has finished; nothing to resume "
                                               f"(tlsweep status {folder} shows its trials)"]


def test_sigterm_before_the_driver_takes_over_is_one_line_and_143(tmp_path):
    """A SIGTERM while tlsweep still imports Ray and torch (before the study's driver handles signals) ends with
    one line and exit 143, not a silent death by the signal; the study folder is left as it was."""
    folder = tmp_path / "early"
    folder.mkdir()
    (folder / "study.yaml").write_text(yaml.safe_dump(tiny_study("early")))
    code = textwrap.dedent(f"""
        import os, signal, sys
        import orchestrator.storage
        real = orchestrator.storage.load_study_dir
        def load_and_get_stopped(*a, **k):  # the moment a `tlsweep resume` starts loading the study
            os.kill(os.getpid(), signal.SIGTERM)
            return real(*a, **k)
        orchestrator.storage.load_study_dir = load_and_get_stopped
        sys.modules.setdefault("orchestrator.tuner", type(sys)("orchestrator.tuner"))
        sys.modules["orchestrator.tuner"].load_study_dir = load_and_get_stopped
        sys.modules["orchestrator.tuner"].resume_study = None
        from orchestrator.cli import main
        sys.exit(main(["resume", {str(folder)!r}]))
    """)
    before = sorted(p.name for p in folder.iterdir())
    out = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=LIMIT_S,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 143, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == ["tlsweep: interrupted"], out.stderr
    assert sorted(p.name for p in folder.iterdir()) == before

def test_a_signal_becomes_tunes_graceful_stop_or_an_immediate_one(tmp_path):
    """While Tune's loop runs (its handler is on SIGUSR1) the first signal asks it to stop and the block ends
    normally, then raises Stopped; before the loop (no Tune handler) or at a second signal it stops at once."""
    calls, before = [], signal.getsignal(signal.SIGTERM)   # Ray's own, if a test of this session started Ray
    with pytest.raises(stopping.Stopped) as stopped:
        with stopping.Driver(tmp_path / "a", watchdog=False):
            signal.signal(signal.SIGUSR1, lambda s, f: calls.append(s))  # stands in for Tune's handler
            os.kill(os.getpid(), signal.SIGINT)
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)  # the second one
    assert calls == [signal.SIGINT] and stopped.value.exit_code == 130
    assert str(stopped.value) == "stopped before the study's first snapshot: start it again with 'tlsweep run " \
                                 "STUDY --overwrite'"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "experiment_state-x.json").write_text("{}")
    with pytest.raises(stopping.Stopped) as stopped:
        with stopping.Driver(tmp_path / "b", watchdog=False):
            os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.exit_code == 143 and str(stopped.value) == LINE.format(tmp_path / "b")
    assert signal.getsignal(signal.SIGTERM) is before and "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ
    assert not stopping.record_path(tmp_path / "b").exists()


FAKE_DRIVER = """
import subprocess, sys, time
from orchestrator.stopping import Driver
with Driver(sys.argv[1]):
    child = subprocess.Popen(["sleep", "600"])
    print(child.pid, flush=True)
    time.sleep(600)
"""


def test_a_killed_driver_leaves_no_process_behind(tmp_path):
    """The watchdog ends what the driver started (here a stand-in for Ray's processes) once it is SIGKILLed."""
    folder = tmp_path / "killed"
    driver = subprocess.Popen([sys.executable, "-c", FAKE_DRIVER, str(folder)], stdout=subprocess.PIPE, text=True,
                              env=env(), cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    child = int(driver.stdout.readline())
    record = stopping.record_path(folder)
    wait_for(lambda: child in [p for p, _ in (stopping.read_record(record) or {}).get("procs", [])], driver,
             "the watchdog tracking the child")
    assert stopping.running_driver(folder)["pid"] == driver.pid
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=LIMIT_S)
    deadline = time.time() + LIMIT_S
    while stopping._start_time(child) is not None and time.time() < deadline:
        time.sleep(0.2)
    assert stopping._start_time(child) is None, "the driver's child outlived it"
    while record.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not record.exists()


def test_the_next_command_cleans_up_what_a_dead_driver_left(tmp_path, capsys):
    """Driver and watchdog both gone: the next tlsweep command on that study ends the recorded processes, and
    says so; a process whose pid is recorded with another start time (a reused pid) is left alone."""
    folder = tmp_path / "orphan"
    left = subprocess.Popen(["sleep", "600"], start_new_session=True)
    other = subprocess.Popen(["sleep", "600"], start_new_session=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        started = stopping._start_time(left.pid)
        stopping.write_record(stopping.record_path(folder), {
            "pid": dead.pid, "started": 1.0, "folder": str(folder),
            "procs": [[left.pid, started], [other.pid, started - 1000]]})
        assert stopping.clean_leftovers(folder) == 1
        assert left.wait(timeout=LIMIT_S) is not None
        assert other.poll() is None
        assert "cleaned up 1 process(es)" in capsys.readouterr().out
        assert not stopping.record_path(folder).exists()
    finally:
        for p in (left, other):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_second_driver_of_a_running_study_is_refused(tmp_path):
    from trainables.errors import ConfigError
    folder = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        stopping.write_record(stopping.record_path(folder), {
            "pid": holder.pid, "started": stopping._start_time(holder.pid), "folder": str(folder), "procs": []})
        with pytest.raises(ConfigError, match="tlsweep stop"):
            with stopping.Driver(folder, watchdog=False):
                pass
    finally:
        holder.kill()
        holder.wait()
        stopping.record_path(folder).unlink(missing_ok=True)


def test_a_driver_killed_with_sigkill_under_the_cli_leaves_no_ray_process(tmp_path):
    # the real thing: `tlsweep run` with its own Ray (gcs, raylet, dashboard agent, runtime-env agent, trial
    # workers), the driver alone SIGKILLed once an epoch is in: every process it had started is gone soon after
    import psutil
    path, folder = write_study(tmp_path, "sigkill"), tmp_path / "out" / "sigkill"
    proc = start(["run", str(path), "--storage", str(tmp_path / "out")], tmp_path, "run")
    wait_for(lambda: epoch_rows(folder) >= 1, proc, "the first epoch row")
    driver = psutil.Process(proc.pid)
    started = [p for p in driver.children(recursive=True) if "orchestrator.stopping" not in " ".join(p.cmdline())]
    names = {p.name() for p in started}
    assert any("raylet" in n for n in names) and any("gcs_server" in n for n in names), names
    os.kill(proc.pid, signal.SIGKILL)  # the driver only, not its group: as `kill -9 <pid>` or the OOM killer
    proc.wait(timeout=60)

    def alive() -> list:
        out = []
        for p in started:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p.name())
            except psutil.NoSuchProcess:
                pass
        return out
    deadline = time.time() + 120   # generous on a loaded machine; measured ~3 s when idle (see stopping.py)
    while alive() and time.time() < deadline:
        time.sleep(0.5)
    assert not alive(), alive()
