"""The ``tlsweep`` command line. User mistakes print one line and exit with code 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional


from trainables.config import read_yaml
from trainables.errors import USER_ERRORS

EXIT_USAGE = 2


SHOWN = ("train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "val_miou", "val_dice", "val_pixel_acc",
         "test_acc", "test_miou")   # whichever the task reports


def format_epoch(m: dict, epochs: int) -> str:
    parts = [f"epoch {m['epoch']:>3}/{epochs}"] + [f"{k} {m[k]:.4f}" for k in SHOWN if isinstance(m.get(k), float)]
    parts += [f"lr {m['lr']:.2e}", f"{m['epoch_seconds']:.1f}s"]
    if "train_images_per_s" in m:
        parts.append(f"{m['train_images_per_s']:.0f} img/s")
    return "  ".join(parts) + ("  *" if m.get("per_class") is not None else "")


def task_class(task: str):
    """The task plug-in of a task name (``trainables.tasks``): its ``preflight`` checks a trial config."""
    from trainables.tasks import task_class as find
    return find(task)


def cmd_train(args: argparse.Namespace) -> int:
    from trainables.checkpoint import DirCheckpoints
    from trainables.config import apply_overrides, trial_config
    tree = read_yaml(args.config) if args.config else {}
    cfg = trial_config(apply_overrides(tree, args.set or []))
    from trainables.loop import train
    task = task_class(cfg.task)
    task.preflight(cfg)
    print(f"training {cfg.model.arch} ({cfg.model.strategy}, weights {cfg.model.weights}) on {cfg.data.name} "
          f"for {cfg.training.epochs} epochs", flush=True)
    ckpt = DirCheckpoints(args.checkpoint_dir) if args.checkpoint_dir else None
    result = train(cfg, lambda m: print(format_epoch(m, cfg.training.epochs), flush=True), ckpt, task)
    print(f"best {result['objective']} {result['best_value']:.4f} at epoch {result['best_epoch']}")
    return 0


def start_ray(address: Optional[str], dashboard: bool = False, dashboard_host: str = "127.0.0.1") -> None:
    """Join the cluster at ``address``, or start a local Ray (with its dashboard only when asked, and then
    bound to loopback unless ``dashboard_host`` says otherwise). Ray's usage stats stay off unless the user set
    RAY_USAGE_STATS_ENABLED (README: Ray's defaults)."""
    import os
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before any Ray process starts: they inherit it
    import ray
    if ray.is_initialized():
        return
    # Trial output stays in the trials' logs; the terminal shows Tune's progress table and the summary.
    if address:
        ctx = ray.init(address=address, log_to_driver=False)
    else:  # a Ray of its own, even when `ray start` left a cluster on this machine (join one with --address auto)
        ctx = ray.init(address="local", include_dashboard=dashboard, dashboard_host=dashboard_host,
                       log_to_driver=False)
    url = getattr(ctx, "dashboard_url", None)
    if url and (dashboard or address):
        from orchestrator.dashboard import how_to_open
        print(how_to_open(url), flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    run_and_summarize(args)
    return 0


def run_and_summarize(args: argparse.Namespace) -> Path | str:
    """Run the study of ``tlsweep run``, print its summary and return its folder."""
    from orchestrator.preflight import check_study
    from search_spaces import find_study, load_study
    from trainables.config import trial_config
    study = load_study(find_study(args.study), args.set or [])
    # everything that needs no cluster, in a second or two, before torch and Ray are imported
    overwrite = check_study(study, args.storage, args.overwrite, args.address)
    check_names(study, task_class(study.task).preflight, trial_config)
    from orchestrator.stopping import Driver, mark_finished
    from orchestrator.tuner import run_study, study_dir  # imports Ray (and torch)
    with Driver(study_dir(study, args.storage)) as driver:  # Ctrl-C, SIGTERM, tlsweep stop: Stopped
        start_ray(args.address, getattr(args, "dashboard", False), getattr(args, "dashboard_host", "127.0.0.1"))
        driver.ray_started()
        folder, grid = run_study(study, storage=args.storage, overwrite=overwrite,
                                 strict_resources=not args.address)
    print(end_of_run(folder, study))
    mark_finished(folder, grid)  # after the summary: a study that failed is not 'finished'
    return folder


def end_of_run(folder, study) -> str:
    """The summary of a study that ran; StudyFailed (exit 1, one line per distinct error) when no trial
    reported its metric: every trial errored, or none reported before ``search.time_budget_s`` ran out."""
    from orchestrator.summary import StudyFailed, failure, summary
    why = failure(folder, study.search.metric, study.search.time_budget_s)
    if why is not None:
        from orchestrator.preflight import mark_failed
        mark_failed(folder, why)  # nothing to keep: the corrected run replaces this folder without --overwrite
        raise StudyFailed(why)
    return summary(folder, study.search.metric, study.search.mode)


CHECKED = ("model.arch", "data.name", "model.strategy", "data.augment", "model.decoder", "training.loss")


def check_names(study, preflight, trial_config) -> None:
    """Every architecture / data set / strategy (decoder, loss) a study can sample exists and fits the others,
    before Ray starts: every combination of those domains' values (each one on its own with the others at their
    first value when there are more than MAX_COMBINATIONS)."""
    from orchestrator.preflight import combinations
    for trial in combinations(study, lambda path: path in CHECKED):
        preflight(trial_config(trial))


def cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.stopping import Driver, mark_finished, nothing_to_resume
    done = nothing_to_resume(args.study_dir)  # before importing Ray: a finished study starts nothing
    if done is not None:
        print(done)
        return 0
    from orchestrator.tuner import load_study_dir, resume_study
    study, location = load_study_dir(args.study_dir)
    with Driver(location) as driver:  # Ctrl-C, SIGTERM, tlsweep stop: a clean stop (Stopped)
        start_ray(args.address, getattr(args, "dashboard", False), getattr(args, "dashboard_host", "127.0.0.1"))
        driver.ray_started()
        folder, grid = resume_study(args.study_dir)
    print(end_of_run(folder, study))
    mark_finished(folder, grid)  # after the summary: a study that failed is not 'finished'
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a running study from another terminal, as Ctrl-C would (orchestrator.stopping)."""
    from orchestrator.stopping import stop
    from orchestrator.storage import as_location
    return stop(as_location(args.study_dir))


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Optuna Dashboard over a study's mirror, on 127.0.0.1 (orchestrator.optuna_dash); no Ray, no torch."""
    from orchestrator.optuna_dash import serve
    return serve(args.study_dir, args.port, args.rebuild)


def cmd_status(args: argparse.Namespace) -> int:
    """The trials table of a study, from its Parquet tables only: no Ray, no torch (orchestrator.watch)."""
    from orchestrator.storage import read_objective
    folder, metric, mode = read_objective(args.study_dir)
    if args.watch:
        from orchestrator.watch import watch
        return watch(folder, metric, mode, args.interval)
    from orchestrator.summary import status_table
    print(status_table(folder, metric))
    return 0


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def cmd_demo(args: argparse.Namespace) -> int:
    """The offline quickstart study: pretrain on digits 0-4, transfer to 5-9, ASHA, summary, HTML report."""
    from analysis.report import write_report
    ns = argparse.Namespace(study="quickstart", set=args.set, storage=args.storage, address=None, overwrite=True)
    folder = run_and_summarize(ns)
    print(f"report: {write_report(folder, log=print)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write a study's self-contained HTML report and print its path."""
    from analysis.load import StudyNotFound, read_study_yaml
    from analysis.report import write_report
    try:
        read_study_yaml(args.study_dir)  # not UTF-8 or not YAML: one line naming the file (StudyUnreadable)
        path = write_report(args.study_dir, args.out, log=print)
    except StudyNotFound as e:
        print(f"tlsweep: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(path)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Explanation PNGs of one trial, or of the best trial per architecture x strategy side by side."""
    from explain.study import explain_study
    entries = explain_study(args.study_dir, trial=args.trial, images=args.images, from_val=args.from_val,
                            methods=args.methods, out=args.out, window=args.window, stride=args.stride,
                            grid=parse_grid(args.grid), log=print, epoch=args.epoch)
    out = Path(args.out or Path(args.study_dir) / "explain").expanduser().resolve()
    print(f"{len(entries)} images in {out} (listed in {out / 'index.json'})")
    return 0


def parse_grid(text: str) -> tuple[int, int]:
    from trainables.errors import ConfigError
    try:
        rows, cols = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--grid: expected ROWSxCOLS such as 10x3, got {text!r}") from None
    if rows < 1 or cols < 1:
        raise ConfigError(f"--grid: expected positive ROWSxCOLS, got {text!r}")
    return rows, cols


def cmd_predict(args: argparse.Namespace) -> int:
    """Top-k classes of image files, from a checkpoint or a study's trial (default: its best)."""
    import json
    from explain.predict import format_predictions, gradcam_files, load_model, predict_files
    tm = load_model(args.source, args.trial, args.epoch)
    results = predict_files(tm, args.images, args.topk)
    if args.gradcam:
        for res, path in zip(results, gradcam_files(tm, args.images, results, Path(args.out or "."))):
            res["gradcam"] = str(path)
    if args.json:
        print(json.dumps({"model": tm.label, "trial": tm.trial_id or None, "checkpoint": str(tm.checkpoint),
                          "predictions": results}, indent=1))
    else:
        print(format_predictions(results))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """The model of a trial (default: the best) as safetensors, TorchScript or ONNX, with a model card."""
    from explain.export import export
    from explain.loading import check_epoch
    model, card = export(args.source, args.trial, check_epoch(args.epoch), args.format, args.out)
    print(f"model: {model}\nmodel card: {card}")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    """Transferability scores of every architecture's frozen features, ranked (orchestrator.rank)."""
    from orchestrator.rank import cmd_rank as rank
    return rank(args)


def cmd_list(args: argparse.Namespace) -> int:
    """Every kind of name a study can hold (no KIND), or one kind's names matching PATTERN (orchestrator.listing)."""
    from orchestrator.listing import format_rows, kind_rows, overview
    if args.what is None:
        print(overview())
    else:
        rows = kind_rows(args.what, args.pattern or "*")
        if rows:
            print(format_rows(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tlsweep", description="Transfer-learning sweeps on Ray Tune.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="run one trial standalone, printing a line per epoch")
    t.add_argument("--config", help="a trial YAML (data, model, training, seed)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. model.arch=resnet18")
    t.add_argument("--checkpoint-dir", help="write checkpoints here and resume from the newest one")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("run", help="run a study (a YAML file or the name of a shipped one) as a Ray Tune sweep")
    r.add_argument("study", help="path to a study YAML, or a shipped study name (tlsweep list studies)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a study field")
    r.add_argument("--storage", help="results folder or URI (default: the study's storage, ./results)")
    r.add_argument("--address", help="an existing Ray cluster: auto or ray://host:10001")
    r.add_argument("--dashboard", action="store_true",
                   help="start Ray's dashboard (processes) with a local Ray; metrics: tlsweep dashboard")
    r.add_argument("--dashboard-host", default="127.0.0.1",
                   help="address the dashboard binds to (default 127.0.0.1: this machine only)")
    r.add_argument("--overwrite", action="store_true", help="replace earlier results of the same study")
    r.set_defaults(func=cmd_run)

    rs = sub.add_parser("resume", help="continue an interrupted study from its folder")
    rs.add_argument("study_dir")
    rs.add_argument("--address", help="an existing Ray cluster: auto or ray://host:10001")
    rs.add_argument("--dashboard", action="store_true",
                    help="start Ray's dashboard (processes) with a local Ray; metrics: tlsweep dashboard")
    rs.add_argument("--dashboard-host", default="127.0.0.1", help="address the dashboard binds to")
    rs.set_defaults(func=cmd_resume)

    st = sub.add_parser("status", help="a table of a study's trials, while it runs or after")
    st.add_argument("study_dir")
    st.add_argument("--watch", action="store_true",
                    help="refresh the table (trials, epoch, metric, best so far, elapsed, ETA) until the study ends")
    st.add_argument("--interval", type=positive_seconds, default=5.0, metavar="SECONDS",
                    help="with --watch: seconds between refreshes (default 5)")
    st.set_defaults(func=cmd_status)

    db = sub.add_parser("dashboard", help="Optuna Dashboard of a study on 127.0.0.1 (history, intermediate values, "
                                          "parallel coordinates, importances), live while it runs or after; "
                                          "not Ray's dashboard (run --dashboard)")
    db.add_argument("study_dir")
    db.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    db.add_argument("--rebuild", action="store_true",
                    help="write the study's Optuna mirror again from its Parquet tables first")
    db.set_defaults(func=cmd_dashboard)

    sp = sub.add_parser("stop", help="stop a running study (from another terminal) as Ctrl-C would: the trials "
                                     "stop, the results are written, 'tlsweep resume' continues it")
    sp.add_argument("study_dir")
    sp.set_defaults(func=cmd_stop)

    d = sub.add_parser("demo", help="the offline quickstart study (digits 0-4 -> 5-9 transfer)")
    d.add_argument("--set", action="append", metavar="KEY=VALUE")
    d.add_argument("--storage", default="results")
    d.set_defaults(func=cmd_demo)

    rp = sub.add_parser("report", help="write a study's HTML report: summary, leaderboard, figures")
    rp.add_argument("study_dir")
    rp.add_argument("--out", help="the HTML file to write (default: STUDY_DIR/report.html)")
    rp.set_defaults(func=cmd_report)

    ex = sub.add_parser("explain", help="explanation PNGs (Grad-CAM, occlusion, guided backprop, filters, "
                                        "predictions) of a trial, or of the best trial per configuration")
    ex.add_argument("study_dir")
    ex.add_argument("--trial", help="a trial id (tlsweep status) or best; default: compare the best trial of "
                                    "each architecture x strategy side by side")
    ex.add_argument("--images", nargs="+", metavar="PATH", help="image files to explain (default: validation images)")
    ex.add_argument("--from-val", type=int, default=8, metavar="N",
                    help="explain N validation images of the trial's own data (default 8)")
    ex.add_argument("--methods", help="comma-separated: gradcam,occlusion,guided,filters,grid (default: all)")
    ex.add_argument("--out", help="folder for the PNGs and index.json (default: STUDY_DIR/explain)")
    ex.add_argument("--window", type=int, help="occlusion square side in model-input pixels (default 30; "
                                               "smaller on small images)")
    ex.add_argument("--stride", type=int, help="occlusion stride in pixels (default 20)")
    ex.add_argument("--grid", default="10x3", metavar="ROWSxCOLS", help="prediction grid of one trial (default 10x3)")
    ex.add_argument("--epoch", default="best", help="best (the weights of the epoch the study's metric chose, "
                                                     "the default) or last (the newest checkpoint's)")
    ex.set_defaults(func=cmd_explain)

    pr = sub.add_parser("predict", help="top-k classes of images from a checkpoint or a study's trial")
    pr.add_argument("source", metavar="CHECKPOINT_OR_STUDY",
                    help="a checkpoint (state.pt, ckpt-*.pt or its folder) or a study folder")
    pr.add_argument("images", nargs="+", metavar="IMAGE")
    pr.add_argument("--topk", type=int, default=5)
    pr.add_argument("--trial", help="with a study folder: a trial id or best (default best)")
    pr.add_argument("--gradcam", action="store_true", help="also write <image>-gradcam.png and print its path")
    pr.add_argument("--out", help="folder for the Grad-CAM PNGs (default: the current folder)")
    pr.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pr.add_argument("--epoch", default="best", help="best (the weights of the epoch the trial's objective chose, "
                                                     "the default) or last (the checkpoint's own)")
    pr.set_defaults(func=cmd_predict)

    xp = sub.add_parser("export", help="write a trial's model (default: the best) as safetensors, torchscript "
                                       "or onnx, with a model card (config, metrics, preprocessing) next to it")
    xp.add_argument("source", metavar="STUDY_DIR_OR_CHECKPOINT")
    xp.add_argument("--trial", help="with a study folder: a trial id or best (default best)")
    xp.add_argument("--epoch", default="best", help="best (the epoch the study's metric chose, the default) or last")
    xp.add_argument("--format", required=True, help="safetensors, torchscript or onnx (onnx needs the onnx package)")
    xp.add_argument("--out", help="the model file to write (default: STUDY_DIR/export/<trial>-<epoch>.<ext>); "
                                  "the model card goes next to it as .json")
    xp.set_defaults(func=cmd_export)

    rk = sub.add_parser("rank", help="rank a study's architectures by transferability scores of their frozen "
                                     "features (LogME, H-score, LEEP, k-NN), before or after sweeping them")
    rk.add_argument("study", help="path to a study YAML, or a shipped study name")
    rk.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a study field")
    rk.add_argument("--storage", help="results folder or URI (default: the study's storage)")
    rk.add_argument("--score", help="the score to rank by (default: search.preselect.score, else logme; "
                                    "tlsweep list scores)")
    rk.add_argument("--stages", action="store_true",
                    help="also score the pooled output of every stage freeze_depth can select, and print the "
                         "freeze_depth each score prefers per architecture (a freeze-depth hint)")
    rk.set_defaults(func=cmd_rank)

    ls = sub.add_parser("list", help="the names a study can hold: models, datasets, studies, strategies, "
                                     "optimizers, ... (no KIND: every kind)")
    ls.add_argument("what", nargs="?", metavar="KIND", help="models, datasets, studies, tasks, strategies, ... "
                                                             "(tlsweep list: all of them)")
    ls.add_argument("pattern", nargs="?", help="a glob, e.g. 'resnet*'")
    ls.set_defaults(func=cmd_list)
    return p


def one_line_warnings() -> None:
    """Warnings meant for the user (a damaged results part left out) print as one line, not with source."""
    import warnings
    default = warnings.formatwarning
    if getattr(default, "tlsweep", False):
        return

    def fmt(message, category, filename, lineno, line=None):
        from analysis.load import DamagedPart
        if issubclass(category, DamagedPart):
            return f"tlsweep: warning: {message}\n"
        return default(message, category, filename, lineno, line)
    fmt.tlsweep = True
    warnings.formatwarning = fmt


class EarlyStop(KeyboardInterrupt):
    """SIGTERM before a study's driver took over the signals (while Ray and torch are imported, say)."""


def _early_sigterm(signum, frame) -> None:
    raise EarlyStop


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    one_line_warnings()
    from orchestrator.stopping import EXIT_CODES, Stopped
    import signal
    # until orchestrator.stopping.Driver installs its own: a SIGTERM ends with one line and 143, like Ctrl-C's 130
    import threading
    main_thread = threading.current_thread() is threading.main_thread()  # signals: the main thread only
    restore = signal.signal(signal.SIGTERM, _early_sigterm) if main_thread else None
    try:
        return args.func(args)
    except Stopped as e:  # Ctrl-C, SIGTERM or tlsweep stop: one line, no traceback
        print(e, file=sys.stderr)
        return e.exit_code
    except USER_ERRORS as e:
        print(f"tlsweep: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        print("tlsweep: interrupted", file=sys.stderr)
        return EXIT_CODES[signal.SIGTERM if isinstance(e, EarlyStop) else signal.SIGINT]
    except Exception as e:  # noqa: BLE001 - only a failed study and a results write error become messages
        from orchestrator.summary import StudyFailed
        if isinstance(e, StudyFailed):
            print(f"tlsweep: error: {e}", file=sys.stderr)
            return 1
        cause = results_write_error(e)
        if cause is None:
            raise
        print(f"tlsweep: error: {cause}", file=sys.stderr)
        return 1
    finally:
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)


def results_write_error(error: BaseException) -> Optional[BaseException]:
    """The ResultsWriteError behind ``error`` (Tune may wrap a callback's exception), if any."""
    from orchestrator.sink import ResultsWriteError
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ResultsWriteError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
