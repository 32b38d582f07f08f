"""Bring and take embeddings: a collection to Parquet and back, and clip-retrieval's inference output in.

ravl layout (``ravl export``)::

    OUT/manifest.json             {"format": "ravl-embeddings", "encoder_spec", "fingerprint", "dim", ...}
    OUT/items/part-00000.parquet  id, uri, sha256, size, mtime_ns, width, height, metadata (JSON text),
                                  captions (list<string>), caption_sources, caption_embeddings
                                  (list<list<float32>>), embedding (list<float32>[dim]),
                                  features (list<float32>[feature_dim])

clip-retrieval layout (``clip-retrieval inference`` output)::

    SRC/img_emb/img_emb_{i}.npy          (n_i, dim) float16/float32 image embeddings
    SRC/metadata/metadata_{i}.parquet    rows aligned with img_emb_{i}: image_path (or url), caption, ...
    SRC/text_emb/text_emb_{i}.npy        optional: the caption embeddings, same rows

Imports declare the encoder the vectors came from (the manifest says it for ravl exports), so search
encodes queries with the same model; a vector dimension that does not match it is refused before
anything is written. Rows are written in atomic batches through the same store path as ``ravl index``
(upsert by uri), so an interrupted import re-runs to the same result with nothing duplicated.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..collection import NewItem
from ..encoders.base import l2_normalize
from ..errors import InputError
from ..progress import Progress, stepped

FORMAT = "ravl-embeddings"
VERSION = 1
ROWS_PER_FILE = 50_000
BATCH = 512
#: rows read from the source at a time (Arrow record batches, slices of memory-mapped .npy files)
CHUNK_ROWS = 8_192


@dataclass
class TransferReport:
    source: str
    layout: str
    rows: int = 0
    written: int = 0
    captions: int = 0
    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def to_dict(self) -> dict:
        out = asdict(self)
        out["skipped"] = [{"uri": u, "reason": r} for u, r in self.skipped]
        return out


def _pa():
    from ..extras import install_hint, require

    require("Parquet export and import", ("pyarrow",), install_hint("parquet"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


# --- export --------------------------------------------------------------------------------------
def export_collection(collection, out: str | Path, *, progress: Progress | None = None) -> TransferReport:
    """Write every item of ``collection`` (vectors, captions with theirs, metadata) as Parquet under ``out``."""
    pa, pq = _pa()
    t0 = time.perf_counter()
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out} is not empty; give a new or empty folder")
    (out / "items").mkdir(parents=True, exist_ok=True)
    report = TransferReport(str(collection.path), FORMAT)
    total = collection.counts()["images"]
    for part, rows in enumerate(collection.export_rows(ROWS_PER_FILE)):
        table = pa.table({
            "id": pa.array([r["id"] for r in rows], pa.int64()),
            "uri": [r["uri"] for r in rows], "sha256": [r["sha256"] for r in rows],
            "size": pa.array([r["size"] for r in rows], pa.int64()),
            "mtime_ns": pa.array([r["mtime_ns"] for r in rows], pa.int64()),
            "width": pa.array([r["width"] for r in rows], pa.int32()),
            "height": pa.array([r["height"] for r in rows], pa.int32()),
            "metadata": [r["metadata"] for r in rows],
            "captions": pa.array([r["captions"] for r in rows], pa.list_(pa.string())),
            "caption_sources": pa.array([r["caption_sources"] for r in rows], pa.list_(pa.string())),
            "caption_embeddings": pa.array([[v.tolist() for v in r["caption_embeddings"]] for r in rows],
                                           pa.list_(pa.list_(pa.float32()))),
            "embedding": _vectors(pa, [r["embedding"] for r in rows], collection.dim),
            "features": _vectors(pa, [r["features"] for r in rows], collection.feature_dim),
        })
        name = f"items/part-{part:05d}.parquet"
        pq.write_table(table, out / name)
        report.files.append(name)
        report.rows += len(rows)
        report.captions += sum(len(r["captions"]) for r in rows)
        if progress:
            progress(report.rows, total)
    manifest = {"format": FORMAT, "version": VERSION, "encoder_spec": collection.encoder_spec,
                "fingerprint": collection.fingerprint, "dim": collection.dim,
                "feature_dim": collection.feature_dim, "vector_dtype": collection.vector_dtype, "rows": report.rows,
                "files": report.files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    report.written = report.rows
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


#: a vector whose norm is within this of 1 is unit length as stored (float16 keeps ~3 digits)
UNIT_TOLERANCE = 2e-3


def _vectors(pa, vecs: list[np.ndarray], dim: int):
    flat = np.concatenate(vecs).astype(np.float32) if vecs else np.zeros(0, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)


# --- import --------------------------------------------------------------------------------------
def detect_layout(src: str | Path) -> str:
    src = Path(src)
    if (src / "manifest.json").is_file():
        return "ravl"
    if sorted(src.glob("img_emb/img_emb_*.npy")):
        return "clip-retrieval"
    raise InputError(f"{src}: neither a ravl export (manifest.json) nor clip-retrieval output "
                     "(img_emb/img_emb_*.npy + metadata/metadata_*.parquet)")


def read_manifest(src: str | Path) -> dict:
    path = Path(src) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the export manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a ravl export manifest (format {FORMAT!r})")
    return manifest


def import_embeddings(collection, src: str | Path, *, progress: Progress | None = None) -> TransferReport:
    """Import a ravl export or clip-retrieval output from ``src`` into ``collection``."""
    src = Path(src).expanduser().resolve()
    layout = detect_layout(src)
    t0 = time.perf_counter()
    report = TransferReport(str(src), layout)
    chunks = _ravl_chunks(collection, src) if layout == "ravl" else _clip_retrieval_chunks(collection, src, report)
    try:
        for items, total in chunks:
            for start in range(0, len(items), BATCH):
                batch = items[start:start + BATCH]
                collection.add_batch(batch)
                report.written += len(batch)
                report.captions += sum(len(it.captions) for it in batch)
                if progress:
                    progress(report.written, total)
    except KeyboardInterrupt:
        report.interrupted = True
    report.rows = report.written + len(report.skipped)
    report.seconds = round(time.perf_counter() - t0, 3)
    if not report.interrupted:
        collection.refresh_indexes(lazy=True, progress=stepped(progress))  # readers catch up what is left
    return report


def _check_dim(what: str, got: int, want: int, collection) -> None:
    if got != want:
        raise InputError(f"{what} has {got}-d vectors but encoder {collection.encoder_spec!r} makes {want}-d "
                         "ones; declare the encoder the vectors came from with --encoder (into a new --collection)")


def _ravl_chunks(collection, src: Path) -> Iterator[tuple[list[NewItem], int]]:
    _, pq = _pa()
    manifest = read_manifest(src)
    if manifest.get("fingerprint") not in (None, collection.fingerprint):
        raise InputError(f"{src} holds vectors of encoder {manifest.get('fingerprint')!r}, but collection "
                         f"{collection.path} uses {collection.fingerprint!r}; import into a new --collection folder")
    _check_dim(f"{src} (encoder {manifest.get('encoder_spec')!r})", int(manifest.get("dim", -1)), collection.dim,
               collection)
    _check_dim(f"{src} image features", int(manifest.get("feature_dim", -1)), collection.feature_dim, collection)
    total = int(manifest.get("rows", 0))
    for name in manifest.get("files", []):
        for batch in pq.ParquetFile(src / name).iter_batches(batch_size=CHUNK_ROWS):
            yield _ravl_items(batch.to_pylist()), total


def _ravl_items(rows: list[dict]) -> list[NewItem]:
    items = []
    for r in rows:
        caps = [(t, _unit(v)) for t, v in zip(r["captions"] or [], r["caption_embeddings"] or [])]
        items.append(NewItem(r["uri"], r["sha256"], r["size"], r["mtime_ns"], r["width"], r["height"],
                             _unit(r["embedding"]), _unit(r["features"]),
                             json.loads(r["metadata"] or "{}"), caps, source="import"))
    return items


def _unit(values) -> np.ndarray:
    """An exported vector as stored: unit length already (within what float16 storage keeps) it is
    taken as it is, so export -> import gives the same bytes; otherwise it is normalised."""
    vec = np.asarray(values, np.float32)
    norm = float(np.linalg.norm(vec))
    return vec if abs(norm - 1.0) <= UNIT_TOLERANCE else l2_normalize(vec)[0]


def _numbered(folder: Path, pattern: str) -> list[Path]:
    """Files like img_emb_3.npy in numeric order (clip-retrieval does not zero-pad)."""
    return sorted(folder.glob(pattern), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))


def _clip_retrieval_chunks(collection, src: Path, report: TransferReport) -> Iterator[tuple[list[NewItem], int]]:
    """Items in chunks of CHUNK_ROWS: the .npy files are memory-mapped and the metadata read as Arrow
    record batches, so memory does not grow with the source (1M rows peaked at 16.4 GB read whole)."""
    _, pq = _pa()
    emb_files = _numbered(src / "img_emb", "img_emb_*.npy")
    first = np.load(emb_files[0], mmap_mode="r")
    _check_dim(str(emb_files[0]), int(first.shape[1]), collection.dim, collection)
    if collection.feature_dim != collection.dim:
        raise InputError(f"encoder {collection.encoder_spec!r} keeps separate {collection.feature_dim}-d image "
                         "features, but clip-retrieval output has only image embeddings; import into a collection "
                         "of a CLIP-family encoder (open_clip:, hf:)")
    total = sum(int(np.load(f, mmap_mode="r").shape[0]) for f in emb_files)
    for emb_path in emb_files:
        number = emb_path.stem.rsplit("_", 1)[-1]
        meta_path = src / "metadata" / f"metadata_{number}.parquet"
        if not meta_path.is_file():
            raise InputError(f"{meta_path}: missing; clip-retrieval writes one metadata file per img_emb file")
        emb = _NpyRows(emb_path)
        meta = pq.ParquetFile(meta_path)
        n_rows = meta.metadata.num_rows
        if n_rows != len(emb) or emb.ndim != 2 or emb.shape[1] != collection.dim:
            raise InputError(f"{emb_path}: {emb.shape} vectors for {n_rows} metadata rows; the files do not match")
        text_path = src / "text_emb" / f"text_emb_{number}.npy"
        text = _NpyRows(text_path) if text_path.is_file() else None
        if text is not None and text.shape != emb.shape:
            raise InputError(f"{text_path}: shape {text.shape} does not match {emb_path} {emb.shape}")
        offset = 0
        for batch in meta.iter_batches(batch_size=CHUNK_ROWS):
            rows = batch.to_pylist()
            end = offset + len(rows)
            yield _clip_items(collection, rows, emb.rows(offset, end),
                              None if text is None else text.rows(offset, end), meta_path.name, offset, report), total
            offset = end


class _NpyRows:
    """Rows of a 2-d .npy file read on demand with seek + read: neither the whole array nor (as a
    memory map would) every page touched so far counts against the process's memory."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, self.dtype = read_header(f)
                self.offset = f.tell()
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        self.shape = tuple(shape)
        self.ndim = len(self.shape)
        self._fortran = bool(fortran)

    def __len__(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    def rows(self, start: int, stop: int) -> np.ndarray:
        if self._fortran or self.dtype.hasobject:
            return np.asarray(np.load(self.path, mmap_mode="r")[start:stop])
        width = int(np.prod(self.shape[1:], dtype=np.int64))
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * width * self.dtype.itemsize)
            out = np.fromfile(f, dtype=self.dtype, count=(stop - start) * width)
        if out.size != (stop - start) * width:
            raise InputError(f"{self.path}: the file ends before row {stop} of the {len(self)} its header declares")
        return out.reshape((stop - start, *self.shape[1:]))


