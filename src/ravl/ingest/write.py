"""Writing prepared records: one batch, one transaction, whatever engine prepared it (local
threads, Ray actors, the server, a watcher). The sync rules for a file live here: a moved file's
row follows it, a changed sidecar replaces its captions."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..collection import NewItem
from ..encoders.base import ImageVectors
from .photo_meta import PhotoMeta
from .record import Record
from .report import IngestReport
from .sidecar import is_sidecar_source

#: item id -> {caption text: its source tag}, as stored (kept up to date through a run)
KnownCaptions = dict[int, dict[str, str]]


@dataclass
class Prepared:
    record: Record
    kind: str  # "new" | "touch" | "reuse" | "move" | "skip"
    item_id: int | None = None
    pixels: np.ndarray | None = None
    sha256: str = ""
    size: int = 0
    mtime_ns: int = 0
    width: int | None = None
    height: int | None = None
    reason: str = ""
    seconds: float = 0.0  # wall time preparing it (read, hash, decode, preprocess)
    cpu_seconds: float = 0.0  # CPU time of the thread that prepared it, over the same span
    photo: PhotoMeta | None = None  # EXIF read from the file (None: not read this time)


def _replaces(source: str, rec: Record) -> bool:
    """True when a stored caption of ``source`` is one ``rec``'s captions replace: a sidecar's
    (older ravl stored folder sidecar lines as 'ingest')."""
    return rec.caption_source != "ingest" and (is_sidecar_source(source) or source == "ingest")


def wanted_captions(prepared: Iterable[Prepared], known_caps: KnownCaptions) -> list[tuple[Prepared, str]]:
    """Captions to add: all of a new (or copied) item's, the unstored ones of an existing item."""
    wanted: list[tuple[Prepared, str]] = []
    for p in prepared:
        have = known_caps.get(p.item_id, {}) if p.kind != "reuse" and p.item_id else {}
        wanted += [(p, c) for c in p.record.captions if c not in have]
    return wanted


def stale_captions(p: Prepared, known_caps: KnownCaptions) -> list[str]:
    """Stored sidecar captions of an existing item that its sidecar no longer holds."""
    if p.kind == "reuse" or p.item_id is None or p.record.caption_source == "ingest":
        return []
    keep = set(p.record.captions)
    return [t for t, src in known_caps.get(p.item_id, {}).items() if t not in keep and _replaces(src, p.record)]


def write_prepared(collection, report: IngestReport, batch: list[Prepared], side: list[Prepared],
                   vecs: ImageVectors | None, text_vecs: dict[str, np.ndarray], known_caps: KnownCaptions) -> None:
    """Write one batch in ONE transaction: ``batch`` ('new' records; image vectors ``vecs`` in the
    same order), ``side`` ('touch'/'reuse'/'move' records) and the wanted captions whose vectors are
    in ``text_vecs``. Every engine writes through here: same rows, same report."""
    side = list(side)
    for n, p in enumerate(side):  # a row moves once; a second file with its content is a copy
        if p.kind == "move" and p.item_id in report.moved_ids:
            side[n] = p = Prepared(**{**p.__dict__, "kind": "reuse"})
        if p.kind == "move":
            report.moved_ids.add(p.item_id)  # type: ignore[arg-type]
    wanted = wanted_captions(batch + side, known_caps)
    new_items: list[NewItem] = []
    touched: list[tuple[int, int, int]] = []
    extra: list[tuple[int, str, np.ndarray, str]] = []
    drop: list[tuple[int, str]] = []
    moves: list[tuple[int, str]] = []
    photos: list[tuple[int, dict]] = []  # metadata of unchanged and moved files, read (again) this run
    for i, p in enumerate(batch):
        assert vecs is not None  # batch is not empty
        new_items.append(NewItem(p.record.uri, p.sha256, p.size, p.mtime_ns, p.width, p.height,
                                 vecs.embedding[i], vecs.features[i], p.record.metadata, source="ingest",
                                 photo=(p.photo or PhotoMeta()).to_dict()))
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
                                     source="ingest", photo=(p.photo or PhotoMeta()).to_dict()))
    records = {p.record.uri: p.record for p in batch + reuse}
    for item in new_items:
        rec = records[item.uri]
        item.captions = [(c, text_vecs[c]) for c in rec.captions if c in text_vecs]
        item.caption_sources = {c: rec.caption_tag(c) for c, _ in item.captions}
    for p in [q for q in batch if q.item_id is not None] + [q for q in side if q.kind in ("touch", "move")]:
        item_id = p.item_id
        assert item_id is not None
        drop += [(item_id, t) for t in stale_captions(p, known_caps)]
        if p.kind == "new":
            continue  # an updated file's new captions ride on its NewItem
        if p.kind == "move":
            moves.append((item_id, p.record.uri))
        touched.append((item_id, p.size, p.mtime_ns))
        if p.photo is not None:
            photos.append((item_id, p.photo.to_dict()))
        extra += [(item_id, c, text_vecs[c], p.record.caption_tag(c)) for pp, c in wanted if pp is p and c in text_vecs]
    ids = collection.write_files(new_items, touched, extra, lambda uri, why: report.skipped.append((uri, why)),
                                 moves=moves, drop_captions=drop, photos=photos)
    stored = {item.uri for item_id, item in zip(ids, new_items) if item_id is not None}
    for item_id, item in zip(ids, new_items):
        if item_id is not None:
            known_caps.setdefault(item_id, {}).update(item.caption_sources)
    for item_id, text, _, source in extra:
        known_caps.setdefault(item_id, {})[text] = source
    for item_id, text in drop:
        known_caps.get(item_id, {}).pop(text, None)
    report.captions_added += sum(len(it.captions) for it in new_items if it.uri in stored) + len(extra)
    report.captions_removed += len(drop)
    reused = sum(1 for p in reuse if p.record.uri in stored)
    report.added += sum(1 for p in batch if p.item_id is None and p.record.uri in stored) + reused
    report.reused += reused
    report.moved += len(moves)
    report.updated += sum(1 for p in batch if p.item_id is not None and p.record.uri in stored)
    report.unchanged += sum(1 for p in side if p.kind == "touch")
