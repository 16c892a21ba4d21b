"""One transfer study run four ways side by side: plain Ray Tune, tuned Ray Tune, Optuna alone, and tlsweep.

The study is the quickstart's (search_spaces/quickstart.yaml): resnet18 and mobilenetv3_small_100 x linear_probe,
partial, full, two_phase x lr 0.001, 0.005, plus the scratch CNN x 2 lrs (18 trials), digits 5-9 at 32 px with 5
labelled images per class, 8 epochs, ASHA (grace 2, reduction 2), 2 trials at a time. Every way starts from the
same pretrained checkpoints (tlsweep's pretraining stage, orchestrator.pretrain, run once by this script and
cached), trains on the same uint8 tensors (prepared once by tlsweep's data code and saved; each way's hash is
checked), with the same seed, optimizer (AdamW, weight decay 1e-4, the quickstart's default), per-batch cosine
schedule, freezing (BatchNorm of frozen layers in eval mode) and epochs:

(a)  tutorial: Ray Tune as its PyTorch tutorial teaches: a hand-written loop in a function trainable,
     ``tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(...))`` every epoch, ASHAScheduler, a new
     worker process per trial (Ray's default reuse_actors=False), every checkpoint kept, grid in listed order.
(a') tuned: the same script as a practised user runs it: ``reuse_actors=True``, ``CheckpointConfig(num_to_keep=2)``,
     the grid shuffled (the same seeded order tlsweep uses).
(b)  optuna: Optuna alone: GridSampler over the same 18 configs, SuccessiveHalvingPruner(min_resource=2,
     reduction_factor=2), ``trial.report`` / ``should_prune`` per epoch, ``study.optimize(n_jobs=2)`` (threads;
     in-memory storage, no checkpoints).
(c)  tlsweep: ``orchestrator.tuner.run_study`` of the same study (its feature and prefix caches start empty in
     every run: ``TLSWEEP_FEATURE_CACHE`` points at a fresh folder).

Each way runs as its own Python process (a user's script: imports, ``ray.init(num_cpus=2,
include_dashboard=False, log_to_driver=False)`` (as tlsweep's CLI), the sweep, ``ray.shutdown()``), the order
rotating between repeats. Wall time is that
process's; CPU time is the user + system time of the process and every descendant (Ray's GCS, raylet, workers,
even those that outlive their parent): this script makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so
every orphaned Ray process is re-parented to it and reaped, and ``getrusage(RUSAGE_CHILDREN)`` then holds all of
it (except processes reaped without their rusage being collected, as Ray's workers seem to be: the tree is sampled with
psutil every 0.5 s, and the larger figure counts). Disk: the results folder when the run ends (tlsweep: the study
folder plus its feature cache), measured and then deleted. Medians over ``--repeats``.

Run: flock /tmp/tlsweep-ray.lock nice -n 5 .venv/bin/python bench/peers.py [--repeats 3] [--epochs 8]
     [--size 64 --trials-scale 2] [--ways tutorial,tuned,optuna,tlsweep] [--keep DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import hashlib
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

WAYS = ("tutorial", "tuned", "optuna", "tlsweep")
# what tlsweep's partial freezing (freeze_depth 0.5 of timm's coarse stages) freezes, as a user writes it
PARTIAL_FROZEN = {"resnet18": ("conv1.", "bn1.", "layer1."),
                  "mobilenetv3_small_100": ("conv_stem.", "bn1.", "blocks.0.", "blocks.1.", "blocks.2."),
                  "scratch_cnn": ("blocks.0.", "blocks.1.")}
# tlsweep's environment switches (orchestrator.tuner sets them on import): the peers run with Ray's defaults
TLSWEEP_ENV = ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "RAY_TRAIN_V2_ENABLED",
               "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S")


# ---------------------------------------------------------------------------------------------------------------
# The peers' training code: what a user writes (timm model, requires_grad freezing, tensors, AdamW, cosine)
# ---------------------------------------------------------------------------------------------------------------
# Optuna's n_jobs trials are threads sharing torch's global RNG: run_optuna sets a lock so that seeding and building
# a model happen as one step (None elsewhere: Ray pickles this module's functions, and a lock cannot be pickled).
BUILD_LOCK = None


def build_model(arch: str, spec: dict):
    with BUILD_LOCK or contextlib.nullcontext():
        return _build_model(arch, spec)


def _build_model(arch: str, spec: dict):
    import timm
    import torch
    torch.manual_seed(spec["seed"])
    if arch == "scratch_cnn":  # tlsweep's small CNN (the baseline has no timm equivalent): its module, as is
        from trainables.config import ModelConfig
        from trainables.models.scratch import LOCAL_MODELS
        model = LOCAL_MODELS[arch](ModelConfig(arch=arch, **spec["scratch"]), spec["num_classes"])
        mean, std = (0.5,) * 3, (0.25,) * 3
    else:
        model = timm.create_model(arch, pretrained=False, num_classes=spec["num_classes"])
        mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    head = {n for n, p in model.named_parameters() if id(p) in head_ids}
    if arch in spec["pretrained"]:  # the quickstart's baseline (scratch_cnn) starts from random weights
        state = torch.load(spec["pretrained"][arch], map_location="cpu", weights_only=True)["model"]
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
        assert set(missing) == head and not unexpected, (missing, unexpected)
    return model, head, mean, std


def train_epochs(cfg: dict, spec: dict):
    """Yield ``(epoch, {"epoch", "val_acc", "val_loss"}, state)`` after each epoch of one config."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    data = torch.load(spec["data"], weights_only=True)
    xtr, ytr, xva, yva = data["train_x"], data["train_y"], data["val_x"], data["val_y"]
    model, head, mean, std = build_model(cfg["arch"], spec)
    mean = torch.tensor(mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(std).view(1, 3, 1, 1) * 255.0
    gen = torch.Generator().manual_seed(spec["seed"])
    epochs, bs, strategy = spec["epochs"], spec["batch_size"], cfg.get("strategy", "full")
    steps = math.ceil(len(ytr) / bs)
    head_epochs = spec["head_epochs"]
    phase = None
    for epoch in range(epochs):
        new_phase = int(strategy == "two_phase" and epoch >= head_epochs)
        if new_phase != phase:  # freeze, and a fresh optimizer and schedule for this phase
            phase = new_phase
            head_only = strategy == "linear_probe" or (strategy == "two_phase" and phase == 0)
            frozen = PARTIAL_FROZEN[cfg["arch"]] if strategy in ("partial", "two_phase") else ()
            for n, p in model.named_parameters():
                p.requires_grad_(n in head if head_only else not n.startswith(frozen))
            frozen_bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                         and not any(p.requires_grad for p in m.parameters(recurse=False))]
            heads = [p for n, p in model.named_parameters() if p.requires_grad and n in head]
            body = [p for n, p in model.named_parameters() if p.requires_grad and n not in head]
            mult = spec["backbone_lr_mult"] if strategy == "two_phase" else 1.0
            groups = ([{"params": heads + body, "lr": cfg["lr"]}] if mult == 1.0 else
                      [{"params": heads, "lr": cfg["lr"]}, {"params": body, "lr": cfg["lr"] * mult}])
            opt = torch.optim.AdamW(groups, lr=cfg["lr"], weight_decay=spec["weight_decay"])
            first = min(head_epochs, epochs)  # two_phase: each phase has its own cosine over its epochs
            length = first if strategy == "two_phase" and phase == 0 else \
                epochs - first if strategy == "two_phase" else epochs
            total = max(1, length * steps)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s, total=total: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
        model.train()
        for m in frozen_bn:
            m.eval()
        order = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            if len(idx) < 2 and i > 0:
                continue
            x = (xtr[idx].float() - mean) / std
            loss = F.cross_entropy(model(x), ytr[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model((xva[i:i + 256].float() - mean) / std) for i in range(0, len(yva), 256)])
        metrics = {"epoch": epoch + 1, "val_acc": (logits.argmax(1) == yva).float().mean().item(),
                   "val_loss": F.cross_entropy(logits, yva).item()}
        yield epoch + 1, metrics, lambda: {"epoch": epoch + 1, "model": model.state_dict(),
                                           "optimizer": opt.state_dict()}


