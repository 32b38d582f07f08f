"""``ravl index --ocr``: store the text printed on images so that text search finds it.

Design (no schema change): after an ingest, each item not yet read is OCR'd; every line read,
and the whole text when there are several lines, becomes a caption row with ``source='ocr'``,
embedded by the collection's text encoder like any caption. ``ravl search --text "fresh milk"
--target captions`` then finds the image. The item's metadata records that it was read
(``ravl_ocr``), so a re-run skips it; a changed file gets fresh metadata from ingest, so it is
read again and its old OCR captions are replaced. Captioning and question answering leave OCR
captions out of a neighbour's captions (:meth:`Collection.scene_captions`).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..collection import OCR_SOURCE
from ..progress import Progress, stepped

#: item metadata key marking that the image was read
MARK = "ravl_ocr"
#: longest OCR caption stored (characters)
MAX_TEXT = 500



@dataclass
class OcrReport:
    items_read: int = 0
    items_with_text: int = 0
    already_read: int = 0
    captions_added: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["failed"] = [{"uri": u, "reason": r} for u, r in self.failed]
        return out


def ocr_texts(lines: Sequence) -> list[str]:
    """Caption texts for the lines read: each line, plus the whole text when there are several."""
    texts = [" ".join(line.text.split())[:MAX_TEXT] for line in lines if line.text.strip()]
    if len(texts) > 1:
        texts.append(" ".join(texts)[:MAX_TEXT])
    return list(dict.fromkeys(texts))


def _pending(collection, item_ids: Iterable[int] | None, force: bool) -> tuple[list[tuple[int, str, dict]], int]:
    pending, done = [], 0
    for item_id, uri, meta in collection.item_metadata(item_ids):
        if MARK in meta and not force:
            done += 1
        else:
            pending.append((item_id, uri, meta))
    return pending, done


def ocr_collection(collection, *, item_ids: Iterable[int] | None = None, engine: str = "auto",
                   lang: str = "eng", min_confidence: float = 0.5, force: bool = False, batch_size: int = 32,
                   workers: int = 2, progress: Progress | None = None) -> OcrReport:
    """Read the text on every not-yet-read item of ``collection`` and store it as OCR captions.

    Returns an :class:`OcrReport`; one unreadable image is reported in ``failed`` and skipped.
    Raises :class:`~ravl.errors.MissingDependencyError` up front when no OCR engine is installed.
    """
    from ..errors import ImageError, InputError, MissingDependencyError
    from ..images import load_image
    from ..ocr import available_engines, read_text

    t0 = time.perf_counter()
    report = OcrReport()
    if engine == "auto":
        found = available_engines()
        if not found:
            raise MissingDependencyError("--ocr needs an OCR engine; install Tesseract with: apt-get install "
                                         "tesseract-ocr and pip install 'ravl[ocr]'")
        engine = found[0]
    encoder = collection.encoder
    pending, report.already_read = _pending(collection, item_ids, force)
    timing = {"ocr": 0.0, "encode_texts": 0.0, "write": 0.0}

    def read(entry: tuple[int, str, dict]):
        item_id, uri, meta = entry
        start = time.perf_counter()
        try:
            image = load_image(Path(uri)).image
            lines = read_text(image, engine=engine, lang=lang, min_confidence=min_confidence)
        except (ImageError, InputError) as exc:
            return entry, None, str(exc), time.perf_counter() - start
        return entry, lines, "", time.perf_counter() - start

    def write(batch: list) -> None:
        texts = sorted({text for _, lines, _, _ in batch for text in ocr_texts(lines)})
        t = time.perf_counter()
        vecs = dict(zip(texts, encoder.encode_texts(texts))) if texts else {}
        timing["encode_texts"] += time.perf_counter() - t
        t = time.perf_counter()
        report.captions_added += collection.replace_captions(OCR_SOURCE, [
            (item_id, [(text, vecs[text]) for text in ocr_texts(lines)],
             {**meta, MARK: {"engine": engine, "lines": len(lines)}})
            for (item_id, _, meta), lines, _, _ in batch])
        timing["write"] += time.perf_counter() - t

    batch: list = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ravl-ocr") as pool:
        for done, (entry, lines, reason, seconds) in enumerate(pool.map(read, pending), start=1):
            timing["ocr"] += seconds
            if lines is None:
                report.failed.append((entry[1], reason))
            else:
                report.items_read += 1
                report.items_with_text += bool(lines)
                batch.append((entry, lines, reason, seconds))
            if len(batch) >= batch_size:
                write(batch)
                batch = []
            if progress:
                progress(done, len(pending))
    if batch:
        write(batch)
    if report.items_read:
        collection.refresh_indexes(lazy=True, progress=stepped(progress))  # readers catch up what is left
    report.seconds = {**{k: round(v, 3) for k, v in timing.items()}, "total": round(time.perf_counter() - t0, 3)}
    return report
