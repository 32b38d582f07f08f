"""Vector index caches next to the database: ``index/<name>.idx`` (an :class:`~ravl.store.ann.AnnIndex`
of any kind) with a ``<name>.json`` sidecar that binds it to the database state it covers.

The SQLite database is the truth; an index file is used only when it verifiably matches it: same
collection id, same dimension and index configuration, and a content checksum that matches the file
(a damaged or swapped file is rebuilt, never searched). A cache stamped with an older generation is
*caught up* from the change log (``vector_changes``: every vector insert, update and delete since the
last sequence number the cache covers) instead of being rebuilt from zero, unless the log no longer
reaches back that far, the index kind that fits has changed, or the index asks for a rebuild itself
(too many tombstones, or an IVF grown 4x past its training set).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write_bytes
from .ann import AnnIndex, Fetch
from .index_plan import IndexPlan

FORMAT = 2


@dataclass(frozen=True)
class DbState:
    """What the database holds now (read in one transaction with any vectors fetched alongside)."""
    collection_id: str
    generation: int
    seq: int  # last change-log sequence number
    pruned_through: int  # change-log rows up to here are gone
    config: str  # the requested index kind and budget, e.g. "auto|2147483648"


@dataclass
class Source:
    """How to read one index's vectors from the database."""
    target: str  # change-log target: 'item' or 'caption'
    dim: int
    fetch_all: Callable[[], tuple[np.ndarray, np.ndarray]]
    fetch_ids: Fetch
    count: Callable[[], int]
    plan: Callable[[int], IndexPlan]  # vector count -> the plan the configuration asks for


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_sidecar(folder: Path, name: str) -> dict | None:
    try:
        meta = json.loads((folder / f"{name}.json").read_text())
        return meta if isinstance(meta, dict) else None
    except (OSError, ValueError):
        return None


def _load_verified(folder: Path, name: str, state: DbState, src: Source) -> tuple[AnnIndex, dict] | None:
    meta = read_sidecar(folder, name)
    if not meta or meta.get("format") != FORMAT or meta.get("collection_id") != state.collection_id \
            or meta.get("dim") != src.dim or meta.get("config") != state.config:
        return None
    try:
        data = (folder / f"{name}.idx").read_bytes()
    except OSError:
        return None
    if checksum(data) != meta.get("sha256"):
        return None
    try:
        index = AnnIndex.from_bytes(data)
    except ValueError:
        return None
    if len(index) != meta.get("count") or index.plan.dim != src.dim:
        return None
    return index, meta


def catch_up(index: AnnIndex, src: Source, db, since_seq: int) -> int:
    """Apply every vector change after ``since_seq`` to ``index`` (inside the caller's snapshot)."""
    changed = db.changed_rows(src.target, since_seq)
    if not changed:
        return 0
    index.remove(changed)
    for start in range(0, len(changed), 20_000):
        ids, vecs = src.fetch_ids(changed[start:start + 20_000])
        if len(ids):
            index.add(ids, vecs.reshape(len(ids), src.dim))
    return len(changed)


def current(db, folder: Path, name: str, state: DbState, src: Source, loaded: tuple[AnnIndex, int, int] | None,
            *, save: bool = True) -> tuple[AnnIndex, str]:
    """The index ``name`` matching ``state``: ``loaded`` (an in-memory index, the seq and generation it
    covers) or
    the cache file caught up when possible, else rebuilt. Returns (index, how: 'cached' | 'caught-up'
    | 'rebuilt'). Must run inside ``db.snapshot()`` so ``state`` and the vectors read agree."""
    index, seq, gen, how = None, 0, -1, "rebuilt"
    if loaded is not None:
        index, seq, gen = loaded
    else:
        found = _load_verified(folder, name, state, src)
        if found:
            index, seq, gen = found[0], int(found[1].get("seq", -1)), found[1].get("generation")
    if index is not None:
        if seq == state.seq and gen == state.generation:
            return index, "cached"
        if loaded is not None:
            index = index.copy()  # searches may be running on the loaded one
        if 0 <= seq < state.seq and seq >= state.pruned_through:
            catch_up(index, src, db, seq)
            wanted = src.plan(len(index))
            if index.needs_rebuild() is None and wanted.kind == index.kind:
                how = "caught-up"
            else:
                index = None
        else:
            index = None
    if index is None:
        ids, vectors = src.fetch_all()
        plan = src.plan(len(ids))
        index = AnnIndex.build(plan, ids, vectors.reshape(len(ids), src.dim) if len(ids) else
                               np.zeros((0, src.dim), np.float32), fetch=src.fetch_ids)
        index.info["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if save:
        write(folder, name, index, state, src.dim)
    return index, how


def write(folder: Path, name: str, index: AnnIndex, state: DbState, dim: int) -> bool:
    """Persist ``index`` as covering ``state`` (data first, then the sidecar that vouches for it)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        data = index.to_bytes()
        atomic_write_bytes(folder / f"{name}.idx", data)
        sidecar = {"format": FORMAT, "collection_id": state.collection_id, "generation": state.generation,
                   "seq": state.seq, "config": state.config, "dim": dim, "count": len(index),
                   "sha256": checksum(data), "info": index.info}
        atomic_write_bytes(folder / f"{name}.json", json.dumps(sidecar).encode())
        (folder / f"{name}.faiss").unlink(missing_ok=True)  # the cache format before index kinds
        return True
    except OSError:
        return False  # read-only collection: search still works from memory