def config_name(cfg: dict) -> str:
    return f"{cfg['arch']}/{cfg.get('strategy', 'full')}/{cfg['lr']:g}"


# ---------------------------------------------------------------------------------------------------------------
# (a) and (a'): Ray Tune
# ---------------------------------------------------------------------------------------------------------------
def ray_trainable(config: dict, spec: dict) -> None:
    import torch
    from ray import tune
    torch.set_num_threads(1)
    for _, metrics, state in train_epochs(config["cfg"], spec):
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state(), os.path.join(folder, "checkpoint.pt"))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def run_ray(spec: dict, out: Path, tuned: bool) -> dict:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    configs = list(spec["configs"])
    if tuned:
        random.Random(spec["seed"]).shuffle(configs)  # the order tlsweep's shuffled grid uses
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # as tlsweep's CLI
    scheduler = ASHAScheduler(max_t=spec["epochs"], grace_period=spec["grace_period"],
                              reduction_factor=spec["reduction_factor"])
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(ray_trainable, spec=spec), {"cpu": 1}),
        param_space={"cfg": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", scheduler=scheduler,
                                    max_concurrent_trials=spec["concurrency"], reuse_actors=tuned),
        run_config=tune.RunConfig(name="peers", storage_path=str(out / "results"),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2) if tuned else None))
    grid = tuner.fit()
    trials = []
    for r in grid:
        df = r.metrics_dataframe
        rows = [] if df is None else df[["epoch", "val_acc", "val_loss"]].to_dict("records")
        trials.append({"config": r.config["cfg"], "epochs": rows, "seconds": r.metrics.get("time_total_s", 0.0)})
    ray.shutdown()
    return {"trials": trials}