def _clip_items(collection, rows: list[dict], emb_rows, text_rows, file_name: str, offset: int,
                report: TransferReport) -> list[NewItem]:
    """One chunk of clip-retrieval rows (metadata dicts, their image and optional text vectors) as items."""
    emb = l2_normalize(np.asarray(emb_rows, dtype=np.float32))
    captions: list[str | None] = [
        " ".join(c.split()) if isinstance(c := r.get("caption"), str) and c.strip() else None for r in rows]
    cap_vecs: Any
    if text_rows is not None:
        cap_vecs = l2_normalize(np.asarray(text_rows, dtype=np.float32))
    elif any(captions):
        wanted = list(dict.fromkeys(c for c in captions if c))
        encoded = dict(zip(wanted, collection.encoder.encode_texts(wanted)))
        cap_vecs = [encoded.get(c) if c else None for c in captions]
    else:
        cap_vecs = [None] * len(rows)
    items = []
    for n, r in enumerate(rows):
        uri = r.get("image_path") or r.get("url")
        if not isinstance(uri, str) or not uri:
            report.skipped.append((f"{file_name}:{offset + n}", "no image_path or url"))
            continue
        meta = {k: v for k, v in r.items() if k not in ("image_path", "caption") and _jsonable(v)}
        caption = captions[n]
        caps = [(caption, cap_vecs[n])] if caption else []
        items.append(NewItem(uri, r.get("sha256") or "", 0, 0, r.get("width"), r.get("height"),
                             emb[n], emb[n], {"source": "clip-retrieval", **meta}, caps, source="import"))
    return items


def _jsonable(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
