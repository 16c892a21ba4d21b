"""Pretrained weights that every node reaches: a copy in the study folder, the bytes through Ray's object store.

The pretraining stage trains on the driver and caches each checkpoint in the driver's own cache
(:func:`orchestrator.pretrain.cache_dir`); a trial may run on any node, which has no such file. So:

- :func:`publish` copies each checkpoint into the study folder, ``<study>/pretrained/<arch>-<hash>.pt``, on the
  study's storage (a shared folder, ``s3://``, ``gs://``), and ``pretrained.yaml`` names these copies relative to
  the study folder. A study folder copied elsewhere is complete, and ``tlsweep resume`` works from any machine
  that reaches the storage.
- :class:`Shipped` carries the checkpoints' bytes to the trials. ``tune.with_parameters`` puts it in Ray's object
  store once; each checkpoint is an object of its own, so a trial fetches only its architecture's, once per node.
  :meth:`Shipped.local_path` writes it into this node's cache (``$TLSWEEP_CACHE/pretrain/shipped/<sha256>.pt``,
  named by content, written atomically: concurrent trials of a node share one file) and the trial trains from
  ``file:<that path>``. Trials never read the weights from the storage: a node needs no storage client or
  credentials for them, and a study on many nodes does not fetch them from S3 once per trial.

Node-local caches stay node-local and are rebuilt on each node: frozen features (trainables.feature_cache),
decoded data (orchestrator.data_share), and these copies of the weights. Weights a study names itself
(``model.weights: file:<path>``) are read where the trial runs: on a cluster that path must exist on every node
(a shared folder, docs/CLUSTER.md); a node without it fails the trial with the path and the node named.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

FOLDER = "pretrained"  # inside the study folder


def publish(store, pretrained: dict[str, str]) -> dict[str, str]:
    """Copy each ``{arch: driver path}`` checkpoint into the study folder; ``{arch: path in the study folder}``."""
    out = {}
    for arch, path in pretrained.items():
        name = f"{FOLDER}/{Path(path).name}"
        if not store.is_file(name):
            store.fs.create_dir(store.join(FOLDER), recursive=True)
            with open(path, "rb") as src, store.fs.open_output_stream(store.join(name + ".tmp")) as dst:
                dst.write(src.read())
            store.fs.move(store.join(name + ".tmp"), store.join(name))  # a driver killed mid-copy leaves no file
        out[arch] = name
    return out


class Shipped:
    """The pretrained checkpoints of a study as Ray objects, ``{arch: (sha256, ObjectRef)}``: picklable, so it
    travels inside ``tune.with_parameters`` and Train's loop config; ``local_path`` runs on the trial's node."""

    def __init__(self, blobs: dict[str, bytes]):
        import ray
        self.refs = {arch: (hashlib.sha256(data).hexdigest(), ray.put(data)) for arch, data in blobs.items()}

    def __contains__(self, arch) -> bool:
        return arch in self.refs

    def __bool__(self) -> bool:
        return bool(self.refs)

    def local_path(self, arch: str) -> str:
        """This node's copy of ``arch``'s checkpoint, fetched from the object store the first time."""
        from orchestrator.pretrain import cache_dir
        sha, ref = self.refs[arch]
        path = cache_dir() / "shipped" / f"{sha}.pt"
        if not path.is_file():
            import ray
            from trainables.atomic_file import write_atomically
            data = ray.get(ref)
            write_atomically(path, lambda out: out.write(data))
        return str(path)


def ship(pretrained: dict[str, str]) -> Shipped:
    """A :class:`Shipped` of the driver's own checkpoints ``{arch: path}`` (those :func:`publish` copied)."""
    return Shipped({arch: Path(path).read_bytes() for arch, path in pretrained.items()})


def fetch(store, published: dict[str, str]) -> Shipped:
    """A :class:`Shipped` of the checkpoints ``pretrained.yaml`` names: in the study folder (relative names), or,
    for studies from before they were copied there, the driver path they were written to."""
    from trainables.errors import ConfigError
    blobs = {}
    for arch, name in published.items():
        if not os.path.isabs(str(name)) and store.is_file(name):
            with store.fs.open_input_stream(store.join(name)) as src:
                blobs[arch] = src.read()
        elif os.path.isabs(str(name)) and Path(name).is_file():
            blobs[arch] = Path(name).read_bytes()
        else:
            raise ConfigError(f"{store}: the pretrained weights of {arch} ({name}) are not there; start the study "
                              f"again with 'tlsweep run STUDY --overwrite'")
    return Shipped(blobs)


def with_weights(trial: dict, pretrained: Optional[Shipped | dict]) -> dict:
    """Point the trial at its architecture's pretrained checkpoint, on this node."""
    arch = trial.get("model", {}).get("arch")
    if pretrained and arch in pretrained:
        path = pretrained.local_path(arch) if isinstance(pretrained, Shipped) else pretrained[arch]
        trial.setdefault("model", {})["weights"] = f"file:{path}"
    return trial
