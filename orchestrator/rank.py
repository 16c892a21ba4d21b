"""Rank a study's architectures by transferability scores of their frozen features (``tlsweep rank``), and
``search.preselect``: keep the best ones before the main search.

For every architecture of ``model.arch`` with pretrained weights (the pretraining stage's checkpoint, ``imagenet``
or ``file:``), the head's input on the target's training split comes from the frozen-feature cache
(:mod:`trainables.transfer_features`, computed when missing) and every score of
:data:`analysis.transferability.SCORES` is computed on it, LEEP where the weights bring their source head. One row
per architecture goes to the ``transferability`` table (``results/transferability/rank.parquet``, read with
:func:`analysis.transferability.read_scores`); architectures trained from scratch get a row without scores.

``tlsweep rank`` writes into the study folder: after ``tlsweep run`` it sits next to the sweep's tables (the report
then draws score vs fine-tuned result); before it, ``tlsweep run`` finds the folder taken (``--overwrite``), so
rank before a sweep with ``search.preselect``, which writes the same table inside ``tlsweep run``.

``tlsweep rank --stages`` also scores the pooled outputs of every backbone stage boundary ``model.freeze_depth``
can select (:mod:`trainables.stage_features`; LEEP needs the head's input, so not there): one row per architecture
and depth, with ``freeze_depth`` and ``stage``, in the same table as a separate part
(``results/transferability/stages.parquet``; :func:`analysis.transferability.read_stage_scores`, while
``read_scores`` keeps the final-layer rows), and a "freeze-depth hint": the depth each score prefers per arch.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Optional

from analysis.transferability import SCORES, TABLE, score_all
from search_spaces import Study

PART = "rank"
STAGES_PART = "stages"


def trial_for(study: Study, arch: str, pretrained: dict) -> dict:
    """The trial config an architecture's features are taken under: the study's constants, this arch, its weights."""
    from orchestrator.space import resolve
    trial = resolve(study.trial, {"model.arch": arch})
    trial["task"] = study.task
    if arch in pretrained:
        trial.setdefault("model", {})["weights"] = f"file:{pretrained[arch]}"
    return trial


def has_weights(trial: dict) -> bool:
    return trial.get("model", {}).get("weights", "none") not in (None, "none", False)


def rank_rows(study: Study, pretrained: dict, archs: list[str], log: Callable[[str], None] = print) -> list[dict]:
    """One row per architecture: its scores and the seconds each took (none for architectures without weights)."""
    from trainables.feature_cache import Unsafe
    from trainables.transfer_features import frozen_features
    rows = []
    for arch in archs:
        trial = trial_for(study, arch, pretrained)
        row = {"study": study.name, "arch": arch, "weights": str(trial.get("model", {}).get("weights", "none")),
               "scored": has_weights(trial)}
        if row["scored"]:
            try:
                ff = frozen_features(trial, log=log)
            except Unsafe as e:  # no single head module to take the input of (some hf models)
                row.update(scored=False, error=f"no frozen features: {e}")
                log(f"rank {arch}: {row['error']}: not scored")
                rows.append(row)
                continue
            row.update(n_images=len(ff.labels), n_features=int(ff.features.shape[1]),
                       n_classes=int(len(set(ff.labels.tolist()))),
                       source_classes=None if ff.source_logits is None else int(ff.source_logits.shape[1]),
                       feature_seconds=ff.seconds, features_cached=ff.cached)
            for name, (value, seconds) in score_all(ff.features, ff.labels, ff.source_logits).items():
                row[name], row[f"{name}_seconds"] = value, seconds
            log(f"rank {arch}: " + ", ".join(f"{n} {row[n]:.4g}" for n in SCORES.names() if n in row)
                + f" ({ff.seconds + sum(row.get(f'{n}_seconds', 0) for n in SCORES.names()):.1f}s)")
        else:
            log(f"rank {arch}: no pretrained weights (trained from scratch): not scored")
        rows.append(row)
    return rows


def stage_rows(study: Study, pretrained: dict, archs: list[str], log: Callable[[str], None] = print) -> list[dict]:
    """One row per architecture with weights and stage depth: ``freeze_depth``, ``stage``, the scores on the pooled
    stage output (no LEEP) and the seconds each took."""
    from trainables.stage_features import stage_features
    rows = []
    for arch in archs:
        trial = trial_for(study, arch, pretrained)
        if not has_weights(trial):
            continue
        for sf in stage_features(trial, log=log):
            row = {"study": study.name, "arch": arch, "weights": str(trial["model"]["weights"]),
                   "freeze_depth": sf.freeze_depth, "stage": sf.stage, "stage_module": sf.module,
                   "n_images": len(sf.labels), "n_features": int(sf.features.shape[1])}
            for name, (value, seconds) in score_all(sf.features, sf.labels).items():
                row[name], row[f"{name}_seconds"] = value, seconds
            rows.append(row)
    return rows


def depth_hint(rows: list[dict]) -> list[dict]:
    """Per architecture, the ``freeze_depth`` each score is highest at (ties: the deeper freeze, cheaper)."""
    hints = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = [r for r in rows if r["arch"] == arch]
        hint = {"arch": arch}
        for name in SCORES.names():
            valued = [r for r in mine if _valued(r, name)]
            if valued:
                hint[name] = max(valued, key=lambda r: (r[name], r["freeze_depth"]))["freeze_depth"]
        hints.append(hint)
    return hints


def format_stages(rows: list[dict]) -> str:
    """The per-stage scores, then the "freeze-depth hint" table."""
    import pandas as pd
    frame = pd.DataFrame(rows)
    names = [n for n in SCORES.names() if n in frame.columns]
    table = frame[["arch", "freeze_depth", "stage", "stage_module", "n_features"] + names]
    fmt = lambda v: f"{v:.4g}"  # noqa: E731
    hint = pd.DataFrame(depth_hint(rows))
    return (table.to_string(index=False, float_format=fmt, na_rep="-") +
            "\nfreeze-depth hint (the freeze_depth each score prefers):\n" +
            hint.to_string(index=False, float_format=lambda v: f"{v:.3g}", na_rep="-"))


def _part(folder, part: str):
    """(file system, path) of one part of the study's ``transferability`` table."""
    from orchestrator.storage import StudyStore
    store = StudyStore(folder)
    return store.fs, store.join("results", TABLE, f"{part}.parquet")


