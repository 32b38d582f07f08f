"""Vector indexes over the vectors in SQLite, persisted as cache files next to the database.

Each index file ``<name>.faiss`` is sealed (:mod:`.integrity`): its ``<name>.faiss.seal.json``
binds it to the collection id, database generation and row count it was built from and to the
index plan (kind and FAISS factory string), with a BLAKE2b hash of its bytes. Anything that does not
verify is rebuilt from SQLite, never used, so a replaced database, a damaged file, an interrupted
writer or a file of another index kind can never make search return wrong ids. A verified file
sealed to an OLDER state of the same database is caught up from the change log instead
(:mod:`.catchup`): each index kind can remove and add ids (:func:`apply_changes`).

``flat`` is exact search (inner product on unit vectors = cosine similarity), stored as a FAISS
``IndexIDMap2``. ``hnsw`` and ``ivfpq`` are :class:`~.ann.AnnIndex` files (FAISS index + id labels +
build facts, tuned search parameters included); IVF-PQ re-ranks its shortlist exactly with vectors
read back from the database, so every returned score is an exact cosine.
"""
from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..hits import Knobs
from ..progress import Progress
from . import ondisk
from .ann import AnnIndex, Chunks, Fetch, TuningQueries, array_chunks
from .chunked import counted
from .index_plan import IndexPlan, choose_index
from .integrity import SealedFile, clean_stale_tmp, open_sealed, seal_path, write_sealed

#: IVF-PQ needs at least this many vectors to train; fewer are searched exactly
MIN_IVF_TRAIN = 2
_SQL_BATCH = 50_000  # vectors read back per query while catching up