# ---------------------------------------------------------------------------------------------------------------
# (b) Optuna alone
# ---------------------------------------------------------------------------------------------------------------
def run_optuna(spec: dict, out: Path) -> dict:
    import optuna
    import torch
    global BUILD_LOCK
    BUILD_LOCK = threading.Lock()
    torch.set_num_threads(1)  # two trials in threads of one process: one thread each, as Ray gives a trial
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    by_name = {config_name(c): c for c in spec["configs"]}
    models = list(dict.fromkeys(n.rsplit("/", 1)[0] for n in by_name))
    lrs = list(dict.fromkeys(c["lr"] for c in spec["configs"]))
    trials: list[dict] = []

    def objective(trial) -> float:
        model = trial.suggest_categorical("model", models)
        lr = trial.suggest_categorical("lr", lrs)
        cfg = by_name[f"{model}/{lr:g}"]
        rows: list = []
        entry = {"config": cfg, "epochs": rows, "seconds": 0.0}
        trials.append(entry)
        start = time.perf_counter()
        for epoch, metrics, _ in train_epochs(cfg, spec):
            rows.append(metrics)
            entry["seconds"] = time.perf_counter() - start
            trial.report(metrics["val_acc"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return max(r["val_acc"] for r in rows)

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.GridSampler({"model": models, "lr": lrs}, seed=spec["seed"]),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=spec["grace_period"],
                                                       reduction_factor=spec["reduction_factor"]))
    study.optimize(objective, n_trials=len(by_name), n_jobs=spec["concurrency"])
    return {"trials": trials}


