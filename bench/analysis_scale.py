"""Analysis at scale: load and draw a study of 10,000 trials x 50 epochs (synthetic results, no Ray).

Builds the results with ``analysis.synthetic``, writes them in the real layout (one Parquet part per trial and
table: 40,000 files for 10,000 trials), times ``analysis.load`` of the folder, then draws every registered
figure (to PNG in memory, as the report does) and prints the seconds per figure and in total.

Run: .venv/bin/python bench/analysis_scale.py [--trials 10000] [--epochs 50] [--classes 5] [--no-write] [--report]
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import matplotlib.pyplot as plt  # noqa: E402

from analysis.figures import FIGURES  # noqa: E402
from analysis.load import compact, load  # noqa: E402
from analysis.report import write_report  # noqa: E402
from analysis.synthetic import synthetic_tables, write_tables  # noqa: E402


def timed(label: str, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.2f} s", flush=True)
    return out, seconds


def draw(spec, tables) -> str:
    fig = spec.fn(tables)
    if fig is None:
        return "does not apply"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f"{len(buf.getvalue()) / 1024:.0f} KiB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="skip writing and loading Parquet: figures only")
    p.add_argument("--report", action="store_true", help="also time the whole HTML report")
    p.add_argument("--dir", help="where to write the study (default: a temporary folder, removed after)")
    args = p.parse_args()

    print(f"{args.trials} trials x {args.epochs} epochs, {args.classes} classes, {len(FIGURES)} figures registered")
    tables, _ = timed("synthetic tables", synthetic_tables, args.trials, args.epochs, args.classes, seeds=args.seeds)
    print(f"rows: trials {len(tables.trials):,}, epochs {len(tables.epochs):,}, per_class {len(tables.per_class):,}, "
          f"confusion {len(tables.confusion):,}")
    with tempfile.TemporaryDirectory(prefix="tlsweep-bench-") as tmp:
        folder = Path(args.dir or tmp) / "scale"
        if not args.no_write:
            timed("write parts", write_tables, tables, folder)
            parts = sum(1 for _ in (folder / "results").rglob("*.parquet"))
            loaded, _ = timed(f"load from the parts ({parts:,} files: a running study)", load, folder)
            assert len(loaded.trials) == len(tables.trials) and len(loaded.epochs) == len(tables.epochs)
            timed("compact (what the sink does when a study ends)", compact, folder)
            loaded, _ = timed("load a finished study (one snapshot per table)", load, folder)
            assert len(loaded.trials) == len(tables.trials) and len(loaded.epochs) == len(tables.epochs)
            tables = loaded
        total = 0.0
        for spec in FIGURES.values():
            start = time.perf_counter()
            what = draw(spec, tables)
            seconds = time.perf_counter() - start
            total += seconds
            print(f"figure {spec.name}: {seconds:.2f} s ({what})", flush=True)
        print(f"all {len(FIGURES)} figures: {total:.2f} s")
        if args.report and not args.no_write:
            path, _ = timed("report (load + every figure + HTML)", write_report, folder, Path(tmp) / "report.html")
            print(f"report size: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
