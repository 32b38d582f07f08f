"""Ingest: records -> (threads) read, hash, decode, preprocess -> (main) batched image encode,
with captions encoded in their own thread (:mod:`.text_stage`) -> one SQLite transaction per batch.

Decoding and caption encoding overlap the image model: worker threads prepare the next images and
the text stage encodes captions (each distinct caption once per run; none the collection already
holds, :mod:`.caption_reuse`) while the encoder runs
(PIL, onnxruntime and torch release the GIL). Each batch commits atomically, so an
interrupted run keeps every committed batch, and a re-run skips files whose size and mtime are
unchanged (or whose content hash is already stored), resuming where it stopped.
The report says where the time went: wall and CPU per stage, idle time and the bottleneck
(:func:`.report.build_profile`).

:func:`index_records` is the one write path (``ravl index``, the server's uploads, ``ravl watch``,
the Ray engine); :func:`index_sources` reads sources (:mod:`.sources`) on top of it. The rules for
a file live below it: a moved file's row follows it and a changed sidecar replaces its captions
(:mod:`.write`), files gone from a scanned folder are removed under a guard (:mod:`.sync`).
"""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..collection import translating_sqlite_errors
from ..errors import ConfigError
from ..progress import Progress, stepped
from .caption_reuse import stored_caption_vectors
from .folders import IMAGE_EXTENSIONS
from .prepare import TEXT_CACHE_SIZE, prepare_record
from .report import IngestReport, StageClock, build_profile
from .sidecar import parse_langs
from .sidecar import wanted as wanted_in_langs
from .sources import Record, SourceScan, scan_sources
from .sync import apply_sync, count_missing
from .text_stage import TextStage
from .write import KnownCaptions, Prepared, wanted_captions, write_prepared

__all__ = ["IngestReport", "Prepared", "index_records", "index_sources", "prepare_record", "wanted_captions",
           "write_prepared"]

_Prepared = Prepared


def _bounded_map(pool: ThreadPoolExecutor, fn, items: Iterable, ahead: int, clock: StageClock | None = None) -> Iterator:
    """Like ``pool.map`` but keeps at most ``ahead`` tasks in flight (bounded memory); the time the
    caller waits for a result goes to ``clock`` (stage ``wait_decode``)."""
    pending: deque[Future] = deque()

    def next_result():
        t = time.perf_counter()
        try:
            return pending.popleft().result()
        finally:
            if clock is not None:
                clock.add("wait_decode", time.perf_counter() - t)

    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield next_result()
    while pending:
        yield next_result()


def _check_sizes(**values) -> None:
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096):
            raise ConfigError(f"{name.replace('_', '-')} must be a whole number from 1 to 4096, got {value!r}")


def _in_languages(records: list[Record], langs: tuple[str, ...]) -> None:
    """Keep only the tagged sidecar lines in the collection's caption languages."""
    for rec in records:
        if rec.caption_locales:
            rec.captions = wanted_in_langs(rec.caption_locales, rec.captions, langs)


