"""Catching an index cache up with the database instead of rebuilding it.

A cache (this process's in-memory index, or ``index/<name>.faiss``) is stamped with the binding it
covers: the database's collection id, generation, ``state`` token and last change-log ``seq`` then,
the row count, the dimension, the index plan and whatever else the vectors depend on (the tuned
bridge). Against the database as it is now a stamp is

* **current** — the same state: used as it is;
* **catchable** — same collection id, index, dimension and extra binding, a compatible plan (same
  kind and FAISS factory, except that an IVF-PQ index keeps the coarse quantizer it was trained
  with until it has grown 4x, :meth:`~.ann.AnnIndex.needs_rebuild`), its (generation, state, seq) is
  one this database recorded in its own history (so it is a past state of THIS database, not of a
  copy that diverged after the cache was written), and the change log still holds every change
  after ``seq``: only the rows changed since are read back and applied;
* anything else — rebuilt from the database.

When to rewrite the cache file after catching up (the compaction rule, docs/scale.md): when the
file on disk could not be caught up any more, when it is small (writing and hashing it costs little),
or when the changes it lacks reach :data:`COMPACT_SHARE` of its vectors. Otherwise the file stays
as it is and the next process that loads it catches up from the log, which is pruned only below the
oldest stamp of the three files.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from .db import Database

#: rewrite a caught-up cache file once the changes it lacks reach this share of its vectors
COMPACT_SHARE = 0.10
#: files up to this size are rewritten after every catch-up (writing + hashing: well under 0.1 s)
COMPACT_BYTES = 64 * 2**20
_STATE_KEYS = ("generation", "state", "seq", "count", "plan")


def plan_compatible(a: object, b: object) -> bool:
    """Can an index built as plan ``a`` serve where plan ``b`` is asked for (both as sealed)?"""
    if not isinstance(a, dict) or not isinstance(b, dict) or a.get("kind") != b.get("kind"):
        return False
    if a.get("kind") == "ivfpq":  # same code and lists (RAM or disk); the lists may be of an older size class
        code = _pq_part(a.get("factory"))
        return code is not None and code == _pq_part(b.get("factory")) and a.get("lists") == b.get("lists")
    return a.get("factory") == b.get("factory")


def _pq_part(factory: object) -> str | None:
    return factory.partition(",")[2] or None if isinstance(factory, str) else None


def same_source(stamp: Mapping[str, object], current: Mapping[str, object]) -> bool:
    """Same collection, index, dimension and extra binding, and a compatible plan."""
    if not current.get("collection_id"):
        return False  # a database without an identity is never trusted
    keys = (set(stamp) | set(current)) - set(_STATE_KEYS)
    return all(stamp.get(k) == current.get(k) for k in keys) and plan_compatible(stamp.get("plan"),
                                                                                 current.get("plan"))


def catchable(db: Database, stamp: Mapping[str, object] | None, current: Mapping[str, object]) -> bool | None:
    """True when ``stamp`` is the ``current`` state itself, False when it is an older state of this
    database that the change log can bring up to ``current``, None when it cannot be caught up
    (call inside the snapshot ``current`` was read in)."""
    if stamp is None or not same_source(stamp, current):
        return None
    gen, state, seq = stamp.get("generation"), stamp.get("state"), stamp.get("seq")
    if (gen, state, seq) == (current.get("generation"), current.get("state"), current.get("seq")):
        return True if stamp.get("count") == current.get("count") else None
    if not isinstance(gen, int) or not isinstance(seq, int) or not isinstance(current.get("seq"), int):
        return None  # a cache from before the change log, or a database without one (read-only, old)
    if db.past_state(gen) != (state, seq) or seq < db.changes_pruned_through():
        return None  # not a state this database went through, or the log no longer reaches back
    return False


def changes_since(db: Database, name: str, stamp: Mapping[str, object] | None,
                  current: Mapping[str, object]) -> list[int] | None:
    """The ids whose ``name`` vectors changed since the state ``stamp`` covers (``[]``: none), or None
    when ``stamp`` cannot be caught up to ``current`` (call inside the snapshot ``current`` was read in)."""
    state = catchable(db, stamp, current)
    seq = stamp.get("seq") if stamp is not None else None
    if state is None or not isinstance(seq, int):
        return None if state is None else []
    return [] if state else db.changed_rows(name, seq)


def should_write(db: Database, name: str, file_stamp: Mapping[str, object] | None, file_bytes: int,
                 current: Mapping[str, object]) -> bool:
    """After catching up an index to ``current``: rewrite its cache file (see the module docs)?"""
    if file_stamp is None or file_bytes <= COMPACT_BYTES:
        return True
    seq = file_stamp.get("seq")
    if catchable(db, file_stamp, current) is None or not isinstance(seq, int):
        return True
    count = current.get("count")
    return db.change_count(name, seq) >= COMPACT_SHARE * max(1, count if isinstance(count, int) else 1)


class ReadWriteLock:
    """Many searches at once, or one update (updates waiting go first, so searches cannot starve them)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
