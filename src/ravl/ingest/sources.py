"""Dataset readers. Each turns a source into a list of :class:`Record` (an image path plus its
captions) before anything is written, so a malformed source fails fast and stores nothing.

Formats: a folder of images (recursive; ``name.txt`` beside ``name.jpg`` holds captions, one per
line), a JSONL or CSV manifest (``image`` plus ``caption`` or ``captions``), a COCO captions
JSON (``captions_val2014.json``; needs ``images_root``) and a Karpathy split JSON
(``dataset_coco.json``; ``split`` picks train/val/test/restval).
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SourceError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class Record:
    path: Path
    captions: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return str(self.path)


def _clean(captions: Iterable) -> list[str]:
    out: list[str] = []
    for c in captions:
        if not isinstance(c, str):
            continue
        text = " ".join(c.split())
        if text and text not in out:
            out.append(text)
    return out


def _merge(records: Iterable[Record]) -> list[Record]:
    """One record per image path, captions merged in order of appearance."""
    by_path: dict[Path, Record] = {}
    for rec in records:
        seen = by_path.get(rec.path)
        if seen is None:
            by_path[rec.path] = rec
        else:
            seen.captions = _clean(seen.captions + rec.captions)
            seen.metadata.update(rec.metadata)
    return list(by_path.values())


def read_folder(root: Path) -> list[Record]:
    records = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()):
        sidecar = path.with_suffix(".txt")
        captions: list[str] = []
        if sidecar.is_file():
            captions = _clean(sidecar.read_text(encoding="utf-8", errors="replace").splitlines())
        records.append(Record(path.resolve(), captions, {"source": "folder"}))
    return records


def _manifest_record(row: dict, base: Path, where: str) -> Record:
    image = row.get("image") or row.get("path") or row.get("file")
    if not image or not isinstance(image, str):
        raise SourceError(f"{where}: no 'image' field; each row needs \"image\" plus \"caption\" or \"captions\"")
    captions = row.get("captions", [])
    if isinstance(captions, str):
        try:
            captions = json.loads(captions) if captions.strip().startswith("[") else captions.split("|")
        except json.JSONDecodeError:
            captions = [captions]
    if not isinstance(captions, list):
        raise SourceError(f"{where}: 'captions' must be a list of strings")
    if row.get("caption"):
        captions = [row["caption"], *captions]
    meta = {k: v for k, v in row.items() if k not in ("image", "path", "file", "caption", "captions") and v not in ("", None)}
    path = Path(image).expanduser()
    return Record((path if path.is_absolute() else base / path).resolve(), _clean(captions), meta)


def read_jsonl(path: Path) -> list[Record]:
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}:{n}: invalid JSON ({exc.msg}); fix or remove that line") from None
            if not isinstance(row, dict):
                raise SourceError(f"{path}:{n}: each line must be a JSON object like {{\"image\": ..., \"caption\": ...}}")
            records.append(_manifest_record(row, path.parent, f"{path}:{n}"))
    return _merge(records)


def read_csv(path: Path) -> list[Record]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "image" not in reader.fieldnames:
            raise SourceError(f"{path}: the CSV header must have an 'image' column (and 'caption' or 'captions')")
        records = [_manifest_record(row, path.parent, f"{path}:{n}") for n, row in enumerate(reader, 2)]
    return _merge(records)


def read_coco(data: dict, path: Path, images_root: Path | None) -> list[Record]:
    root = images_root or path.parent
    captions: dict[int, list[str]] = {}
    for ann in data.get("annotations", []):
        captions.setdefault(ann.get("image_id"), []).append(ann.get("caption", ""))
    records = []
    for img in data["images"]:
        if "file_name" not in img or "id" not in img:
            raise SourceError(f"{path}: an entry of 'images' lacks 'id' or 'file_name'; is this a COCO captions file?")
        records.append(Record((root / img["file_name"]).resolve(), _clean(captions.get(img["id"], [])),
                              {"source": "coco", "coco_id": img["id"]}))
    if records and images_root is None and not any(r.path.exists() for r in records[:20]):
        raise SourceError(f"{path}: images such as {records[0].path.name} are not beside the JSON file; "
                          "pass --images-root DIR (the folder holding val2014/ or the image files)")
    return records


def karpathy_splits(data: dict) -> set[str]:
    return {img.get("split", "") for img in data.get("images", [])}


def read_karpathy(data: dict, path: Path, images_root: Path | None, split: str | None) -> list[Record]:
    splits = karpathy_splits(data)
    if split is not None and split not in splits:
        raise SourceError(f"{path}: unknown split {split!r}; this file has: {', '.join(sorted(splits))}")
    root = images_root or path.parent
    records = []
    for img in data["images"]:
        if split is not None and img.get("split") != split:
            continue
        rel = Path(img.get("filepath", "")) / img["filename"]
        caps = [s.get("raw") or " ".join(s.get("tokens", [])) for s in img.get("sentences", [])]
        meta = {"source": "karpathy", "split": img.get("split")}
        for key in ("cocoid", "imgid"):
            if key in img:
                meta[key] = img[key]
        records.append(Record((root / rel).resolve(), _clean(caps), meta))
    if records and images_root is None and not any(r.path.exists() for r in records[:20]):
        raise SourceError(f"{path}: images such as {records[0].path.name} are not found under {root}; "
                          "pass --images-root DIR (the folder that holds train2014/ and val2014/)")
    return records


def read_source(source: str | Path, *, images_root: str | Path | None = None, split: str | None = None) -> list[Record]:
    """Read one source of any supported kind into records (nothing is written)."""
    path = Path(source).expanduser()
    root = Path(images_root).expanduser().resolve() if images_root else None
    if root is not None and not root.is_dir():
        raise SourceError(f"--images-root {root} is not a folder")
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_folder(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return [Record(path.resolve(), [], {"source": "file"})]
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".csv":
        return read_csv(path)
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(data, dict) and isinstance(data.get("images"), list):
            first = data["images"][0] if data["images"] else {}
            if "sentences" in first or "filename" in first:
                return read_karpathy(data, path, root, split)
            if "annotations" in data:
                if split is not None:
                    raise SourceError(f"{path}: --split applies to Karpathy split files, not COCO caption files")
                return read_coco(data, path, root)
        raise SourceError(f"{path}: not a COCO captions file (images + annotations) nor a Karpathy split "
                          "(images with sentences); for a plain list use a .jsonl manifest")
    raise SourceError(f"{path}: unsupported source; give a folder, an image, .jsonl, .csv, COCO or Karpathy .json")


def read_sources(sources: Iterable[str | Path], *, images_root: str | Path | None = None,
                 split: str | None = None) -> list[Record]:
    """All records of several sources, one per image path (captions merged)."""
    return _merge(r for s in sources for r in read_source(s, images_root=images_root, split=split))