# ---------------------------------------------------------------------------------------------------------------
# (c) tlsweep
# ---------------------------------------------------------------------------------------------------------------
def run_tlsweep(spec: dict, out: Path) -> dict:
    os.environ["TLSWEEP_FEATURE_CACHE"] = str(out / "feature-cache")  # empty: this run computes its own
    import ray

    from analysis.load import load
    from orchestrator import tuner as T
    from search_spaces import study_from_dict
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # as tlsweep's CLI
    folder, _ = T.run_study(study_from_dict(spec["study"]), storage=str(out / "results"), overwrite=True,
                            log=lambda *a: None)
    ray.shutdown()
    tables = load(folder)
    epochs = tables.epochs.sort_values(["trial_id", "epoch"])
    trials = []
    for _, row in tables.trials.iterrows():  # the trials table has the config.* columns, epochs the metrics
        cfg = {"arch": row["config.model.arch"], "lr": float(row["config.training.lr"])}
        if cfg["arch"] != "scratch_cnn":
            cfg["strategy"] = row["config.model.strategy"]
        rows = epochs[epochs["trial_id"] == row["trial_id"]]
        trials.append({"config": cfg, "epochs": rows[["epoch", "val_acc", "val_loss"]].to_dict("records"),
                       "seconds": float(row.get("wall_seconds") or 0.0)})
    return {"trials": trials}


def worker(way: str, spec_path: str, out: str) -> None:
    import torch
    spec = json.loads(Path(spec_path).read_text())
    out_dir = Path(out)
    data = torch.load(spec["data"], weights_only=True)
    run = {"tutorial": lambda: run_ray(spec, out_dir, False), "tuned": lambda: run_ray(spec, out_dir, True),
           "optuna": lambda: run_optuna(spec, out_dir), "tlsweep": lambda: run_tlsweep(spec, out_dir)}[way]
    start = time.perf_counter()
    result = run()
    result["sweep_seconds"] = time.perf_counter() - start
    result["data_hash"] = tensors_hash(data)
    (out_dir / "result.json").write_text(json.dumps(result, default=float))


# ---------------------------------------------------------------------------------------------------------------
# The bench: one study spec, the ways as measured child processes, the table
# ---------------------------------------------------------------------------------------------------------------
def tensors_hash(data: dict) -> str:
    h = hashlib.sha256()
    for key in ("train_x", "train_y", "val_x", "val_y"):
        t = data[key].contiguous()
        h.update(key.encode() + str(tuple(t.shape)).encode() + str(t.dtype).encode() + t.numpy().tobytes())
    return h.hexdigest()[:16]


def study_tree(epochs: int | None, size: int | None, scale: int) -> dict:
    import yaml
    tree = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
    tree["name"] = "peers" if not size and scale == 1 else f"peers_{size or 32}px_x{scale}"
    if epochs:
        tree["training"]["epochs"] = epochs
        sched = tree["search"]["scheduler"]
        sched["grace_period"] = min(sched["grace_period"], epochs)
    if size:
        tree["data"]["image_size"] = size
    if scale > 1:  # more learning rates: 2 x scale, log-spaced from 0.0005 to 0.01
        n = 2 * scale
        tree["training"]["lr"] = {"grid": [float(f"{0.0005 * 20 ** (i / (n - 1)):.2g}") for i in range(n)]}
    return tree


