"""Dynamic batching of model calls for the server.

Requests that arrive while the model is busy (or within ``wait_ms`` of the first one) are
answered by one model call: a worker thread takes the first queued item, collects more until it
has ``max_batch`` or the wait is over, calls the model once and fans the rows back to each
request's future. Model calls therefore run in that thread, never on the event loop, and an
async handler awaiting a future holds no worker thread: health checks and static files are
served while a batch runs. Batched vectors equal one-at-a-time vectors to float rounding (about
1e-7: padding and matrix shapes differ), so results keep their order and scores to 1e-5.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np
from PIL import Image

from ..encoders.base import Encoder, ImageVectors

_STOP = object()


class Failed:
    """A result row that is an error for its own request only (the rest of the batch succeeded)."""

    def __init__(self, error: BaseException):
        self.error = error


class Batcher:
    """``submit(item) -> Future`` of ``fn([item, ...])[i]``; one worker thread per batcher."""

    def __init__(self, fn: Callable[[list], Sequence | np.ndarray], *, max_batch: int = 32, wait_ms: float = 2.0,
                 name: str = "batch", lock: threading.Lock | None = None):
        if max_batch < 1 or wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and wait_ms >= 0")
        self.fn, self.max_batch, self.wait = fn, max_batch, wait_ms / 1000.0
        self.lock = lock  # shared with another batcher when the model must not run two calls at once
        self.calls = self.items = self.largest = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"ravl-{name}", daemon=True)
        self._thread.start()

    def submit(self, item) -> Future:
        future: Future = Future()
        self._queue.put((item, future))
        return future

    def __call__(self, items: Sequence) -> list:
        """Blocking: results for ``items`` (each queued on its own, so they batch with others)."""
        return [f.result() for f in [self.submit(it) for it in items]]

    async def run(self, item):
        """Await one item's result without holding a thread."""
        return await asyncio.wrap_future(self.submit(item))

    def stats(self) -> dict:
        return {"calls": self.calls, "items": self.items, "largest_batch": self.largest,
                "max_batch": self.max_batch, "wait_ms": self.wait * 1000.0}

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(5)

    def _collect(self, first) -> list:
        batch, deadline = [first], time.monotonic() + self.wait
        while len(batch) < self.max_batch:
            try:  # whatever is already queued, then whatever comes before the deadline
                entry = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    entry = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if entry is _STOP:
                self._queue.put(_STOP)
                break
            batch.append(entry)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [(item, fut) for item, fut in self._collect(first) if fut.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                if self.lock is None:
                    results = self.fn([item for item, _ in batch])
                else:
                    with self.lock:
                        results = self.fn([item for item, _ in batch])
            except BaseException as exc:  # every waiting request gets the model's error
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            self.calls += 1
            self.items += len(batch)
            self.largest = max(self.largest, len(batch))
            for (_, fut), row in zip(batch, results):
                if isinstance(row, Failed):
                    fut.set_exception(row.error)
                else:
                    fut.set_result(row)


class BatchedEncoder(Encoder):
    """A shared encoder behind two batchers, one for texts and one for images. Blocking calls
    (captioning, ask) and async ones (search handlers) land in the same batches.

    Unless the encoder declares ``concurrent_towers`` (its text and image models may run at the
    same time, as the default encoder's separate onnxruntime sessions can), one lock serialises
    the two batchers' model calls. Preprocessing stays in the request's thread."""

    def __init__(self, inner: Encoder, *, max_batch: int = 32, wait_ms: float = 2.0):
        self.inner = inner
        self.spec, self.dim, self.feature_dim = inner.spec, inner.dim, inner.feature_dim
        self.batch_size, self.image_size_hint = inner.batch_size, inner.image_size_hint
        self._lock = None if getattr(inner, "concurrent_towers", False) else threading.Lock()
        self.texts = Batcher(self._encode_texts, max_batch=max_batch, wait_ms=wait_ms, name="text", lock=self._lock)
        self.images = Batcher(self._embed_pixels, max_batch=max_batch, wait_ms=wait_ms, name="image", lock=self._lock)

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.inner.encode_texts(texts)

    def _embed_pixels(self, rows: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        vecs = self.inner.embed_pixels(np.stack(rows))
        return list(zip(vecs.embedding, vecs.features))

    # the Encoder contract, blocking
    def warm_up(self) -> None:
        self.inner.warm_up()

    def preprocess(self, image) -> np.ndarray:
        return self.inner.preprocess(image)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.inner.encode_texts([])
        return np.stack(self.texts(list(texts)))

    def embed_pixels(self, pixels: np.ndarray) -> ImageVectors:
        if len(pixels) == 0:
            return self.inner.embed_pixels(pixels)
        rows = self.images(list(pixels))
        return ImageVectors(np.stack([e for e, _ in rows]), np.stack([f for _, f in rows]))

    # async: the awaiting request holds no thread while its batch waits or runs
    async def encode_text_async(self, text: str) -> np.ndarray:
        """(1, dim) vector of one text."""
        return (await self.texts.run(text))[None]

    async def embed_pixels_async(self, pixels: np.ndarray) -> ImageVectors:
        """Vectors of one preprocessed image (one row each)."""
        embedding, features = await self.images.run(pixels)
        return ImageVectors(embedding[None], features[None])

    def stats(self) -> dict:
        return {"texts": self.texts.stats(), "images": self.images.stats()}

    def close(self) -> None:
        self.texts.close()
        self.images.close()

    def describe(self) -> dict:
        return self.inner.describe()

    def top_labels(self, images: Sequence[Image.Image], k: int = 5) -> list[list[tuple[str, float]]]:
        if self._lock is None:
            return self.inner.top_labels(images, k=k)
        with self._lock:
            return self.inner.top_labels(images, k=k)

    def __getattr__(self, name: str):
        """Optional capabilities of the inner encoder (e.g. ``top_labels``), under the model lock if any."""
        if name in ("inner", "_lock"):
            raise AttributeError(name)
        attr = getattr(self.inner, name)
        if not callable(attr) or self._lock is None:
            return attr

        def locked(*args, **kwargs):
            with self._lock:
                return attr(*args, **kwargs)

        return locked
