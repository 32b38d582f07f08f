"""Ingest: records -> (threads) read, hash, decode, preprocess -> (main) batched image encode,
with captions encoded in their own thread (:mod:`.text_stage`) -> one SQLite transaction per batch.

Decoding and caption encoding overlap the image model: worker threads prepare the next images and
the text stage encodes captions (each distinct caption once per run) while the encoder runs
(PIL, onnxruntime and torch release the GIL). Each batch commits atomically, so an
interrupted run keeps every committed batch, and a re-run skips files whose size and mtime are
unchanged (or whose content hash is already stored), resuming where it stopped.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from ..collection import NewItem, translating_sqlite_errors
from ..encoders.base import ImageVectors
from ..errors import ConfigError, ImageError
from ..images import decode_image, read_file
from .sources import Record, read_sources
from .text_stage import TextStage

Progress = Callable[[int, int], None]  # (done, total)
#: caption texts whose vectors are kept for the rest of a run (datasets often repeat captions)
TEXT_CACHE_SIZE = 50_000


@dataclass
class IngestReport:
    sources: list[str]
    total: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    reused: int = 0  # same content already stored under another path: vectors copied, no model call
    captions_added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def encoded(self) -> int:
        return self.added + self.updated

    def to_dict(self) -> dict:
        out = asdict(self)
        out["skipped"] = [{"uri": u, "reason": r} for u, r in self.skipped]
        total = self.seconds.get("total", 0.0)
        out["images_per_second"] = round(self.encoded / total, 2) if total else None
        return out


@dataclass
class _Prepared:
    record: Record
    kind: str  # "new" | "touch" | "reuse" | "skip"
    item_id: int | None = None
    pixels: np.ndarray | None = None
    sha256: str = ""
    size: int = 0
    mtime_ns: int = 0
    width: int | None = None
    height: int | None = None
    reason: str = ""
    seconds: float = 0.0


def _bounded_map(pool: ThreadPoolExecutor, fn, items: Iterable, ahead: int) -> Iterator:
    """Like ``pool.map`` but keeps at most ``ahead`` tasks in flight (bounded memory)."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def prepare_record(rec: Record, state: tuple[int, int, int, str] | None, by_sha: dict[str, int], encoder,
                   min_side: int) -> _Prepared:
    """Stat, read, hash, decode and preprocess one record (in any thread or process): 'touch' when
    the stored ``state`` = (id, size, mtime_ns, sha256) still matches, 'reuse' when another stored
    item has the same content (``by_sha``), 'skip' with a reason, else 'new' (pixels ready)."""
    start = time.perf_counter()
    try:
        st = rec.path.stat()
    except (OSError, ValueError) as exc:
        return _Prepared(rec, "skip", reason="file not found" if isinstance(exc, FileNotFoundError)
                         else f"cannot read ({getattr(exc, 'strerror', None) or exc})")
    if state and state[1] == st.st_size and state[2] == st.st_mtime_ns:
        return _Prepared(rec, "touch", item_id=state[0], size=st.st_size, mtime_ns=st.st_mtime_ns)
    try:
        data = read_file(rec.path)
        sha = hashlib.sha256(data).hexdigest()
        if state and state[3] == sha:
            return _Prepared(rec, "touch", item_id=state[0], size=len(data), mtime_ns=st.st_mtime_ns)
        if sha in by_sha and not state:
            return _Prepared(rec, "reuse", item_id=by_sha[sha], sha256=sha, size=len(data),
                             mtime_ns=st.st_mtime_ns)
        img, width, height = decode_image(data, min_side=min_side, name=str(rec.path))
        pixels = encoder.preprocess(img)
    except ImageError as exc:
        return _Prepared(rec, "skip", reason=str(exc).split(": ", 1)[-1])
    except Exception as exc:  # a backend's preprocessing failing on one odd image must not kill the run
        return _Prepared(rec, "skip", reason=f"preprocessing failed: {exc}")
    return _Prepared(rec, "new", item_id=state[0] if state else None, pixels=pixels, sha256=sha,
                     size=len(data), mtime_ns=st.st_mtime_ns, width=width, height=height,
                     seconds=time.perf_counter() - start)


def wanted_captions(prepared: Iterable[_Prepared], known_caps: dict[int, list[str]]) -> list[tuple[_Prepared, str]]:
    """Captions to add: all of a new (or reused) item's, the unseen ones of an existing item."""
    wanted: list[tuple[_Prepared, str]] = []
    for p in prepared:
        have = set(known_caps.get(p.item_id, ())) if p.kind != "reuse" and p.item_id else set()
        wanted += [(p, c) for c in p.record.captions if c not in have]
    return wanted