def drop_part(folder, part: str) -> None:
    """Remove one part of the study's ``transferability`` table, if there is one."""
    import pyarrow.fs as pafs
    fs, path = _part(folder, part)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def write_table(folder, rows: list[dict], part: str = PART) -> str:
    """Write the rows as the study's ``transferability`` table (one part, replaced by a later ranking)."""
    from orchestrator.sink import write_part
    fs, path = _part(folder, part)
    write_part(path, rows, fs)
    return path


def format_ranking(rows: list[dict], score: str = "logme") -> str:
    """The ranked table: best first by ``score``, each score with the seconds it took."""
    import pandas as pd
    frame = pd.DataFrame(rows)
    names = [n for n in SCORES.names() if n in frame.columns]
    frame = frame.sort_values(score, ascending=False, na_position="last") if score in frame.columns else frame
    frame.insert(0, "rank", range(1, len(frame) + 1))
    cols = ["rank", "arch"] + [c for n in names for c in (n, f"{n}_seconds")] + \
        [c for c in ("feature_seconds", "features_cached") if c in frame.columns]
    for extra in ("kept", "why"):
        if extra in frame.columns:
            cols.append(extra)
    shown = frame[cols].rename(columns=lambda c: c.replace("_seconds", " s").replace("feature s", "features s"))
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")