@translating_sqlite_errors
def index_records(collection, records: list[Record], *, engine: str = "local", scan: SourceScan | None = None,
                  keep_missing: bool = False, prune_missing: bool = False, batch_size: int | None = None,
                  workers: int | None = None, progress: Progress | None = None,
                  caption_langs: str | Iterable[str] | None = None, ray: dict | None = None) -> IngestReport:
    """THE write path (index, import, the server's uploads, a watcher, Ray): write ``records`` into
    ``collection`` and return an :class:`IngestReport`.

    With ``scan`` (what :func:`~ravl.ingest.sources.scan_sources` read), the collection is then made
    to match it: items whose file is gone from a scanned folder are removed (a moved file's row has
    already followed it), unless ``keep_missing``; the guard (:mod:`.sync`) holds back a removal
    that looks like an unmounted or emptied folder unless ``prune_missing``. ``caption_langs``
    ('en,fr') is recorded as the collection's caption languages (default: the recorded ones,
    else English). Ctrl-C (KeyboardInterrupt) stops after the last committed batch and returns the
    report with ``interrupted=True`` (no sync); run it again to resume.
    """
    if engine not in ("local", "ray"):
        raise ConfigError(f"unknown engine {engine!r}; use 'local' or 'ray'")
    _check_sizes(batch_size=batch_size, workers=workers)
    t0 = time.perf_counter()
    if caption_langs is not None and parse_langs(caption_langs) != collection.caption_langs():
        collection.set_caption_langs(parse_langs(caption_langs))
    _in_languages(records, collection.caption_langs())
    sources = scan.sources if scan else []
    if engine == "ray":
        from .ray_engine import index_sources_ray

        report = index_sources_ray(collection, sources, batch_size=batch_size, workers=workers, progress=progress,
                                   records=records, finish=False, moves=not keep_missing, **(ray or {}))
    else:
        report = IngestReport(sources=sources)
        _ingest_local(collection, records, report, batch_size, workers, progress, moves=not keep_missing)
    if scan is not None:
        report.notes[:0] = scan.notes
        if not records:
            report.notes.append(f"no images found in {', '.join(scan.sources) or 'the sources'}"
                                f" (ravl reads {', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))})")
    if not report.interrupted:
        t = time.perf_counter()
        if scan is not None and keep_missing:
            count_missing(collection, scan, report)
        elif scan is not None:
            apply_sync(collection, scan, report, prune_missing=prune_missing)
        report.seconds["sync"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        collection.refresh_indexes(lazy=True, progress=stepped(progress))  # catch up; refits the calibration
        report.seconds["index"] = round(time.perf_counter() - t, 3)
        if report.profile:
            report.profile["after"] = {"sync": report.seconds["sync"], "index": report.seconds["index"]}
    report.seconds["total"] = round(time.perf_counter() - t0, 3)
    return report


def index_sources(collection, sources: Iterable[str], *, images_root=None, split: str | None = None,
                  batch_size: int | None = None, workers: int | None = None,
                  progress: Progress | None = None, records: list[Record] | None = None,
                  scan: SourceScan | None = None, keep_missing: bool = False, prune_missing: bool = False,
                  sync: bool = False, **options) -> IngestReport:
    """Read ``sources`` (folders, manifests, COCO, Karpathy) and :func:`index_records` them; a
    folder source is synced (files gone from it are removed), manifests and datasets are added to
    only, unless ``sync`` (then every item not in the sources goes). ``scan`` (from
    :func:`~ravl.ingest.sources.scan_sources`) or ``records`` skip re-reading sources the caller
    has already read; ``records`` alone means no sync."""
    sources = [str(s) for s in sources]
    t = time.perf_counter()
    if scan is None:
        scan = SourceScan(sources, records) if records is not None else \
            scan_sources(sources, images_root=images_root, split=split, exclude=[collection.path])
        if records is not None:
            scan.folders = []  # records only: nothing to compare against
    scan.sync_all = scan.sync_all or sync
    read_seconds = time.perf_counter() - t
    report = index_records(collection, scan.records, scan=scan if (scan.folders or scan.sync_all) else None,
                           keep_missing=keep_missing, prune_missing=prune_missing, batch_size=batch_size,
                           workers=workers, progress=progress, **options)
    report.sources = sources
    report.seconds["read_sources"] = round(read_seconds, 3)
    return report


def _ingest_local(collection, records: list[Record], report: IngestReport, batch_size: int | None,
                  workers: int | None, progress: Progress | None, *, moves: bool) -> None:
    """Decode on threads, encode in this process, write batch by batch (see the module docstring)."""
    report.total = len(records)
    encoder = collection.base_encoder  # the store keeps base vectors; a tuned bridge applies on read
    states = collection.file_states()
    by_sha = {sha: item_id for item_id, _, _, sha in states.values()}
    uris = {s[0]: uri for uri, s in states.items()} if moves else None
    backfill = collection.photo_unread()  # items indexed before photo metadata: read once
    known_caps: KnownCaptions = collection.caption_sources()
    batch_size = batch_size or encoder.batch_size
    workers = workers or min(4, os.cpu_count() or 2)
    min_side = encoder.image_size_hint

    def prepare(rec: Record) -> _Prepared:
        return prepare_record(rec, states.get(rec.uri), by_sha, encoder, min_side, uris, backfill)

    clock = StageClock()  # wall and this thread's CPU per stage; process CPU over the run
    stage = TextStage(encoder.encode_texts, cache_size=TEXT_CACHE_SIZE)
    with clock.timed("reuse_captions"):
        stage.seed(stored_caption_vectors(collection, records, known_caps))

    def captions_wanted(p: _Prepared) -> list[str]:
        return [c for _, c in wanted_captions([p], known_caps)]

    batch: list[_Prepared] = []
    side: list[_Prepared] = []  # touch / reuse / move entries committed with the next batch
    done = 0

    def flush() -> None:
        nonlocal batch, side
        if not batch and not side:
            return
        wanted = [(p, c) for p in batch + side for c in captions_wanted(p)]
        handle = stage.request([c for _, c in wanted], start=True)  # encodes while the images do
        with clock.timed("encode_images"):
            vecs = encoder.embed_pixels(np.stack([p.pixels for p in batch if p.pixels is not None])) if batch else None
        text_vecs = stage.vectors(handle)
        with clock.timed("write"):
            write_prepared(collection, report, batch, side, vecs, text_vecs, known_caps)
        batch, side = [], []

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ravl-decode")
    try:
        for prepared in _bounded_map(pool, prepare, records, ahead=batch_size * 2 + workers, clock=clock):
            clock.add("decode", prepared.seconds, prepared.cpu_seconds)
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
        clock.add("encode_texts", stage.seconds, stage.cpu_seconds)
        clock.add("wait_texts", stage.wait_seconds)
        report.caption_vectors_reused = stage.reused
    report.seconds.update(clock.seconds())
    report.profile = build_profile(clock, workers=workers)
