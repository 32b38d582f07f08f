"""A collection's three vector indexes (``images``, ``features``, ``captions``): the kind each is
built as (the recorded settings through :func:`~.index_plan.choose_index`), their sealed cache
files (:func:`~.vectors.load_or_build`), this process's in-memory copies and the build facts
recorded in the database (kind, parameters, seconds, bytes, recall@10).

A cache file's seal names the index plan (kind and FAISS factory string) besides the database
state, so a file of another kind or another database is never used. A cache of an older state of
the same database (held here, or the file) is caught up from the change log (:mod:`.catchup`), not
rebuilt; :meth:`IndexSet.stats` counts how each index was obtained.

While every item's features are its embedding and no tuned bridge changes the ``images`` vectors
(:meth:`~.index_meta.IndexMetaMixin.features_shared`: a CLIP collection), the ``features`` index
IS the ``images`` index: searches of one are answered by the other, and no second copy is built,
written or held. The first item written with features of its own ends that for good (its write
bumps the generation, and ``features`` is then built from the stored features).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..hits import Knobs
from ..progress import Progress, prefixed
from . import ondisk
from .ann import Chunks, TuningQueries
from .bulk import id_pages, vector_pages
from .catchup import ReadWriteLock, catchable, changes_since, should_write
from .chunked import faiss_threads
from .db import Database
from .index_plan import KINDS, IndexPlan, choose_index, parse_size, smallest_plan, split_budget
from .integrity import sealed_binding
from .shared_features import AS_FEATURES, image_query_knobs, shared_facts, tune_for_image_queries
from .vectors import SearchIndex, VectorIndex, apply_changes, build_index, load_cache, plan_binding, remove_cache, write_cache

INDEX_NAMES = ("images", "features", "captions")
#: build facts shown by ``ravl info`` (the rest of an index's ``info`` stays in its file)
FACT_KEYS = ("kind", "factory", "params", "count", "search", "recall_at_10", "recall_queries", "recall_query_kind",
             "recall_note",
             "build_seconds", "tune_seconds", "bytes", "built_at", "generation", "reason", "over_budget", "note",
             AS_FEATURES)


#: searches of fewer queries than this run on one thread: OpenMP's threads spin and wait for each
#: other, and with the cores busy (a server, other requests) one 16-query search over 10k vectors
#: took 240 ms of wall time on 2 threads against 6 ms on one (docs/performance.md)
PARALLEL_QUERIES = 64

Reader = Callable[[Sequence[int] | None], tuple[np.ndarray, np.ndarray]]  # ids (None: all) -> (ids, vectors)
#: how an index was obtained (counted by :meth:`IndexSet.stats`)
HOW = ("held", "loaded", "caught_up", "built")
#: vectors read from SQLite at a time by a build (32k x 384 floats: 48 MiB, plus the rows' bytes)
BUILD_CHUNK = 32_768


@dataclass
class _Held:
    key: tuple  # (generation, settings) it was checked at
    stamp: dict  # the binding it covers
    index: SearchIndex


class IndexSet:
    def __init__(self, db: Database, folder: Path, dims: dict[str, int], *, readers: dict[str, Reader] | None = None,
                 extra_binding: Callable[[str], dict] | None = None,
                 queries: dict[str, Callable[[], TuningQueries | None]] | None = None):
        """``readers`` replace how an index's vectors are read (e.g. ``images`` through a tuned
        bridge); ``extra_binding(name)`` adds what else its cache depends on (read inside the
        binding's snapshot); ``queries[name]()`` gives sample queries of the kind that index
        receives, for tuning its search knobs (text vectors for ``images``)."""
        self._queries = queries or {}
        self._db = db
        self.folder = folder
        self.dims = dims
        self._readers = readers or {}
        self._extra_binding = extra_binding
        self._held: dict[str, _Held] = {}
        self._unrecorded: dict[str, dict] = {}  # facts of indexes built here, not yet in the database
        self._lock = threading.RLock()  # one update at a time
        self._rw = {name: ReadWriteLock() for name in INDEX_NAMES}  # searches vs in-place catch-up
        self._stats = {name: dict.fromkeys(HOW, 0) for name in INDEX_NAMES}
        self._shared: tuple[int, bool] | None = None  # (generation, features index is the images index)

    def shared(self, generation: int | None = None) -> bool:
        """Whether the ``features`` index is the ``images`` index now (the same width, every
        item's features stored once, no tuned bridge); checked once per database generation."""
        if self.dims["features"] != self.dims["images"]:
            return False
        generation = self._db.generation() if generation is None else generation
        cached = self._shared
        if cached is None or cached[0] != generation:
            # read after the generation: a write in between can only make it say "not shared"
            # early (the features index then holds the features, which are right either way)
            cached = self._shared = (generation, self._db.features_shared())
        return cached[1]

    def _target(self, name: str, generation: int | None = None) -> str:
        """The index that answers for ``name``."""
        return "images" if name == "features" and self.shared(generation) else name

    # --- settings ------------------------------------------------------------------------------
    def settings(self) -> dict:
        """``{"kind": 'auto'|'flat'|'hnsw'|'ivfpq', "memory_budget": bytes or None}``."""
        return self._db.index_settings()

    def set_settings(self, kind: str | None = None, memory_budget: int | str | None = None) -> dict:
        """Record ``kind`` and ``memory_budget`` (None keeps the recorded value; a budget of 0 means
        none) after checking them against the collection's current size (a ConfigError says what
        would fit); the indexes are built to match on next use."""
        current = self.settings()
        kind = current["kind"] if kind is None else kind
        if kind not in KINDS:
            raise ConfigError(f"unknown index type {kind!r}; choose one of {', '.join(KINDS)}")
        budget = current["memory_budget"] if memory_budget is None else (parse_size(memory_budget) or None)
        with self._db.snapshot():
            counts = {name: _count(self._db.index_binding(name)) for name in INDEX_NAMES}
        self._plans(counts, kind, budget, strict=True)
        self._db.set_index_settings(kind, budget)
        return self.settings()

    def _plans(self, counts: dict[str, int], kind: str, budget: int | None, *, strict: bool) -> dict[str, IndexPlan]:
        shares = split_budget(budget, {name: max(1, counts[name]) * self.dims[name] for name in INDEX_NAMES})
        plans = {}
        for name in INDEX_NAMES:
            n, dim = counts[name], self.dims[name]
            try:  # an empty index holds nothing: no share of the budget can be too small for it
                plans[name] = choose_index(n, dim, kind, shares[name] if n else None)
            except ConfigError as exc:
                if strict:
                    raise ConfigError(f"{name} index: {exc}") from None
                # grown past the budget since it was set: the most compact index, and say so
                plans[name] = smallest_plan(n, dim, f"over budget: {exc}")
        return plans

    # --- the indexes ---------------------------------------------------------------------------
    def fetch_ids(self, name: str) -> Callable[[list[int]], tuple[np.ndarray, np.ndarray]]:
        """ids -> (ids, vectors) of the ones stored (IVF-PQ re-ranks its shortlist with these)."""
        reader = self._readers.get(name)
        if reader is not None:
            return lambda ids: reader(list(ids))
        if name == "captions":
            return self._db.caption_vectors
        which = "feat" if name == "features" else "emb"
        return lambda ids: self._db.item_vectors(list(ids), which=which)

    def _chunks(self, name: str) -> Chunks:
        """Every vector of the ``name`` index, BUILD_CHUNK rows at a time in id order (read inside
        the caller's snapshot), so a build holds the index and one chunk, never every vector."""
        reader = self._readers.get(name)
        which = {"images": "emb", "features": "feat"}.get(name, "captions")
        if reader is not None:
            return lambda: (reader(ids) for ids in id_pages(self._db, which, BUILD_CHUNK))
        return lambda: vector_pages(self._db, which, BUILD_CHUNK)

    def _bindings(self) -> tuple[dict[str, dict], dict[str, IndexPlan]]:
        """What each cache file must be sealed to now, and the plan each is built as (call inside
        ``snapshot``)."""
        raw = {name: {**self._db.index_binding(name), "dim": self.dims[name],
                      **(self._extra_binding(name) if self._extra_binding else {})} for name in INDEX_NAMES}
        settings = self._db.index_settings()
        plans = self._plans({name: _count(b) for name, b in raw.items()}, settings["kind"],
                            settings["memory_budget"], strict=False)
        return {name: {**b, "plan": plan_binding(plans[name])} for name, b in raw.items()}, plans

    def binding(self, name: str) -> dict:
        name = self._target(name)
        with self._db.snapshot():
            return self._bindings()[0][name]

    def get(self, name: str, *, rebuild: bool = False, progress: Progress | None = None) -> SearchIndex:
        """The ``name`` index for the database as it is now: held in memory (caught up when the
        database moved on), else read from its cache file when that verifies (caught up when it is
        an older state of this database), else built (``rebuild``: built whatever the caches hold;
        ``progress`` hears a build's steps, named "index <name>: ...")."""
        key = (self._db.generation(), tuple(self._db.index_settings().values()))
        name = self._target(name, key[0])
        with self._lock:
            held = self._held.get(name)
            if held and held.key == key and not rebuild:
                return held.index
            with self._db.snapshot():  # the binding, the change log and any vectors read agree
                bindings, plans = self._bindings()
                current, plan = bindings[name], plans[name]
                key = (current["generation"], tuple(self._db.index_settings().values()))
                index, how = (None, "built") if rebuild else self._caught_up(name, current, plan, held)
                if index is None:
                    # a collection read as immutable gets no cache file: exact search in memory
                    build = choose_index(current["count"], self.dims[name], "flat") if self._db.immutable else plan
                    index = build_index(current, self.dims[name], self._chunks(name), build,
                                        self.fetch_ids(name), self._queries.get(name), self.folder,
                                        prefixed(progress, f"index {name}"))
                    if name == "images" and self.shared(current["generation"]):
                        tune_for_image_queries(index, self._chunks(name), self.fetch_ids(name), progress)
                    if len(index) == current["count"] and not self._db.immutable:
                        write_cache(self.folder, name, index, _stamp(current, index))
            if how == "built":
                facts = {k: index.info[k] for k in FACT_KEYS if index.info.get(k) is not None}
                facts["reason"] = plan.reason
                if plan.reason.startswith("over budget"):
                    facts["over_budget"] = plan.reason
                self._unrecorded[name] = facts
            elif how == "caught_up":
                self._note_count(name, index.kind, len(index), current["generation"])
            self._stats[name][how] += 1
            self._held[name] = _Held(key, _stamp(current, index), index)
            return index

    def _caught_up(self, name: str, current: dict, plan: IndexPlan, held: _Held | None) -> tuple[SearchIndex | None, str]:
        """The held index or the cache file brought up to ``current`` and how, or (None, 'built')
        when neither can be (inside the snapshot)."""
        dim, fetch_ids = self.dims[name], self.fetch_ids(name)
        if held is not None:
            changed = changes_since(self._db, name, held.stamp, current)
            if changed is not None:
                if changed:
                    with self._rw[name].writing():  # searches on this index wait
                        apply_changes(held.index, changed, fetch_ids, dim)
                if not _usable(held.index, current, plan):
                    return None, "built"
                if changed:
                    self._save_caught_up(name, held.index, current)
                return held.index, "caught_up" if changed else "held"
        path = self.folder / f"{name}.faiss"
        stamp = sealed_binding(path)
        changed = changes_since(self._db, name, stamp, current)
        if stamp is None or changed is None:
            return None, "built"
        loaded = load_cache(self.folder, name, stamp, dim)  # verifies the bytes against their seal
        if loaded is None:
            return None, "built"
        apply_changes(loaded, changed, fetch_ids, dim)
        if not _usable(loaded, current, plan):
            return None, "built"
        if changed:
            self._save_caught_up(name, loaded, current)
        return loaded, "caught_up" if changed else "loaded"

    def _save_caught_up(self, name: str, index: SearchIndex, current: dict) -> None:
        """Rewrite the cache file of a caught-up index when the compaction rule says so."""
        if self._db.immutable:
            return
        path = self.folder / f"{name}.faiss"
        size = _cache_bytes(self.folder, name)
        if should_write(self._db, name, sealed_binding(path), size, current):
            with self._rw[name].reading():  # no update runs while it is serialised
                write_cache(self.folder, name, index, _stamp(current, index))

    def search(self, name: str, queries: np.ndarray, k: int, exclude: Iterable[int] = (), *,
               knobs: Knobs | None = None) -> list[list[tuple[int, float]]]:
        target = self._target(name)
        index = self.get(target)
        tuned = image_query_knobs(index) if target != name else None
        with self._rw[target].reading(), faiss_threads(1 if len(queries) < PARALLEL_QUERIES else None):
            return index.search(queries, k, exclude, knobs=knobs, fetch=self.fetch_ids(target), tuned=tuned)

    def stats(self) -> dict[str, dict[str, int]]:
        """index name -> how many times this process found it held, loaded it from its file, caught
        it up from the change log, or built it."""
        with self._lock:
            return {name: dict(counts) for name, counts in self._stats.items()}

    def prune_log(self) -> None:
        """Drop change-log rows every cache file already covers (writers, after :meth:`refresh`)."""
        if self._db.readonly:
            return
        with self._db.snapshot():
            current = self._bindings()[0]
            seqs = []
            for name in INDEX_NAMES:
                stamp = sealed_binding(self.folder / f"{name}.faiss")
                if stamp is not None and isinstance(stamp.get("seq"), int) and \
                        catchable(self._db, stamp, current[name]) is not None:
                    seqs.append(int(stamp["seq"]))
            through, pruned = min(seqs, default=None), self._db.changes_pruned_through()
        if through is not None and through > pruned:
            self._db.prune_changes(through)

    def refresh(self, *, lazy: bool = False, progress: Progress | None = None) -> None:
        """Bring every cache file up to date and record the facts of those built here. ``lazy`` (a
        writer about to exit): an index this process does not hold is left to its next reader when
        its cache file can be caught up from the change log and the compaction rule would not
        rewrite it now; loading a 1.5 GB file only to add 1,000 vectors in memory and drop them
        again took 25-40 s at 1M vectors, against 0.2 s for the write itself. ``progress`` hears
        the steps of any index built."""
        for name in INDEX_NAMES:
            if self._target(name) != name:
                self._drop(name)
                continue
            if lazy and name not in self._held:
                if not self._left_for_readers(name):
                    self.get(name, progress=progress)
                    with self._lock:  # written to its file: one index in memory at a time (1M HNSW: 1.8 GB)
                        self._held.pop(name, None)
                continue
            self.get(name, progress=progress)
        self.record_facts()
        self.prune_log()

    def _left_for_readers(self, name: str) -> bool:
        """Whether the ``name`` cache file is current, or an older state of this database that its
        next reader can catch up and the compaction rule would not rewrite (its recorded count is
        updated here); the reader still verifies its bytes."""
        path = self.folder / f"{name}.faiss"
        with self._db.snapshot():
            current = self._bindings()[0][name]
            stamp = sealed_binding(path)
            state = catchable(self._db, stamp, current)
            size = _cache_bytes(self.folder, name)
            if not size:
                return False
            if state is None or (state is False and should_write(self._db, name, stamp, size, current)):
                return False
        plan = stamp.get("plan") if stamp else None
        if state is False and isinstance(plan, dict):
            with self._lock:
                self._note_count(name, plan.get("kind"), current["count"], current["generation"])
        return True

    def _note_count(self, name: str, kind: object, count: int, generation: int) -> None:
        """Record that the ``name`` index (of ``kind``) now covers ``count`` vectors at ``generation``,
        keeping the facts of the build it was caught up from (under the lock)."""
        recorded = self._unrecorded.get(name) or self._db.index_facts().get(name) or {}
        if recorded.get("kind") == kind:
            self._unrecorded[name] = {**recorded, "count": count, "updated_generation": generation}

    def rebuild(self, kind: str | None = None, memory_budget: int | str | None = None, *,
                progress: Progress | None = None) -> dict[str, dict]:
        """Record the settings (checked first), rebuild every index to them and return their facts
        (``progress`` hears each build's steps)."""
        self.set_settings(kind, memory_budget)
        for name in INDEX_NAMES:
            if self._target(name) != name:
                self._drop(name)
                continue
            self.get(name, rebuild=True, progress=progress)
        self.record_facts()
        return self.facts()

    def record_facts(self) -> None:
        with self._lock:
            if self._unrecorded and self._db.record_index_facts(self._unrecorded):
                self._unrecorded.clear()

    def _drop(self, name: str) -> None:
        """``name`` is served by another index: forget its own copy, file and recorded facts."""
        with self._lock:
            self._held.pop(name, None)
            self._unrecorded.pop(name, None)
        if not self._db.readonly:
            remove_cache(self.folder, name)

    def facts(self) -> dict[str, dict]:
        """index name -> how it was last built (as recorded in the database); an index served by
        another shows that one's facts with ``shared_with`` naming it."""
        facts = self._db.index_facts()
        return shared_facts(facts) if self.shared() else facts

    def forget(self) -> None:
        with self._lock:
            self._held.clear()


def _stamp(current: dict, index: SearchIndex) -> dict:
    """The binding an index covering ``current`` is sealed to: its own plan (an IVF-PQ index caught
    up keeps the coarse quantizer it was trained with)."""
    plan = plan_binding(None if isinstance(index, VectorIndex) else index.plan)
    return {**current, "plan": plan}


def _cache_bytes(folder: Path, name: str) -> int:
    """Bytes of the ``name`` cache: its ``.faiss`` file and any IVF-PQ lists file (0: no file)."""
    try:
        size = (folder / f"{name}.faiss").stat().st_size
    except OSError:
        return 0
    return size + sum(p.stat().st_size for p in ondisk.lists_files(folder, name))


def _usable(index: SearchIndex, current: dict, plan: IndexPlan) -> bool:
    """A caught-up index serves ``current`` when it holds every row, is of the kind planned and does
    not ask for a rebuild (too many tombstones, or an IVF grown 4x past its training set)."""
    return len(index) == current["count"] and index.kind == plan.kind and index.needs_rebuild() is None


def _count(binding: dict[str, object]) -> int:
    count = binding["count"]
    assert isinstance(count, int)
    return count
