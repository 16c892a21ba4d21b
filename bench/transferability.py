"""Do transferability scores of the frozen features predict the fine-tuned ranking of the architectures?

Six architectures of five families at small sizes (timm's ``test_resnet``, ``test_byobnet``, ``test_efficientnet``,
``test_convnext``, ``test_vit`` and the project's ``scratch_cnn``), each pretrained by the pretraining stage on
digits 0-4 (the source task; ``orchestrator.pretrain``), then transferred to digits 5-9 with 10 labelled images per
class (32 px). First ``tlsweep rank``'s work (``orchestrator.rank.rank_rows``: the frozen features of the 50
training images, computed into an empty feature cache, and every score of ``analysis.transferability.SCORES``),
timed; then the full sweep: every architecture x strategy (linear_probe, partial, full) x learning rate, each
trial standalone in this process (``trainables.classification.train``, seed 0, no scheduler: every trial runs
its epochs). The preselected sweep of ``search.preselect: {score: S, top_k: k}`` is the same grid over the top k
architectures by S, and with the same seeds and no scheduler its trials are exactly the full sweep's trials of
those architectures: its best and its epochs are read off the full sweep, not run again. All of it is repeated
for ``--episodes`` draws of the labelled target images and the validation split (``data.split_seed`` 0, 1, ...;
the pretrained weights stay the same), since one draw of 50 images and ~180 validation images is noisy.

Reported per episode and on average: time to rank; per score, Kendall's tau (plain and weighted) against the
full sweep's best validation accuracy per architecture; for top 2 and 3, the preselected sweep's best vs the full
sweep's best and its share of the full sweep's epochs. Goal: ranking under a minute on 2 cores; the best score's
tau >= 0.6 and above the k-NN baseline's; the preselected best within 1 point of the full best at <= 40% of its
epochs.

``--stages``: also the scores of every stage boundary's pooled output (``orchestrator.rank.stage_rows``, as
``tlsweep rank --stages``), and per architecture whether the ``freeze_depth`` a score prefers names the sweep's best
strategy for it: the preferred depth's nearest of linear_probe (depth 1.0, everything frozen), partial (the study's
freeze_depth 0.5) and full (depth 0); per-stage rows start at the first stage, so full is predicted only below 0.25.
Baselines: always linear_probe, and the most common best strategy of the episode (known only after the sweep).

Run: .venv/bin/python bench/transferability.py [--episodes 3] [--epochs 8] [--pretrain-epochs 3] [--threads 1]
     [--stages]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

ARCHS = ["scratch_cnn", "test_resnet", "test_byobnet", "test_efficientnet", "test_convnext", "test_vit"]
STRATEGIES = ["linear_probe", "partial", "full"]
DEPTH_OF = {"linear_probe": 1.0, "partial": 0.5, "full": 0.0}  # the freeze_depth each strategy amounts to
LRS = [1e-3, 3e-3]


def study_dict(args, split_seed: int) -> dict:
    return {"name": "bench_transferability",
            "data": {"name": "digits", "classes": [5, 6, 7, 8, 9], "samples_per_class": args.per_class,
                     "image_size": 32, "split_seed": split_seed},
            "model": {"arch": {"grid": ARCHS}, "conv_layers": 3, "first_layer_filters": 16, "dense_units": 64,
                      "freeze_depth": 0.5,
                      "weights": {"pretrain": {"data": {"name": "digits", "classes": [0, 1, 2, 3, 4]},
                                               "epochs": args.pretrain_epochs,
                                               "training": {"lr": 0.003, "batch_size": 64}, "skip": []}}},
            "training": {"epochs": args.epochs, "batch_size": 16, "scheduler": "cosine", "threads": args.threads},
            "search": {"algorithm": "grid", "scheduler": "none"}}


def rank(study, pretrained, rank_rows) -> tuple[list[dict], float]:
    start = time.perf_counter()
    rows = rank_rows(study, pretrained, ARCHS, log=lambda line: None)
    return rows, time.perf_counter() - start


def sweep(study, pretrained, trial_for, train) -> tuple[dict, dict, float, dict]:
    """The full grid, every trial standalone: best val_acc and epochs per architecture, the seconds, and the best
    val_acc per (architecture, strategy)."""
    start = time.perf_counter()
    best: dict[str, float] = {}
    per_strategy: dict[tuple[str, str], float] = {}
    epochs: dict[str, int] = {}
    for arch in ARCHS:
        for strategy in STRATEGIES:
            for lr in LRS:
                trial = trial_for(study, arch, pretrained)
                trial["model"]["strategy"] = strategy
                trial["training"]["lr"] = lr
                reports: list[dict] = []
                train(trial, reports.append)
                acc = max(r["val_acc"] for r in reports)
                best[arch] = max(best.get(arch, 0.0), acc)
                per_strategy[arch, strategy] = max(per_strategy.get((arch, strategy), 0.0), acc)
                epochs[arch] = epochs.get(arch, 0) + len(reports)
    return best, epochs, time.perf_counter() - start, per_strategy


def nearest_strategy(depth: float) -> str:
    return min(STRATEGIES, key=lambda s: (abs(DEPTH_OF[s] - depth), -DEPTH_OF[s]))


def stage_hint(study, pretrained, per_strategy: dict, summary: dict) -> None:
    """Per architecture: the depth each score prefers, its strategy, and the sweep's best strategy; tallied."""
    from orchestrator.rank import depth_hint, stage_rows
    start = time.perf_counter()
    rows = stage_rows(study, pretrained, ARCHS, log=lambda line: None)
    hints = {h["arch"]: h for h in depth_hint(rows)}
    print(f"stage scores: {len(rows)} depths of {len(ARCHS)} architectures in {time.perf_counter() - start:.1f}s")
    best = {a: max(STRATEGIES, key=lambda s: per_strategy[a, s]) for a in ARCHS}
    common = max(STRATEGIES, key=lambda s: sum(b == s for b in best.values()))
    names = [n for n in hints[ARCHS[0]] if n != "arch"]
    print("arch               best strategy (val_acc lp/partial/full)   " + "  ".join(f"{n}" for n in names))
    for a in ARCHS:
        accs = "/".join(f"{per_strategy[a, s]:.3f}" for s in STRATEGIES)
        cells = "  ".join(f"{hints[a][n]:.2f}={nearest_strategy(hints[a][n])[:7]}" for n in names)
        print(f"{a:<18} {best[a]:<13} ({accs})   {cells}")
    for n in names:
        summary.setdefault(n, []).extend(nearest_strategy(hints[a][n]) == best[a] for a in ARCHS)
    summary.setdefault("always linear_probe", []).extend(b == "linear_probe" for b in best.values())
    summary.setdefault("most common best (oracle)", []).extend(b == common for b in best.values())
    summary.setdefault("best strategies", []).extend(best.values())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--pretrain-epochs", type=int, default=3)
    p.add_argument("--per-class", type=int, default=10, help="labelled target images per class")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--episodes", type=int, default=3, help="draws of the labelled target images (data.split_seed)")
    p.add_argument("--stages", action="store_true",
                   help="also: does the freeze_depth each score prefers on the stage outputs name the best strategy")
    args = p.parse_args()
    cache = tempfile.mkdtemp(prefix="tlsweep-bench-transfer-")
    os.environ["TLSWEEP_CACHE"] = cache                                  # pretraining checkpoints
    os.environ["TLSWEEP_FEATURE_CACHE"] = os.path.join(cache, "features")  # empty: ranking computes the features
    import torch
    torch.set_num_threads(args.threads)
    from analysis.transferability import SCORES, kendall
    from orchestrator.pretrain import pretrain_all
    from orchestrator.rank import format_ranking, rank_rows, trial_for
    from search_spaces import study_from_dict
    from trainables.classification import train

    study = study_from_dict(study_dict(args, 0))
    start = time.perf_counter()
    pretrained = pretrain_all(study, log=lambda line: None)
    print(f"pretraining {len(ARCHS)} architectures on digits 0-4: {time.perf_counter() - start:.1f}s")
    summary: dict[str, list] = {}
    hint_summary: dict[str, list] = {}
    for episode in range(args.episodes):
        study = study_from_dict(study_dict(args, episode))  # another draw of the labelled target images
        print(f"== episode {episode} (data.split_seed {episode}) ==")
        rows, rank_s = rank(study, pretrained, rank_rows)
        print(format_ranking(rows, "logme"))
        names = [n for n in SCORES.names() if all(n in r for r in rows)]
        print(f"time to rank {len(ARCHS)} architectures: {rank_s:.1f}s (features "
              f"{sum(r['feature_seconds'] for r in rows):.1f}s, scores "
              f"{sum(r[f'{n}_seconds'] for r in rows for n in names):.2f}s)")
        best, epochs, sweep_s, per_strategy = sweep(study, pretrained, trial_for, train)
        total_epochs = sum(epochs.values())
        full_best = max(best.values())
        print(f"full sweep: {len(ARCHS) * len(STRATEGIES) * len(LRS)} trials, {total_epochs} epochs, "
              f"{sweep_s:.1f}s; best val_acc {full_best:.4f}")
        print("best val_acc per architecture: " + ", ".join(f"{a} {best[a]:.4f}" for a in ARCHS))
        print("score          tau     weighted  top2: best (gap, epochs)     top3: best (gap, epochs)")
        for name in names:
            scores = [next(r[name] for r in rows if r["arch"] == a) for a in ARCHS]
            tau, wtau = kendall(scores, [best[a] for a in ARCHS])
            order = [a for _, a in sorted(zip(scores, ARCHS), key=lambda t: -t[0])]
            cells, gaps = [], []
            for k in (2, 3):
                kept_best = max(best[a] for a in order[:k])
                share = sum(epochs[a] for a in order[:k]) / total_epochs
                gaps.append((100 * (full_best - kept_best), share))
                cells.append(f"{kept_best:.4f} ({gaps[-1][0]:.1f} pt, {share:.0%}) {'/'.join(order[:k])}")
            summary.setdefault(name, []).append((tau, wtau, *gaps))
            print(f"{name:<14} {tau:+.3f}  {wtau:+.3f}    " + "   ".join(cells), flush=True)
        if args.stages:
            stage_hint(study, pretrained, per_strategy, hint_summary)
    print(f"== over {args.episodes} episodes: mean tau, mean weighted tau; top 2 / top 3: episodes within 1 point "
          f"(mean gap) ==")
    for name, per in summary.items():
        taus, wtaus = [p[0] for p in per], [p[1] for p in per]
        within = [sum(p[i][0] <= 1.0 for p in per) for i in (2, 3)]
        mean_gap = [sum(p[i][0] for p in per) / len(per) for i in (2, 3)]
        print(f"{name:<14} tau {sum(taus) / len(taus):+.3f} ({', '.join(f'{t:+.2f}' for t in taus)})  weighted "
              f"{sum(wtaus) / len(wtaus):+.3f} ({', '.join(f'{t:+.2f}' for t in wtaus)})  top2 {within[0]}/{len(per)} "
              f"({mean_gap[0]:.1f} pt)  top3 {within[1]}/{len(per)} ({mean_gap[1]:.1f} pt)")
    if args.stages:
        bests = hint_summary.pop("best strategies")
        print(f"== freeze-depth hint over {args.episodes} episodes x {len(ARCHS)} architectures: preferred depth "
              f"names the best strategy (best: " + ", ".join(f"{s} {bests.count(s)}" for s in STRATEGIES) + ") ==")
        for name, hits in hint_summary.items():
            print(f"{name:<26} {sum(hits)}/{len(hits)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