def prepare_spec(tree: dict, work: Path) -> tuple[dict, str]:
    """Pretrain (cached), save the data tensors, list the configs; returns (spec, hash of a tlsweep trial's data)."""
    import torch

    from orchestrator import grid
    from orchestrator.pretrain import pretrain_all
    from search_spaces import study_from_dict
    from trainables.config import trial_config
    from trainables.data import load_raw
    from trainables.data.base import prepare
    study = study_from_dict(tree)
    pretrained = pretrain_all(study, log=lambda m: print(f"  {m}", flush=True))
    combos = grid.combos(grid.axes(study), study.trial)
    configs = [{k: v for k, v in (("arch", c["model.arch"]), ("strategy", c.get("model.strategy")),
                                  ("lr", c["training.lr"])) if v is not None} for c in combos]
    cfg = trial_config(copy.deepcopy(study.trial))
    size = cfg.data.image_size
    data = prepare(load_raw(cfg.data), cfg.data, size)
    tensors = {"train_x": data.splits["train"].images, "train_y": data.splits["train"].labels,
               "val_x": data.splits["val"].images, "val_y": data.splits["val"].labels}
    torch.save(tensors, work / "data.pt")
    t = tree["training"]
    sched = tree["search"]["scheduler"]
    spec = {"configs": configs, "pretrained": pretrained, "data": str(work / "data.pt"), "seed": study.trial["seed"],
            "epochs": t["epochs"], "batch_size": t["batch_size"], "weight_decay": 1e-4,
            "head_epochs": tree["model"]["head_epochs"], "backbone_lr_mult": tree["model"]["backbone_lr_mult"],
            "scratch": {"conv_layers": tree["model"]["conv_layers"]}, "num_classes": len(data.class_names),
            "grace_period": sched["grace_period"], "reduction_factor": sched["reduction_factor"],
            "concurrency": tree["search"]["max_concurrent"], "study": tree}
    # what a tlsweep trial trains on: its own Trainer's data, built as the trial builds it
    from trainables.classification import Trainer
    first = copy.deepcopy(study.trial)
    first["model"].update(arch=configs[0]["arch"], weights=f"file:{pretrained[configs[0]['arch']]}")
    splits = Trainer(trial_config(first)).data.splits
    theirs = tensors_hash({"train_x": splits["train"].images, "train_y": splits["train"].labels,
                           "val_x": splits["val"].images, "val_y": splits["val"].labels})
    return spec, theirs


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap_all(limit_s: float = 120.0) -> int:
    """Wait for every child (the orphaned Ray processes re-parented here) to exit; returns how many were reaped."""
    import psutil
    reaped, deadline = 0, time.monotonic() + limit_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid:
            reaped += 1
            continue
        if time.monotonic() > deadline:
            for p in psutil.Process().children():
                p.kill()
            deadline = float("inf")
        time.sleep(0.2)


def sample_tree(proc: subprocess.Popen, every: float = 0.5) -> float:
    """A cross-check of the rusage figure: user + system seconds of every process seen under this one (psutil,
    every ``every`` s, the last sample of each; what a process spends after its last sample is missed)."""
    import psutil
    seen: dict = {}
    me = psutil.Process()
    while proc.poll() is None:
        for p in me.children(recursive=True):
            try:
                t = p.cpu_times()
                seen[(p.pid, p.create_time())] = t.user + t.system
            except psutil.Error:
                pass
        time.sleep(every)
    return sum(seen.values())


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) if path.exists() else 0


