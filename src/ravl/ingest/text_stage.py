"""The ingest pipeline's caption stage: texts are encoded in their own thread while the main
thread encodes images, and each distinct caption is encoded once per run.

:meth:`TextStage.request` is called as soon as a record's captions are known (before its image is
even decoded); it queues the captions not already encoded or queued and returns a handle.
:meth:`TextStage.vectors` waits for a handle's vectors when its batch is about to be written.
Queued captions are encoded in jobs of at least ``min_job`` texts (or whatever is queued when a
batch needs them), sorted by length so padding stays small. :meth:`TextStage.seed` hands it
vectors known without the model (captions the collection already holds), which are never encoded.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

Handle = list[tuple[str, Future]]


class TextStage:
    def __init__(self, encode: Callable[[list[str]], np.ndarray], *, min_job: int = 256, cache_size: int = 50_000):
        self.encode, self.min_job, self.cache_size = encode, min_job, cache_size
        self.seconds = 0.0  # time the stage's thread spent encoding
        self.cpu_seconds = 0.0  # CPU time of the stage's thread while encoding (not onnxruntime's pool threads)
        self.wait_seconds = 0.0  # time the caller spent waiting for vectors
        self.encoded = 0  # distinct texts encoded
        self.reused = 0  # distinct texts whose vectors came from :meth:`seed` (no model call)
        self._seeded: set[str] = set()
        self._known: dict[str, Future] = {}  # text -> the job (future of {text: vector}) that encodes it
        self._queued: list[str] = []
        self._queued_future: Future | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ravl-text")

    def seed(self, vectors: dict[str, np.ndarray]) -> None:
        """Vectors known without the model (captions the collection already holds): a request for
        one of these texts is answered from here (kept like an encoded text, see ``cache_size``)."""
        with self._lock:
            for text, vec in vectors.items():
                if text not in self._known:
                    done: Future = Future()
                    done.set_result({text: vec})
                    self._known[text] = done
                    self._seeded.add(text)

    def request(self, texts: Sequence[str], *, start: bool = False) -> Handle:
        """Queue the ``texts`` not yet encoded or queued; a handle for all of them. ``start``
        launches the queue now instead of waiting for ``min_job`` texts."""
        with self._lock:
            if len(self._known) > self.cache_size and not self._queued:
                self._known.clear()  # bounded memory: a repeat after this is encoded again
                self._seeded.clear()
            for t in dict.fromkeys(texts):
                if t in self._seeded:
                    self._seeded.discard(t)
                    self.reused += 1
                if t not in self._known:
                    if self._queued_future is None:
                        self._queued_future = Future()
                    self._queued.append(t)
                    self._known[t] = self._queued_future
            handle = [(t, self._known[t]) for t in texts]
            if len(self._queued) >= self.min_job or (start and self._queued):
                self._launch()
        return handle

    def vectors(self, handle: Handle) -> dict[str, np.ndarray]:
        """``{text: vector}`` for a handle, launching whatever is still queued and waiting for it."""
        with self._lock:
            if any(fut is self._queued_future for _, fut in handle):
                self._launch()
        start = time.perf_counter()
        try:
            return {t: fut.result()[t] for t, fut in handle}
        finally:
            self.wait_seconds += time.perf_counter() - start

    def _launch(self) -> None:  # under the lock
        texts, target = self._queued, self._queued_future
        self._queued, self._queued_future = [], None
        if target is not None and texts:
            self._pool.submit(self._run, texts, target)

    def _run(self, texts: list[str], target: Future) -> None:
        if not target.set_running_or_notify_cancel():
            return
        start, cpu_start = time.perf_counter(), time.thread_time()
        try:
            ordered = sorted(texts, key=len)
            vecs = self.encode(ordered)
        except BaseException as exc:
            target.set_exception(exc)
            return
        finally:
            self.seconds += time.perf_counter() - start
            self.cpu_seconds += time.thread_time() - cpu_start
        self.encoded += len(ordered)
        target.set_result(dict(zip(ordered, vecs)))

    def close(self) -> None:
        with self._lock:
            pending = self._queued_future
            self._queued, self._queued_future = [], None
        if pending is not None:
            pending.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
