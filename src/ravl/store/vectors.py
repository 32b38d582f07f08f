"""FAISS indexes over the vectors in SQLite, persisted as cache files next to the database.

Each index file ``<name>.faiss`` has a ``<name>.json`` sidecar recording the database generation
it was built from. A stale or damaged file is rebuilt from SQLite on open, so an interrupted
writer can never leave search returning wrong ids. Search is exact (inner product on unit
vectors = cosine similarity).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write_bytes


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



def load_or_build(folder: Path, name: str, generation: int, dim: int,
                  fetch: Callable[[], tuple[np.ndarray, np.ndarray]], *, save: bool = True) -> VectorIndex:
    """The index ``name`` for database ``generation``: from its cache file when current, else
    rebuilt with ``fetch() -> (ids, vectors)`` and (when ``save``) written back atomically."""
    import faiss

    data_path, meta_path = folder / f"{name}.faiss", folder / f"{name}.json"
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("generation") == generation and meta.get("dim") == dim:
            index = faiss.deserialize_index(np.fromfile(data_path, dtype=np.uint8))
            if index.ntotal == meta.get("count") and index.d == dim:
                return VectorIndex(index, dim)
    except (OSError, ValueError, RuntimeError):
        pass  # missing, stale or damaged cache: rebuild below
    ids, vectors = fetch()
    built = VectorIndex.build(ids, vectors.reshape(len(ids), dim) if len(ids) else vectors, dim)
    if save:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(data_path, faiss.serialize_index(built.index).tobytes())
            atomic_write_bytes(meta_path, json.dumps({"generation": generation, "dim": dim,
                                                       "count": len(built)}).encode())
        except OSError:
            pass  # read-only collection: search still works from memory
    return built
