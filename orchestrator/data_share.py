"""Data decoded once per node: the first trial on a node decodes it, the others read it from Ray's object store.

The Ray side of ``trainables.data.shared`` (which stays Ray-free and only defines the key and the arrays).

- **Registry** (one per study run): a non-detached actor that ``shared_data()`` starts in the driver around
  ``Tuner.fit()``, on the driver's node (which a study cannot outlive), named ``tlsweep-data-<job id>`` so that
  trials (actors of the same job) find it. It creates one
  **holder** per node on demand (0 CPUs, pinned to the node with ``NodeAffinitySchedulingStrategy``; the nodes
  alive at the start get theirs right away, while Tune starts its trials).
- **Holder** (per node): content key (``spec_key``: the data fields that change the decoded images, the image
  size, a fingerprint of the raw source) -> ObjectRef of the prepared arrays. The first trial that asks for a key
  is told to decode; trials asking meanwhile wait for it (an asyncio event), then read the same object. A trial
  that fails while decoding gives its claim back; one that dies (its PID is gone on this node) loses it after
  at most ``POLL_S``, and a waiting trial decodes instead. Data decoded lazily (over ``data.memory_limit_mb``)
  or that the object store refuses is marked local: each trial decodes its own, as without sharing.
- **Lifetime**: the decoding trial hands its arrays to the holder, which ``ray.put``s them itself: the holder
  owns the object, so it lives as long as the holder, not as the trial process that decoded it (Ray >= 2.56 has
  no ``ray.put(_owner=...)``; the price is one memcpy on the node and, for a moment, two copies in its object
  store). Holders are owned by the registry and the registry by the driver: ``shared_data()`` kills them when
  the study ends (the copies leave the object store at once), and if the driver dies, Ray's fate sharing of
  non-detached actors removes them.
- **Never fatal**: sharing only saves time. When the registry or a node's holder is gone (its node was lost
  mid-study), a trial logs a warning and decodes its own data, as without sharing.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Optional

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from trainables.config import DataConfig
from trainables.data.base import ImageData, RawData, prepare
from trainables.data.shared import describe, from_arrays, nbytes, set_provider, spec_key, to_arrays

POLL_S = 2.0  # how often a waiting trial checks that the trial decoding its data is still alive
log = logging.getLogger(__name__)
_last_stats: dict = {}
_last_holders: list = []


def registry_name() -> str:
    return f"tlsweep-data-{ray.get_runtime_context().get_job_id()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@ray.remote(num_cpus=0)
class NodeData:
    """Per-node holder: content key -> [ObjectRef] of the prepared arrays (an async actor: waiters don't block)."""

    def __init__(self) -> None:
        self.refs: dict[str, list] = {}
        self.local: dict[str, str] = {}  # key -> why it is not shared
        self.pending: dict[str, tuple[int, asyncio.Event]] = {}
        self.stats: dict[str, dict] = {}

    async def claim(self, key: str, pid: int, desc: str) -> tuple[str, Optional[list]]:
        """("read", [ref]) | ("decode", None): you decode, then ``done`` or ``give_up`` | ("local", None)."""
        st = self.stats.setdefault(key, {"data": desc, "decodes": 0, "reads": 0, "local": 0, "bytes": 0,
                                         "decode_s": 0.0, "why_local": ""})
        while True:
            if key in self.refs:
                st["reads"] += 1
                return "read", self.refs[key]
            if key in self.local:
                st["local"] += 1
                return "local", None
            claim = self.pending.get(key)
            if claim is None or not _alive(claim[0]):
                if claim is not None:
                    claim[1].set()
                self.pending[key] = (pid, asyncio.Event())
                st["decodes"] += 1
                return "decode", None
            try:
                await asyncio.wait_for(claim[1].wait(), POLL_S)
            except asyncio.TimeoutError:
                pass

    def _release(self, key: str, pid: int) -> bool:
        claim = self.pending.get(key)
        if claim is None or claim[0] != pid:
            return False
        del self.pending[key]
        claim[1].set()
        return True

    def done(self, key: str, pid: int, arrays: dict, size: int, seconds: float) -> list:
        """Adopt the decoded arrays: put them again here, so that this holder owns the object store copy."""
        if self._release(key, pid) or key not in self.refs:
            self.refs[key] = [ray.put(arrays)]
            self.stats[key].update(bytes=size, decode_s=round(seconds, 3))
        return self.refs[key]

    def keep_local(self, key: str, pid: int, why: str) -> None:
        self._release(key, pid)
        self.local[key] = why
        self.stats[key]["why_local"] = why

    def give_up(self, key: str, pid: int) -> None:
        self._release(key, pid)

    def report(self) -> dict:
        return dict(self.stats)


@ray.remote(num_cpus=0)
class Registry:
    """One per study run: the holder of each node, created on that node when first needed."""

    def __init__(self) -> None:
        self.holders: dict[str, object] = {}

    def holder(self, node_id: str) -> list:
        if node_id not in self.holders:
            self.holders[node_id] = NodeData.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
        return [self.holders[node_id]]

    def warm(self) -> None:
        for node in ray.nodes():
            res = node.get("Resources", {})
            if node.get("Alive") and (res.get("CPU", 0) or res.get("GPU", 0)):  # nodes that can run trials
                self.holder(node["NodeID"])

    def all_holders(self) -> dict:
        return dict(self.holders)

    def report(self) -> dict:
        out = {}
        for node, holder in self.holders.items():
            with contextlib.suppress(ray.exceptions.RayActorError):  # its node is gone, and its counters with it
                report = ray.get(holder.report.remote())
                if report:
                    out[node] = report
        return out


class Unavailable(Exception):
    """The registry or this node's holder is gone (e.g. its node was lost): decode without sharing."""


def _get(ref):
    try:
        return ray.get(ref)
    except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as e:  # a dead actor, or what it owned
        raise Unavailable(f"{type(e).__name__}: {str(e).splitlines()[0]}") from e


class SharedProvider:
    """The provider installed in a trial process (``trainables.data.shared.set_provider``)."""

    def __init__(self) -> None:
        self.registry = None

    def _holder(self):
        if self.registry is None:
            try:
                self.registry = ray.get_actor(registry_name())
            except ValueError:  # run_trial outside run_study/resume_study: nothing to share with
                return None
        return _get(self.registry.holder.remote(ray.get_runtime_context().get_node_id()))[0]

    def __call__(self, raw: RawData, cfg: DataConfig, image_size: int) -> ImageData:
        try:
            return self._shared(raw, cfg, image_size)
        except Unavailable as e:
            log.warning("data sharing unavailable (%s); this trial decodes its own data", e)
            return prepare(raw, cfg, image_size)

    def _shared(self, raw: RawData, cfg: DataConfig, image_size: int) -> ImageData:
        holder = self._holder()
        if holder is None:
            return prepare(raw, cfg, image_size)
        key, pid = spec_key(raw, cfg, image_size), os.getpid()
        what, refs = _get(holder.claim.remote(key, pid, describe(cfg, image_size)))
        if what == "read":
            return from_arrays(_get(refs[0]))
        if what == "local":
            return prepare(raw, cfg, image_size)
        try:
            start = time.perf_counter()
            data = prepare(raw, cfg, image_size)
            arrays = to_arrays(data)
            if arrays is None:
                with contextlib.suppress(Unavailable):
                    _get(holder.keep_local.remote(key, pid, "decoded lazily (over data.memory_limit_mb)"))
                return data
            try:
                refs = _get(holder.done.remote(key, pid, arrays, nbytes(arrays), time.perf_counter() - start))
            except Unavailable as e:
                log.warning("data sharing unavailable (%s); this trial keeps its own copy", e)
                return data
            except (ray.exceptions.RayError, MemoryError) as e:  # e.g. larger than the object store
                with contextlib.suppress(Unavailable):
                    _get(holder.keep_local.remote(key, pid, f"object store refused it ({type(e).__name__})"))
                return data
        except BaseException:
            holder.give_up.remote(key, pid)
            raise
        try:
            shared = from_arrays(_get(refs[0]))
        except Unavailable as e:  # the holder died between done and this get
            log.warning("data sharing unavailable (%s); this trial keeps its own copy", e)
            return data
        del data, arrays  # train on the object store's copy, like every other trial of the node
        return shared


def install() -> None:
    """Install a fresh sharing provider in this trial process (each trial, so a reused process holds no stale
    handle); outside ``shared_data()`` it finds no registry and decodes as without sharing."""
    set_provider(SharedProvider())


def summary(stats: dict) -> str:
    if not stats:
        return "data: nothing shared"
    parts = []
    for per_key in stats.values():
        for s in per_key.values():
            if s["why_local"]:
                parts.append(f"{s['data']}: not shared, {s['why_local']}")
            else:
                parts.append(f"{s['data']}: decoded {s['decodes']}x ({s['bytes'] / 2**20:.1f} MiB, "
                             f"{s['decode_s']:.1f}s), read {s['reads']}x")
    return f"data shared on {len(stats)} node(s): " + "; ".join(parts)


def last_stats() -> dict:
    """{node id: {key: counters}} of the last study that ended in this driver (for tests and benchmarks)."""
    return _last_stats


def last_holders() -> list:
    """Handles of the last study's holders (killed when it ended)."""
    return list(_last_holders)


@contextlib.contextmanager
def shared_data(log=print):
    """Driver side, around ``Tuner.fit()``: start the registry, then report and free everything at the end."""
    global _last_stats, _last_holders
    name = registry_name()
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(name))  # left by a study of this driver that did not reach its clean-up
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    registry = Registry.options(name=name, scheduling_strategy=here).remote()  # lives as long as the driver's node
    registry.warm.remote()
    try:
        yield
    finally:
        try:
            _last_stats = ray.get(registry.report.remote(), timeout=60)
            if _last_stats:
                log(summary(_last_stats))
            holders = ray.get(registry.all_holders.remote(), timeout=60)
        except Exception as e:  # noqa: BLE001 - clean-up must not hide the study's own outcome
            log(f"data sharing: could not collect its counters ({type(e).__name__}: {e})")
            holders = {}
        _last_holders = list(holders.values())
        for actor in (*holders.values(), registry):
            with contextlib.suppress(Exception):
                ray.kill(actor)
