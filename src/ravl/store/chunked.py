"""Vectors read a chunk at a time: exact top-k merged over chunks, rows at given positions, chunks
over arrays held in memory (the pieces a streaming index build is made of), and FAISS's thread count."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from ..progress import Progress, describe

Fetch = Callable[[list[int]], tuple[np.ndarray, np.ndarray]]  # ids -> (ids, vectors)
#: each call iterates every (ids, vectors) chunk of an index's vectors, in one fixed order
Chunks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


def _faiss():
    import faiss

    return faiss


@contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """Run FAISS with ``threads`` OpenMP threads in this thread (None: as configured). OpenMP's
    setting is per calling thread, so concurrent searches in other threads are not affected."""
    if threads is None:
        yield
        return
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row positions of the exact top-``k`` inner products (brute force, FAISS flat)."""
    faiss = _faiss()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]


def exact_topk_chunks(chunks: Chunks, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the exact top-``k`` inner products over every chunk, best first: one chunk
    in memory at a time (the running top-k merged with each chunk's)."""
    faiss = _faiss()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for ids, vecs in chunks():
        if not len(ids):
            continue
        kk = min(k, len(ids))
        scores, pos = faiss.knn(queries, np.ascontiguousarray(vecs, dtype=np.float32).reshape(len(ids), -1), kk,
                                faiss.METRIC_INNER_PRODUCT)
        all_s = np.concatenate([best_s, scores], axis=1)
        all_i = np.concatenate([best_i, np.asarray(ids, np.int64)[pos]], axis=1)
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(all_s, order, 1), np.take_along_axis(all_i, order, 1)
    return best_s, best_i


def rows_at(chunks: Chunks, positions: np.ndarray, dim: int) -> np.ndarray:
    """The vectors at ``positions`` (ascending) of the sequence ``chunks()`` yields, in one pass."""
    out = np.empty((len(positions), dim), np.float32)
    done, offset = 0, 0
    for ids, vecs in chunks():
        if done == len(positions):
            break
        end = offset + len(ids)
        stop = int(np.searchsorted(positions, end))
        if stop > done:
            out[done:stop] = np.asarray(vecs, np.float32).reshape(len(ids), dim)[positions[done:stop] - offset]
            done = stop
        offset = end
    return out[:done]


def array_chunks(ids: np.ndarray, vectors: np.ndarray, size: int = 100_000) -> Chunks:
    """Chunks over arrays held in memory."""
    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(ids), size):
            yield ids[start:start + size], vectors[start:start + size]
    return chunks


def _array_fetch(ids: np.ndarray, vectors: np.ndarray) -> Fetch:
    row = {int(i): n for n, i in enumerate(ids)}

    def fetch(wanted: list[int]) -> tuple[np.ndarray, np.ndarray]:
        keep = [i for i in wanted if i in row]
        return np.asarray(keep, np.int64), vectors[[row[i] for i in keep]]

    return fetch


def counted(chunks: Chunks, progress: Progress | None, step: str, total: int) -> Chunks:
    """``chunks`` that report each pass as step ``step``: ``progress(rows so far, total)`` after
    every chunk (one call per chunk); without ``progress``, ``chunks`` itself."""
    if progress is None:
        return chunks

    def passes() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        describe(progress, step)
        done = 0
        progress(0, total)
        for ids, vecs in chunks():
            yield ids, vecs
            done += len(ids)
            progress(done, max(total, done))

    return passes