def measure(way: str, spec_path: Path, out: Path) -> dict:
    out.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if way == "tlsweep" or k not in TLSWEEP_ENV}
    env.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    cpu0, start = children_cpu(), time.perf_counter()
    with open(out / "log.txt", "w") as log:
        proc = subprocess.Popen([sys.executable, __file__, "--_worker", way, "--_spec", str(spec_path),
                                 "--_out", str(out)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        sampled = sample_tree(proc)
    rc = proc.returncode
    wall = time.perf_counter() - start
    orphans = reap_all()
    cpu = children_cpu() - cpu0
    if rc != 0:
        raise SystemExit(f"{way}: exit {rc}; see {out / 'log.txt'}:\n" + (out / "log.txt").read_text()[-3000:])
    result = json.loads((out / "result.json").read_text())
    disk = folder_bytes(out / "results") + folder_bytes(out / "feature-cache")
    for sub in ("results", "feature-cache"):  # gigabytes of checkpoints: measured, not kept
        shutil.rmtree(out / sub, ignore_errors=True)
    best = max(((r["val_acc"], t["config"]) for t in result["trials"] for r in t["epochs"]), key=lambda x: x[0])
    # rusage misses processes whose parent auto-reaps them (SIGCHLD ignored): Ray's workers; sampling misses the
    # seconds after a process's last sample: the larger of the two is the figure
    return {"way": way, "wall": wall, "cpu": max(cpu, sampled), "cpu_rusage": cpu, "cpu_sampled": sampled,
            "orphans": orphans,
            "sweep": result["sweep_seconds"],
            "busy": sum(t.get("seconds", 0.0) for t in result["trials"]),
            "epochs": sum(len(t["epochs"]) for t in result["trials"]), "trials": len(result["trials"]),
            "disk": disk, "best": best[0], "best_config": config_name(best[1]), "data_hash": result["data_hash"],
            "curves": {config_name(t["config"]): t["epochs"] for t in result["trials"]}}


def compare_curves(peer: dict, ref: dict) -> dict:
    """Per strategy: configs compared, configs whose common epochs agree exactly, the largest differences."""
    out: dict = {}
    for name, rows in peer.items():
        if name not in ref:
            continue
        strategy = "scratch" if name.startswith("scratch_cnn/") else name.split("/")[1]
        theirs = {int(r["epoch"]): r for r in ref[name]}
        common = [(r, theirs[int(r["epoch"])]) for r in rows if int(r["epoch"]) in theirs]
        if not common:
            continue
        d_acc = max(abs(a["val_acc"] - b["val_acc"]) for a, b in common)
        d_loss = max(abs(a["val_loss"] - b["val_loss"]) for a, b in common)
        s = out.setdefault(strategy, {"configs": 0, "exact": 0, "epochs": 0, "acc": 0.0, "loss": 0.0})
        s["configs"] += 1
        s["epochs"] += len(common)
        s["exact"] += int(d_acc == 0 and d_loss == 0)
        s["acc"], s["loss"] = max(s["acc"], d_acc), max(s["loss"], d_loss)
    return out


def mib(n: float) -> str:
    return f"{n / 2 ** 20:.1f} MiB"


def summarize(runs: dict, ways: list, spec: dict, tree: dict, tlsweep_hash: str, work: Path) -> None:
    """The table of medians so far, the goals, the input hashes and the per-epoch comparison with tlsweep."""
    n = min(len(runs[w]) for w in ways)
    keys = ("wall", "sweep", "busy", "cpu", "epochs", "disk", "best")
    med = {w: {k: statistics.median(r[k] for r in runs[w]) for k in keys} for w in ways}
    ref = med["tlsweep"]
    print(f"\nmedians of {n} run(s), {len(spec['configs'])} configs, {spec['epochs']} epochs, "
          f"{tree['data']['image_size']} px (sweep: inside the script; trials: sum of the trials' own time):")
    print(f"{'way':9s} {'wall s':>8s} {'sweep s':>8s} {'trials s':>8s} {'cpu s':>8s} {'epochs':>7s} {'disk':>11s} "
          f"{'best':>7s}   {'tlsweep/way: wall':>17s} {'cpu':>6s} {'epochs':>6s} {'disk':>6s}  best config (each run)")
    for w in ways:
        m = med[w]
        ratio = lambda k: ref[k] / m[k] if m[k] else float("nan")  # noqa: E731
        print(f"{w:9s} {m['wall']:8.1f} {m['sweep']:8.1f} {m['busy']:8.1f} {m['cpu']:8.1f} {m['epochs']:7.0f} "
              f"{mib(m['disk']):>11s} {m['best']:7.4f}   "
              f"{ratio('wall'):17.3f} {ratio('cpu'):6.3f} {ratio('epochs'):6.3f} {ratio('disk'):6.3f}  "
              f"{', '.join(r['best_config'] for r in runs[w])}")
    goals = []
    for w, limit in (("tutorial", 0.5), ("tuned", 0.7)):
        if w in med:
            r = ref["wall"] / med[w]["wall"]
            goals.append(f"tlsweep wall / {w}'s = {r:.3f} (goal <= {limit}: {'met' if r <= limit else 'MISSED'})")
    for w in ways:
        if w != "tlsweep":
            gap = (med[w]["best"] - ref["best"]) * 100
            goals.append(f"best accuracy {w} - tlsweep = {gap:+.2f} points (goal: tlsweep at most 1 below: "
                         f"{'met' if gap <= 1 else 'MISSED'})")
    print("goal: " + "\n      ".join(goals))
    hashes = {w: {r["data_hash"] for r in runs[w]} for w in ways}
    same = all(h == {tlsweep_hash} for h in hashes.values())
    print(f"input tensors: {'equal' if same else 'DIFFERENT'} by hash ({tlsweep_hash}; per way: "
          f"{ {w: sorted(h) for w, h in hashes.items()} })")
    for w in ways:
        if w == "tlsweep":
            continue
        parts = []
        for strategy, s in sorted(compare_curves(runs[w][0]["curves"], runs["tlsweep"][0]["curves"]).items()):
            parts.append(f"{strategy} {s['exact']}/{s['configs']} exact (max |d val_acc| {s['acc']:.4f}, "
                         f"|d val_loss| {s['loss']:.2e}, {s['epochs']} epochs)")
        print(f"per-epoch validation, {w} vs tlsweep (first run, epochs both trained): " + "; ".join(parts))
    (work / "summary.json").write_text(json.dumps({"runs": runs, "medians": med}, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="default: the quickstart's 8")
    ap.add_argument("--size", type=int, default=None, help="image size (default: the quickstart's 32)")
    ap.add_argument("--trials-scale", type=int, default=1, help="k: 2k learning rates (18 trials x k)")
    ap.add_argument("--ways", default=",".join(WAYS))
    ap.add_argument("--keep", default=None, help="keep logs and per-run results here (default: a temporary folder)")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_spec", help=argparse.SUPPRESS)
    ap.add_argument("--_out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        return worker(args._worker, args._spec, args._out)
    ways = [w for w in args.ways.split(",") if w]
    unknown = [w for w in ways if w not in WAYS]
    if unknown or "tlsweep" not in ways:
        raise SystemExit(f"--ways: expected some of {','.join(WAYS)} including tlsweep, got {args.ways}")
    become_subreaper()
    work = Path(args.keep or tempfile.mkdtemp(prefix="tlsweep-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    tree = study_tree(args.epochs, args.size, args.trials_scale)
    print(f"study {tree['name']}: {tree['data']['image_size']} px, lr {tree['training']['lr']['grid']}, "
          f"{tree['training']['epochs']} epochs; pretraining (cached) and data ...", flush=True)
    spec, tlsweep_hash = prepare_spec(tree, work)
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    print(f"{len(spec['configs'])} configs; data tensors {tlsweep_hash} (a tlsweep trial's); work folder {work}",
          flush=True)
    runs: dict[str, list[dict]] = {w: [] for w in ways}
    for rep in range(args.repeats):
        order = ways[rep % len(ways):] + ways[:rep % len(ways)]
        for way in order:
            out = work / f"rep{rep}" / way
            if out.exists():
                shutil.rmtree(out)
            m = measure(way, spec_path, out)
            runs[way].append(m)
            print(f"  rep {rep + 1} {way:8s}: wall {m['wall']:6.1f} s (sweep {m['sweep']:.1f}, trials' own "
                  f"{m['busy']:.1f}), cpu {m['cpu']:6.1f} s (rusage {m['cpu_rusage']:.1f}, sampled "
                  f"{m['cpu_sampled']:.1f}), {m['epochs']:3d} epochs "
                  f"in {m['trials']} trials, disk {mib(m['disk'])}, best {m['best']:.4f} ({m['best_config']}), "
                  f"data {m['data_hash']}, {m['orphans']} orphans reaped", flush=True)
        summarize(runs, ways, spec, tree, tlsweep_hash, work)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
