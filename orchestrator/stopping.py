"""Clean stops of a study's driver, and no Ray process left behind by a driver that died.

- **Ctrl-C / SIGTERM / ``tlsweep stop``**: :class:`Driver` (around ``ray.init`` and ``Tuner.fit``) turns the first
  SIGINT or SIGTERM into Ray Tune's own graceful stop: Tune leaves its loop after the current step, writes its
  experiment snapshot, stops the trials and calls the callbacks' ``on_experiment_end`` (the Parquet sink marks
  the stopped trials INTERRUPTED and compacts its tables). Tune's own SIGINT handler is switched off
  (``TUNE_DISABLE_SIGINT_HANDLER``): it knows nothing of SIGTERM and would not tell us a stop happened. We call
  the handler Tune registers for SIGUSR1 (the same function) instead; Tune's "interrupted, resume with
  ``Tuner.restore(...)``" lines are dropped, and the CLI prints one line and exits 128 + the signal
  (:class:`Stopped`). A second signal, or one before Tune's loop runs, stops at once (``KeyboardInterrupt``).
- **``tlsweep stop DIR``** sends SIGTERM to the driver named by the study's *driver record*, so it stops exactly as
  Ctrl-C does, at once, with nothing polling the (maybe remote) study folder; the record carries the driver's
  start time, so a pid reused by another process is never signalled.
- **A driver that dies** (SIGKILL): a small watchdog process (its own session, so a Ctrl-C or a ``kill`` of the
  driver's process group leaves it) follows the driver's descendants, the Ray processes it started among them,
  and ends them within a second or two of the driver's death. Should the watchdog die too, the next ``tlsweep``
  command on the same study ends the processes the record lists and says so. Only descendants of that driver
  are ever touched (a cluster joined with ``--address`` is not its descendant), each checked against its start time.

Driver records live outside the study folder (``$TLSWEEP_RUNTIME_DIR``, default ``<tmp>/tlsweep-<uid>/drivers``):
a pid means nothing on another machine, and the study folder stays as ``tlsweep run`` expects it.
A run that ended with every trial done leaves ``finished.json`` in the study folder: ``tlsweep resume`` then says
there is nothing to resume without starting Ray.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

FINISHED_FILE = "finished.json"
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
POLL_S = 0.5
# Ray Tune's messages on an interrupt: the CLI says it in one line of its own
TUNE_NOISE = ("Stop signal received", "has been interrupted", "Resume experiment with", "Trials did not complete")


class Stopped(Exception):
    """The study was stopped by a signal; ``tlsweep`` prints this one line and exits ``exit_code``."""

    def __init__(self, signum: int, folder, resumable: bool = True):
        super().__init__(signum, str(folder))
        self.signum, self.folder, self.resumable = signum, str(folder), resumable

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + int(self.signum))

    def __str__(self) -> str:
        if self.resumable:
            return f"stopped: continue with 'tlsweep resume {self.folder}'"
        return "stopped before the study's first snapshot: start it again with 'tlsweep run STUDY --overwrite'"


# ---- driver records -----------------------------------------------------------------------------------
def runtime_dir() -> Path:
    base = os.environ.get("TLSWEEP_RUNTIME_DIR") or os.path.join(tempfile.gettempdir(), f"tlsweep-{os.getuid()}")
    return Path(base) / "drivers"


def record_path(folder) -> Path:
    key = str(folder).rstrip("/")
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in key.rsplit("/", 1)[-1])[:60]
    return runtime_dir() / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def read_record(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def _start_time(pid: int) -> Optional[float]:
    import psutil
    try:
        p = psutil.Process(pid)
        return None if p.status() == psutil.STATUS_ZOMBIE else round(p.create_time(), 2)
    except (psutil.Error, OSError):
        return None


def alive(pid: int, started: float) -> bool:
    """``pid`` is still the process that started at ``started`` (not a zombie, not a reused pid)."""
    return _start_time(pid) == started


def running_driver(folder) -> Optional[dict]:
    """The record of a driver that is running ``folder`` now, on this machine; None when there is none."""
    rec = read_record(record_path(folder))
    if rec and alive(rec["pid"], rec["started"]):
        return rec
    return None


def end_processes(procs: list[list], grace_s: float = 3.0) -> int:
    """SIGTERM, then SIGKILL after ``grace_s``, to each ``[pid, start time]`` still alive; returns how many."""
    import psutil
    targets = []
    for pid, started in procs:
        if pid != os.getpid() and alive(pid, started):
            try:
                p = psutil.Process(pid)
                p.terminate()
                targets.append(p)
            except psutil.Error:
                pass
    _, left = psutil.wait_procs(targets, timeout=grace_s)
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(targets)


def clean_leftovers(folder, log=print) -> int:
    """End the processes an earlier driver of this study left when it died (its watchdog died too)."""
    path = record_path(folder)
    rec = read_record(path)
    if rec is None or alive(rec["pid"], rec["started"]):
        return 0
    n = end_processes(rec.get("procs", []))
    path.unlink(missing_ok=True)
    if n:
        log(f"cleaned up {n} process(es) that the earlier run of this study (driver pid {rec['pid']}, which died) "
            f"left behind")
    return n


# ---- the driver --------------------------------------------------------------------------------------
class _DropTuneNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(s in str(record.msg) for s in TUNE_NOISE)


class Driver:
    """The driver of one study, for the duration of ``with Driver(folder):`` (``ray.init`` and ``fit`` inside).

    Refuses a second driver of the same study; records itself for ``tlsweep stop`` and starts its watchdog;
    turns SIGINT / SIGTERM into a graceful stop, raised as :class:`Stopped` when the block ends.
    """

    def __init__(self, folder, log=print, watchdog: bool = True):
        self.folder, self.log, self.watchdog = folder, log, watchdog
        self.record = record_path(folder)
        self.signum: Optional[int] = None
        self._saved: dict = {}

    def __enter__(self) -> "Driver":
        from trainables.errors import ConfigError
        clean_leftovers(self.folder, self.log)
        other = running_driver(self.folder)
        if other is not None and other["pid"] != os.getpid():
            raise ConfigError(f"{self.folder}: the study is running (driver pid {other['pid']}); stop it with "
                              f"'tlsweep stop {self.folder}'")
        write_record(self.record, {"pid": os.getpid(), "started": _start_time(os.getpid()),
                                   "folder": str(self.folder), "procs": []})
        if self.watchdog:
            subprocess.Popen([sys.executable, "-m", "orchestrator.stopping", "watch", str(self.record)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True, env={**os.environ, "PYTHONPATH": _root()})
        self._saved = {"env": os.environ.get("TUNE_DISABLE_SIGINT_HANDLER"),
                       **{s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}}
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGUSR1, self._placeholder)  # Tune replaces it while its loop runs
        self._filter = _DropTuneNoise()
        logging.getLogger("ray.tune.tune").addFilter(self._filter)
        return self

    def ray_started(self) -> None:
        """Take SIGTERM back after ``ray.init``: Ray's core installs a handler of its own (it prints a stack and
        exits 1) in the driver."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    @staticmethod
    def _placeholder(signum, frame) -> None:
        raise KeyboardInterrupt

    def _on_signal(self, signum, frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if first and callable(tune_stop) and tune_stop is not self._placeholder:
            tune_stop(signum, frame)  # Tune's graceful stop: its loop ends after this step
            return
        raise KeyboardInterrupt  # a second signal, or no Tune loop running: stop at once

    def __exit__(self, exc_type, exc, tb) -> bool:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(s, self._saved[s])
        if self._saved["env"] is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._saved["env"]
        logging.getLogger("ray.tune.tune").removeFilter(self._filter)
        rec = read_record(self.record)
        if rec and rec.get("pid") == os.getpid():
            self.record.unlink(missing_ok=True)  # the watchdog sees it gone and exits
        if self.signum is not None or exc_type is KeyboardInterrupt:
            raise Stopped(self.signum or signal.SIGINT, self.folder, has_snapshot(self.folder)) from None
        return False


def _root() -> str:
    here = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join([here, os.environ["PYTHONPATH"]]) if os.environ.get("PYTHONPATH") else here


def has_snapshot(folder) -> bool:
    """Ray Tune wrote an experiment snapshot in ``folder`` (``tlsweep resume`` can continue it)."""
    from orchestrator.storage import StudyStore
    import pyarrow.fs as pafs
    store = StudyStore(folder)
    try:
        infos = store.fs.get_file_info(pafs.FileSelector(store.path, recursive=False))
    except (OSError, FileNotFoundError):
        return False
    return any(i.base_name.startswith("experiment_state") for i in infos)


# ---- finished studies ----------------------------------------------------------------------------------
def mark_finished(folder, grid) -> None:
    """A study whose trials all ended without an error has nothing left to resume."""
    from orchestrator.storage import StudyStore
    if grid is not None and getattr(grid, "num_errors", 1) == 0:
        StudyStore(folder).write_text(FINISHED_FILE, json.dumps({"finished_at": time.time(), "trials": len(grid)}))


def nothing_to_resume(folder) -> Optional[str]:
    """The line ``tlsweep resume`` prints for a finished study (it then starts nothing), else None."""
    from orchestrator.storage import StudyStore, as_location
    try:
        location = as_location(folder)
        store = StudyStore(location)
        if not (store.is_file(FINISHED_FILE) and store.is_file("study.yaml")):
            return None
    except (OSError, ValueError):
        return None
    return f"{store}: the study has finished; nothing to resume (tlsweep status {store} shows its trials)"


# ---- tlsweep stop --------------------------------------------------------------------------------------
def stop(folder, timeout_s: float = 600.0, log=print) -> int:
    """Stop the driver of ``folder`` as Ctrl-C would, and wait for it to end; 0 when it did, 2 if none runs."""
    rec = running_driver(folder)
    if rec is None:
        clean_leftovers(folder, log)
        print(f"tlsweep: error: {folder}: no running study to stop (on this machine)", file=sys.stderr)
        return 2
    log(f"stopping {folder} (driver pid {rec['pid']}): the trials stop and the results are written")
    os.kill(rec["pid"], signal.SIGTERM)
    deadline = time.time() + timeout_s
    while alive(rec["pid"], rec["started"]) and time.time() < deadline:
        time.sleep(POLL_S)
    if alive(rec["pid"], rec["started"]):
        print(f"tlsweep: error: the driver (pid {rec['pid']}) has not stopped after {timeout_s:.0f} s; run "
              f"'tlsweep stop {folder}' again to stop it at once", file=sys.stderr)
        return 1
    log(str(Stopped(signal.SIGTERM, folder, has_snapshot(folder))))
    return 0


# ---- the watchdog ---------------------------------------------------------------------------------------
def watch(path: Path) -> None:
    """Follow the driver of record ``path`` and its descendants; when the driver dies, end them all.

    Exits without touching anything when the driver removes its record (it ended normally)."""
    import psutil
    rec = read_record(path)
    if rec is None:
        return
    pid, started, me = rec["pid"], rec["started"], os.getpid()
    tracked: dict[int, float] = {}
    while alive(pid, started):
        now = read_record(path)
        if now is None or now.get("pid") != pid:
            return  # the driver ended normally (Ray shuts itself down) or another one took over
        try:
            for child in psutil.Process(pid).children(recursive=True):
                if child.pid != me and child.pid not in tracked:
                    tracked[child.pid] = round(child.create_time(), 2)
        except psutil.Error:
            pass
        if sorted(tracked.items()) != sorted(map(tuple, now.get("procs", []))):
            write_record(path, {**now, "procs": sorted([p, t] for p, t in tracked.items())})
        time.sleep(POLL_S)
    end_processes([[p, t] for p, t in tracked.items()])
    rec = read_record(path)
    if rec is not None and rec.get("pid") == pid:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "watch":
        watch(Path(sys.argv[2]))
