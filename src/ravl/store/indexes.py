"""A collection's three vector indexes (``images``, ``features``, ``captions``): the kind each is
built as (the recorded settings through :func:`~.index_plan.choose_index`), their sealed cache
files (:func:`~.vectors.load_or_build`), this process's in-memory copies and the build facts
recorded in the database (kind, parameters, seconds, bytes, recall@10).

A cache file's seal names the index plan (kind and FAISS factory string) besides the database
state, so a file of another kind, another size class or another database is never used.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .db import Database
from .index_plan import KINDS, IndexPlan, choose_index, parse_size, smallest_plan, split_budget
from .vectors import SearchIndex, load_or_build, plan_binding

INDEX_NAMES = ("images", "features", "captions")
#: build facts shown by ``ravl info`` (the rest of an index's ``info`` stays in its file)
FACT_KEYS = ("kind", "factory", "params", "count", "search", "recall_at_10", "recall_queries", "recall_note",
             "build_seconds", "tune_seconds", "bytes", "built_at", "generation", "reason", "over_budget", "note")


Reader = Callable[[Sequence[int] | None], tuple[np.ndarray, np.ndarray]]  # ids (None: all) -> (ids, vectors)


class IndexSet:
    def __init__(self, db: Database, folder: Path, dims: dict[str, int], *, readers: dict[str, Reader] | None = None,
                 extra_binding: Callable[[str], dict] | None = None):
        """``readers`` replace how an index's vectors are read (e.g. ``images`` through a tuned
        bridge); ``extra_binding(name)`` adds what else its cache depends on (read inside the
        binding's snapshot)."""
        self._db = db
        self.folder = folder
        self.dims = dims
        self._readers = readers or {}
        self._extra_binding = extra_binding
        self._held: dict[str, tuple[tuple, SearchIndex]] = {}
        self._unrecorded: dict[str, dict] = {}  # facts of indexes built here, not yet in the database
        self._lock = threading.RLock()

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
            try:
                plans[name] = choose_index(n, dim, kind, shares[name])
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

    def _fetch_all(self, name: str) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        reader = self._readers.get(name)
        if reader is not None:
            return lambda: reader(None)
        if name == "captions":
            return self._db.caption_vectors
        which = "feat" if name == "features" else "emb"
        return lambda: self._db.item_vectors(which=which)

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
        with self._db.snapshot():
            return self._bindings()[0][name]

    def get(self, name: str, *, rebuild: bool = False) -> SearchIndex:
        """The ``name`` index for the database as it is now: held in memory, read from its cache
        file when that verifies, else built (``rebuild``: built whatever the cache holds)."""
        key = (self._db.generation(), tuple(self._db.index_settings().values()))
        with self._lock:
            held = self._held.get(name)
            if held and held[0] == key and not rebuild:
                return held[1]
            with self._db.snapshot():  # the binding and a rebuild see the same database state
                bindings, plans = self._bindings()
                binding, plan = bindings[name], plans[name]
                key = (binding["generation"], tuple(self._db.index_settings().values()))
                index, built = load_or_build(self.folder, name, binding, self.dims[name], self._fetch_all(name),
                                             plan=plan, fetch_ids=self.fetch_ids(name), rebuild=rebuild)
            if built:
                facts = {k: index.info[k] for k in FACT_KEYS if index.info.get(k) is not None}
                facts["reason"] = plan.reason
                if plan.reason.startswith("over budget"):
                    facts["over_budget"] = plan.reason
                self._unrecorded[name] = facts
            self._held[name] = (key, index)
            return index

    def search(self, name: str, queries: np.ndarray, k: int, exclude: Iterable[int] = (), *,
               ef_search: int | None = None, nprobe: int | None = None) -> list[list[tuple[int, float]]]:
        return self.get(name).search(queries, k, exclude, fetch=self.fetch_ids(name), ef_search=ef_search,
                                     nprobe=nprobe)

    def refresh(self) -> None:
        """Bring every cache file up to date and record the facts of those built here."""
        for name in INDEX_NAMES:
            self.get(name)
        self.record_facts()

    def rebuild(self, kind: str | None = None, memory_budget: int | str | None = None) -> dict[str, dict]:
        """Record the settings (checked first), rebuild every index to them and return their facts."""
        self.set_settings(kind, memory_budget)
        for name in INDEX_NAMES:
            self.get(name, rebuild=True)
        self.record_facts()
        return self.facts()

    def record_facts(self) -> None:
        with self._lock:
            if self._unrecorded and self._db.record_index_facts(self._unrecorded):
                self._unrecorded.clear()

    def facts(self) -> dict[str, dict]:
        """index name -> how it was last built (as recorded in the database)."""
        return self._db.index_facts()

    def forget(self) -> None:
        with self._lock:
            self._held.clear()


def _count(binding: dict[str, object]) -> int:
    count = binding["count"]
    assert isinstance(count, int)
    return count