class VectorIndex:
    """Exact (flat) search."""

    def __init__(self, index, dim: int, *, mapped: bool = False):
        self.index = index
        self.dim = dim
        self._mapped = mapped  # FAISS reads the vectors from the mapped cache file: copy before updating
        self.kind = "flat"
        self.info: dict = {"kind": "flat", "factory": "Flat", "search": {}}

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, dim: int) -> VectorIndex:
        return cls.build_from(array_chunks(np.asarray(ids, np.int64), np.asarray(vectors, np.float32)), dim)

    @classmethod
    def build_from(cls, chunks: Chunks, dim: int) -> VectorIndex:
        """Exact search over every vector ``chunks()`` yields, added one chunk at a time."""
        import faiss

        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        for ids, vectors in chunks():
            if len(ids):
                index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), dim),
                                   np.asarray(ids, dtype=np.int64))
        return cls(index, dim)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def _own(self) -> None:
        """Copy a mapped index into memory before it is updated (FAISS cannot grow a mapped one)."""
        if self._mapped:
            import faiss

            # clone_index would keep viewing the map: re-add the mapped vectors to a new index
            owned = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            n = len(self)
            if n:
                inner: Any = faiss.downcast_index(self.index.index)
                vectors = faiss.rev_swig_ptr(inner.get_xb(), n * self.dim).reshape(n, self.dim)
                owned.add_with_ids(vectors, faiss.vector_to_array(self.index.id_map).astype(np.int64))
            self.index, self._mapped = owned, False

    def remove(self, ids: Iterable[int]) -> int:
        import faiss

        self._own()
        wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if len(wanted) and len(self):  # only ids it holds: removing rebuilds IndexIDMap2's reverse map
            wanted = wanted[np.isin(wanted, faiss.vector_to_array(self.index.id_map))]
        return int(self.index.remove_ids(wanted)) if len(wanted) and len(self) else 0

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (or replace) ``ids`` with ``vectors``."""
        ids = np.asarray(ids, dtype=np.int64)
        self._own()
        if len(ids):
            self.remove(ids.tolist())
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim), ids)
        self.info["count"] = len(self)

    def needs_rebuild(self) -> str | None:
        return None  # exact search stays exact whatever was added or removed

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[int] = (), *, knobs: Knobs | None = None,
               fetch: Fetch | None = None, tuned: dict | None = None) -> list[list[tuple[int, float]]]:
        """Top-``k`` (id, score) per query row, best first, skipping ids in ``exclude`` (exact search
        has no knobs: ``knobs``, ``fetch`` and ``tuned`` are accepted and unused)."""
        excluded = set(exclude)
        n = len(self)
        if n == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        fetch_k = min(n, k + len(excluded))
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch_k)
        out = []
        for row_s, row_i in zip(scores, ids):
            hits = [(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0 and int(i) not in excluded]
            out.append(hits[:k])
        return out


SearchIndex = VectorIndex | AnnIndex


def plan_binding(plan: IndexPlan | None) -> dict[str, object]:
    """What a cache file's seal records of its index plan (a file of another plan never verifies):
    kind, FAISS factory and, for IVF-PQ lists kept on disk, ``lists: 'disk'``."""
    plan = plan or choose_index(0, 1, "flat")
    out: dict[str, object] = {"kind": plan.kind, "factory": plan.factory}
    if plan.params.get("lists") == "disk":
        out["lists"] = "disk"
    return out


def _load(sealed: SealedFile, folder: Path, dim: int, count: object, plan: Mapping[str, object]) -> SearchIndex | None:
    """The index in a verified cache file: flat mapped by FAISS (zero copy, ``IO_FLAG_MMAP_IFC``; an
    update first copies it into memory), the others read from the file in chunks; IVF-PQ lists on
    disk mapped from their own verified file (:func:`.ondisk.attach`)."""
    faiss: Any = importlib.import_module("faiss")

    kind = plan.get("kind")
    try:
        if kind in (None, "flat"):
            try:
                flat, mapped = faiss.read_index(sealed.proc_path, faiss.IO_FLAG_MMAP_IFC), True
            except RuntimeError:  # no /proc/self/fd here: read from the open file through a buffer
                sealed.file.seek(0)
                flat, mapped = faiss.read_index(faiss.PyCallbackIOReader(sealed.file.read)), False
            return VectorIndex(flat, dim, mapped=mapped) if flat.ntotal == count and flat.d == dim else None
        ann = AnnIndex.read_from(sealed.file)
        if len(ann) != count or ann.plan.dim != dim or ann.kind != kind:
            return None
        disk = ann.plan.params.get("lists") == "disk"
        if disk != (plan.get("lists") == "disk"):
            return None
        if disk:
            ann.disk = ondisk.attach(ann.index, folder, ann.info.get("lists"))
            if ann.disk is None:
                return None  # a lists file missing, damaged or not the one sealed with this index
        return ann
    except (RuntimeError, ValueError, MemoryError):
        return None  # verified bytes that faiss still refuses (a bug elsewhere): rebuild


def _build(plan: IndexPlan | None, count: int, chunks: Chunks, dim: int, fetch_ids: Fetch | None,
           facts: Mapping[str, object], queries: Callable[[], TuningQueries | None] | None = None,
           folder: Path | None = None, progress: Progress | None = None) -> SearchIndex:
    """The index over the ``count`` vectors of ``chunks``; ``facts`` go into the index's ``info``;
    ``progress`` hears each pass over the chunks as a named step."""
    t0 = time.perf_counter()
    if plan is not None and plan.kind == "ivfpq" and count < MIN_IVF_TRAIN:
        plan = None  # nothing to train on yet: exact search, said in the facts
        note = f"fewer than {MIN_IVF_TRAIN} vectors to train IVF-PQ on: exact search until there are more"
    else:
        note = ""
    if plan is None or plan.kind == "flat":
        flat = VectorIndex.build_from(counted(chunks, progress, "adding", count), dim)
        flat.info.update({"count": len(flat), "recall_at_10": 1.0, "recall_note": "exact search",
                          "build_seconds": round(time.perf_counter() - t0, 3), "bytes": len(flat) * (4 * dim + 8)})
        flat.info.update(facts)
        if note:
            flat.info["note"] = note
        return flat
    ann = AnnIndex.build_from(plan, count, chunks, fetch=fetch_ids, queries=queries() if queries else None,
                              lists_dir=folder, progress=progress)
    ann.info.update(facts)
    if ann.disk is not None:
        ann.info["lists_bytes"] = ann.disk.size
    return ann


def write_cache(folder: Path, name: str, index: SearchIndex, binding: Mapping[str, object]) -> bool:
    """Write ``index`` as ``<name>.faiss`` sealed to ``binding``, hashed as it is written (no copy of
    the file's bytes is held); an IVF-PQ index with its lists on disk first seals its lists file
    (:func:`.ondisk.seal`), which the ``.faiss`` file then names with its hash. False when the folder
    cannot be written (a read-only collection: search still works from memory)."""
    faiss: Any = importlib.import_module("faiss")

    try:
        folder.mkdir(parents=True, exist_ok=True)
        clean_stale_tmp(folder)
        (folder / f"{name}.json").unlink(missing_ok=True)  # sidecar of the unsealed format
        keep = None
        if isinstance(index, VectorIndex):
            def writer(sink) -> None:
                faiss.write_index(index.index, faiss.PyCallbackIOWriter(sink.write))
        else:
            if index.disk is not None:
                index.info["lists"] = ondisk.seal(index.disk, folder, name)
                keep = index.info["lists"]["file"]
            writer = index.write_to
        write_sealed(folder / f"{name}.faiss", writer, binding)
        ondisk.remove_others(folder, name, keep)  # lists files of earlier builds
        if isinstance(index, VectorIndex):
            index.info["bytes"] = (folder / f"{name}.faiss").stat().st_size
    except OSError:
        return False
    return True


def remove_cache(folder: Path, name: str) -> None:
    """Delete the ``name`` cache (its ``.faiss`` file, seal and lists files), if any: an index
    served by another (a CLIP collection's ``features`` by ``images``) keeps no stale copy."""
    for path in (folder / f"{name}.faiss", seal_path(folder / f"{name}.faiss"), folder / f"{name}.json"):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only folder: the file is never read while the index is shared
    try:
        ondisk.remove_others(folder, name, None)
    except OSError:
        pass


def load_cache(folder: Path, name: str, stamp: Mapping[str, object], dim: int) -> SearchIndex | None:
    """The index in ``<name>.faiss`` when its seal is ``stamp`` and its bytes verify (hashed in
    chunks, then loaded from the same open file), else None."""
    plan = stamp.get("plan")
    sealed = open_sealed(folder / f"{name}.faiss", stamp)
    if sealed is None:
        return None
    with sealed:
        index = _load(sealed, folder, dim, stamp.get("count"), plan if isinstance(plan, dict) else {})
        return index if index is not None and sealed.unchanged() else None


def build_index(binding: Mapping[str, object], dim: int, chunks: Chunks, plan: IndexPlan | None,
                fetch_ids: Fetch | None, queries: Callable[[], TuningQueries | None] | None = None,
                folder: Path | None = None, progress: Progress | None = None) -> SearchIndex:
    """The index over every vector ``chunks()`` yields (``binding['count']`` of them, read a chunk
    at a time), built as ``plan`` (None: flat); its facts name the generation of ``binding``. IVF-PQ
    lists on disk are written to an unnamed file in ``folder`` (the index folder), named when sealed;
    ``progress`` hears the build's steps (reading, training, adding, tuning), counted in vectors."""
    count = binding.get("count")
    assert isinstance(count, int)
    return _build(plan, count, chunks, dim, fetch_ids, {
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "generation": binding.get("generation")}, queries, folder,
        progress)


def apply_changes(index: SearchIndex, changed: Sequence[int], fetch_ids: Fetch, dim: int) -> None:
    """Bring ``index`` up to date for the ids in ``changed`` (added, replaced or deleted since it was
    built): their old vectors go, the ones the database holds now are added."""
    if not changed:
        return
    index.remove(changed)
    for start in range(0, len(changed), _SQL_BATCH):
        ids, vecs = fetch_ids(list(changed[start:start + _SQL_BATCH]))
        if len(ids):
            index.add(ids, vecs.reshape(len(ids), dim))