def write_prepared(collection, report: IngestReport, batch: list[_Prepared], side: list[_Prepared],
                   vecs: ImageVectors | None, text_vecs: dict[str, np.ndarray],
                   known_caps: dict[int, list[str]]) -> None:
    """Write one batch in ONE transaction: ``batch`` ('new' records; image vectors ``vecs`` in the
    same order), ``side`` ('touch'/'reuse' records) and the wanted captions whose vectors are in
    ``text_vecs``. Every engine (local threads, Ray) writes through here: same rows, same report."""
    wanted = wanted_captions(batch + side, known_caps)
    new_items, touched, extra = [], [], []
    for i, p in enumerate(batch):
        assert vecs is not None  # batch is not empty
        new_items.append(NewItem(p.record.uri, p.sha256, p.size, p.mtime_ns, p.width, p.height,
                                 vecs.embedding[i], vecs.features[i], p.record.metadata, source="ingest"))
    reuse = [p for p in side if p.kind == "reuse"]
    if reuse:
        src_ids = [p.item_id for p in reuse if p.item_id is not None]
        ids_e, emb = collection.item_vectors(src_ids, "emb")
        ids_f, feat = collection.item_vectors(src_ids, "feat")
        pos_e, pos_f = {int(i): n for n, i in enumerate(ids_e)}, {int(i): n for n, i in enumerate(ids_f)}
        src = collection.items(src_ids)
        for p in reuse:
            assert p.item_id is not None  # reuse always names its source item
            row = src[p.item_id]
            new_items.append(NewItem(p.record.uri, p.sha256, p.size, p.mtime_ns, row.width, row.height,
                                     emb[pos_e[p.item_id]], feat[pos_f[p.item_id]], p.record.metadata,
                                     source="ingest"))
    for item in new_items:
        rec_caps = next(p.record.captions for p in batch + reuse if p.record.uri == item.uri)
        item.captions = [(c, text_vecs[c]) for c in rec_caps if c in text_vecs]
    for p in side:
        if p.kind == "touch":
            touched.append((p.item_id, p.size, p.mtime_ns))
            extra += [(p.item_id, c, text_vecs[c], "ingest") for pp, c in wanted if pp is p]
    ids = collection.add_batch(new_items, touched, extra, on_skip=lambda uri, why: report.skipped.append((uri, why)))
    stored = {item.uri for item_id, item in zip(ids, new_items) if item_id is not None}
    for item_id, item in zip(ids, new_items):
        if item_id is not None:
            known_caps.setdefault(item_id, []).extend(c for c, _ in item.captions)
    report.captions_added += sum(len(it.captions) for it in new_items if it.uri in stored) + len(extra)
    reused = sum(1 for p in reuse if p.record.uri in stored)
    report.added += sum(1 for p in batch if p.item_id is None and p.record.uri in stored) + reused
    report.reused += reused
    report.updated += sum(1 for p in batch if p.item_id is not None and p.record.uri in stored)
    report.unchanged += sum(1 for p in side if p.kind == "touch")


@translating_sqlite_errors
def index_sources(collection, sources: Iterable[str], *, images_root=None, split: str | None = None,
                  batch_size: int | None = None, workers: int | None = None,
                  progress: Progress | None = None, records: list[Record] | None = None) -> IngestReport:
    """Index every image of ``sources`` into ``collection``; returns an :class:`IngestReport`.

    Ctrl-C (KeyboardInterrupt) stops after the last committed batch and returns the report with
    ``interrupted=True``; run it again to resume. ``records`` (from :func:`read_sources`) skips
    re-reading sources the caller has already validated.
    """
    for name, value in (("batch_size", batch_size), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096):
            raise ConfigError(f"{name.replace('_', '-')} must be a whole number from 1 to 4096, got {value!r}")
    t0 = time.perf_counter()
    sources = [str(s) for s in sources]
    report = IngestReport(sources=sources)
    t = time.perf_counter()
    if records is None:
        records = read_sources(sources, images_root=images_root, split=split)
    report.total = len(records)
    report.seconds["read_sources"] = time.perf_counter() - t

    encoder = collection.base_encoder  # the store keeps base vectors; a tuned bridge applies on read
    states = collection.file_states()
    by_sha = {sha: item_id for item_id, _, _, sha in states.values()}
    known_caps = collection.captions_by_item()
    batch_size = batch_size or encoder.batch_size
    workers = workers or min(4, os.cpu_count() or 2)
    min_side = encoder.image_size_hint

    def prepare(rec: Record) -> _Prepared:
        return prepare_record(rec, states.get(rec.uri), by_sha, encoder, min_side)

    timing = {"decode": 0.0, "encode_images": 0.0, "encode_texts": 0.0, "wait_texts": 0.0, "write": 0.0}
    stage = TextStage(encoder.encode_texts, cache_size=TEXT_CACHE_SIZE)

    def captions_wanted(p: _Prepared) -> list[str]:
        return [c for _, c in wanted_captions([p], known_caps)]

    batch: list[_Prepared] = []
    side: list[_Prepared] = []  # touch / reuse entries committed with the next batch
    done = 0

    def flush() -> None:
        nonlocal batch, side
        if not batch and not side:
            return
        wanted = [(p, c) for p in batch + side for c in captions_wanted(p)]
        handle = stage.request([c for _, c in wanted], start=True)  # encodes while the images do
        t = time.perf_counter()
        vecs = encoder.embed_pixels(np.stack([p.pixels for p in batch if p.pixels is not None])) if batch else None
        timing["encode_images"] += time.perf_counter() - t
        text_vecs = stage.vectors(handle)
        t = time.perf_counter()
        write_prepared(collection, report, batch, side, vecs, text_vecs, known_caps)
        timing["write"] += time.perf_counter() - t
        batch, side = [], []

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ravl-decode")
    try:
        for prepared in _bounded_map(pool, prepare, records, ahead=batch_size * 2 + workers):
            timing["decode"] += prepared.seconds
            if prepared.kind != "skip":
                stage.request(captions_wanted(prepared))  # queued now, encoded in the text thread
            if prepared.kind == "skip":
                report.skipped.append((prepared.record.uri, prepared.reason))
            elif prepared.kind == "new":
                batch.append(prepared)
            else:
                side.append(prepared)
            if len(batch) >= batch_size or len(side) >= batch_size * 8:
                flush()
            done += 1
            if progress:
                progress(done, report.total)
        flush()
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        stage.close()
        timing["encode_texts"], timing["wait_texts"] = stage.seconds, stage.wait_seconds
    if not report.interrupted:
        t = time.perf_counter()
        collection.refresh_indexes(lazy=True)  # readers catch up what is left
        timing["index"] = time.perf_counter() - t
    report.seconds.update({k: round(v, 3) for k, v in timing.items()})
    report.seconds["total"] = round(time.perf_counter() - t0, 3)
    return report