def rank_study(study: Study, storage: Optional[str] = None, log: Callable[[str], None] = print,
               pretrained: Optional[dict] = None, stages: bool = False) -> tuple[list[dict], str]:
    """Pretrain where the study says so (cached), score every architecture, write the table; (rows, its path).
    ``stages``: the per-stage rows too (:func:`stage_rows`), written as their own part and logged as tables."""
    from orchestrator.pretrain import architectures, pretrain_all
    from orchestrator.storage import study_location
    pretrained = pretrain_all(study, log=log) if pretrained is None else pretrained
    start = time.perf_counter()
    rows = rank_rows(study, pretrained, architectures(study), log)
    log(f"ranked {sum(r['scored'] for r in rows)} architectures in {time.perf_counter() - start:.1f}s")
    folder = study_location(storage or study.storage, study.name)
    if stages:
        start = time.perf_counter()
        per_stage = stage_rows(study, pretrained, architectures(study), log)
        log(f"scored {len(per_stage)} stage depths in {time.perf_counter() - start:.1f}s")
        if per_stage:
            write_table(folder, per_stage, STAGES_PART)
            log(format_stages(per_stage))
    else:
        drop_part(folder, STAGES_PART)  # an earlier ranking's stage rows would not match this one's
    return rows, write_table(folder, rows)


def _valued(row: dict, score: str) -> bool:
    value = row.get(score)
    return isinstance(value, (int, float)) and math.isfinite(value)


def preselect(study: Study, pretrained: dict, folder, log: Callable[[str], None] = print) -> Study:
    """``search.preselect``: rank, keep the top architectures (and those trained from scratch, as baselines),
    record what was kept and why in the table, and return the study with ``model.arch`` narrowed to them."""
    from orchestrator.pretrain import architectures
    spec = study.search.preselect
    start = time.perf_counter()
    rows = rank_rows(study, pretrained, architectures(study), log)
    scored = sorted((r for r in rows if _valued(r, spec.score)), key=lambda r: -r[spec.score])
    keep = spec.keep(len(scored))
    for place, row in enumerate(scored, 1):
        row["kept"] = place <= keep
        row["why"] = (f"{spec.score} rank {place} of {len(scored)}"
                      f"{'' if place <= keep else f' (search.preselect keeps the top {keep})'}")
    for row in rows:
        if row["scored"] and not _valued(row, spec.score):  # LEEP without a source head
            row["kept"], row["why"] = True, f"no {spec.score} (its weights have no source head): kept"
        elif not row["scored"]:
            row["kept"] = True
            row["why"] = (f"{row['error']}: not scored, kept" if row.get("error") else
                          "trained from scratch: not scored, kept as a baseline")
        row["preselect_score"] = spec.score
    seconds = time.perf_counter() - start
    for row in rows:
        row["rank_seconds"] = seconds
    write_table(folder, rows)
    log(format_ranking(rows, spec.score))
    kept = [r["arch"] for r in rows if r["kept"]]
    left = [r["arch"] for r in rows if not r["kept"]]
    log(f"preselect: sweeping {', '.join(kept)}; left out {', '.join(left) or 'none'} "
        f"(by {spec.score}, in {seconds:.1f}s)")
    domains = [dataclasses.replace(d, args=tuple(a for a in d.args if a in kept)) if d.path == "model.arch" else d
               for d in study.domains]
    return dataclasses.replace(study, domains=domains)


def cmd_rank(args) -> int:
    """``tlsweep rank STUDY``: the ranked table (and the seconds each score took), and where the table went."""
    from search_spaces import find_study, load_study
    study = load_study(find_study(args.study), args.set or [])
    score = args.score or (study.search.preselect.score if study.search.preselect else "logme")
    if score not in SCORES:
        from trainables.errors import ConfigError, suggest
        hint = suggest(score, SCORES.names()) or f" (scores: {', '.join(SCORES.names())})"
        raise ConfigError(f"--score: unknown score {score!r}{hint}")
    rows, path = rank_study(study, storage=args.storage, log=lambda line: print(line, flush=True),
                            stages=getattr(args, "stages", False))
    print(format_ranking(rows, score))
    print(f"transferability table: {path}")
    return 0
