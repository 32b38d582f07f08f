"""FAISS indexes over the vectors in SQLite, persisted as cache files next to the database.

Each index file ``<name>.faiss`` is sealed (:mod:`.integrity`): its ``<name>.faiss.seal.json``
binds it to the collection id, database generation and row count it was built from, with a
BLAKE2b hash of its bytes. Anything that does not verify is rebuilt from SQLite, never used, so a
replaced database, a damaged file or an interrupted writer can never make search return wrong
ids. Search is exact (inner product on unit vectors = cosine similarity).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from .integrity import clean_stale_tmp, read_sealed, write_sealed


class VectorIndex:
    def __init__(self, index, dim: int):
        self.index = index
        self.dim = dim

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, dim: int) -> VectorIndex:
        import faiss

        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
        return cls(index, dim)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[int] = ()) -> list[list[tuple[int, float]]]:
        """Top-``k`` (id, score) per query row, best first, skipping ids in ``exclude``."""
        excluded = set(exclude)
        n = len(self)
        if n == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        fetch = min(n, k + len(excluded))
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)
        out = []
        for row_s, row_i in zip(scores, ids):
            hits = [(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0 and int(i) not in excluded]
            out.append(hits[:k])
        return out



def load_or_build(folder: Path, name: str, binding: Mapping[str, object], dim: int,
                  fetch: Callable[[], tuple[np.ndarray, np.ndarray]], *, save: bool = True) -> VectorIndex:
    """The index ``name`` for the database state ``binding`` (see :mod:`.integrity`): from its
    cache file when the file's seal verifies against ``binding`` and its content, else rebuilt with
    ``fetch() -> (ids, vectors)`` and (when ``save``) written back sealed. ``binding`` must hold
    ``count`` (rows in the source); a binding without a ``collection_id`` is never trusted."""
    import faiss

    data_path = folder / f"{name}.faiss"
    trusted = bool(binding.get("collection_id"))
    data = read_sealed(data_path, binding) if trusted else None
    if data is not None:
        try:
            index = faiss.deserialize_index(data)
            if index.ntotal == binding.get("count") and index.d == dim:
                return VectorIndex(index, dim)
        except (RuntimeError, ValueError, MemoryError):
            pass  # verified bytes that faiss still refuses (a bug elsewhere): rebuild below
    ids, vectors = fetch()
    built = VectorIndex.build(ids, vectors.reshape(len(ids), dim) if len(ids) else vectors, dim)
    if save and trusted and len(built) == binding.get("count"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            clean_stale_tmp(folder)
            (folder / f"{name}.json").unlink(missing_ok=True)  # sidecar of the unsealed format
            write_sealed(data_path, faiss.serialize_index(built.index), binding)
        except OSError:
            pass  # read-only collection: search still works from memory
    return built
