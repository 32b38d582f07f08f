"""Dataset readers. Each turns a source into a list of :class:`Record` (an image path plus its
captions) before anything is written, so a malformed source fails fast and stores nothing.

Formats: a folder of images (recursive; ``name.txt`` beside ``name.jpg`` holds captions, one per
line), a JSONL or CSV manifest (``image`` plus ``caption`` or ``captions``), a COCO captions
JSON (``captions_val2014.json``; needs ``images_root``) and a Karpathy split JSON
(``dataset_coco.json``; ``split`` picks train/val/test/restval); an npm ``emoji-datasource-*``
package folder (:mod:`ravl.ingest.emoji`).
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SourceError
from ..inputs import parse_json, read_text
from .folders import IMAGE_EXTENSIONS, FolderScan, scan_folder
from .record import Record, clean_captions


def _image_name(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SourceError(f"{where}: the image file name must be a non-empty string, got {value!r:.60}")
    if "\0" in value:
        raise SourceError(f"{where}: the image file name contains a NUL byte")
    return value


def _under_root(root: Path, name: str, where: str, confine: bool) -> Path:
    """``root / name`` resolved; with ``confine`` (an explicit --images-root) it must stay inside
    root (checked on the path as written, so symlinked sub-folders still work)."""
    joined = Path(os.path.normpath(root / name))
    if confine and not (joined == root or joined.is_relative_to(root)):
        raise SourceError(f"{where}: image {name!r} lies outside --images-root {root}; file names in COCO and "
                          "Karpathy files must be relative to it")
    return joined.resolve()


_clean = clean_captions


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
            seen.caption_locales.update(rec.caption_locales)
    return list(by_path.values())


def read_folder(root: Path) -> list[Record]:
    return scan_folder(root).records


def _manifest_record(row: dict, base: Path, where: str) -> Record:
    image = row.get("image") or row.get("path") or row.get("file")
    if not image or not isinstance(image, str):
        raise SourceError(f"{where}: no 'image' field; each row needs \"image\" plus \"caption\" or \"captions\"")
    _image_name(image, where)
    captions = row.get("captions", [])
    if isinstance(captions, str):
        try:
            captions = json.loads(captions) if captions.strip().startswith("[") else captions.split("|")
        except (ValueError, RecursionError):  # not JSON after all (or absurd): the text is the caption
            captions = [captions]
    if not isinstance(captions, list):
        raise SourceError(f"{where}: 'captions' must be a list of strings")
    if row.get("caption"):
        if not isinstance(row["caption"], str):
            raise SourceError(f"{where}: 'caption' must be a string")
        captions = [row["caption"], *captions]
    meta = {k: v for k, v in row.items() if k not in ("image", "path", "file", "caption", "captions") and v not in ("", None)}
    path = Path(image).expanduser()
    return Record((path if path.is_absolute() else base / path).resolve(), _clean(captions), meta)


def read_jsonl(path: Path) -> list[Record]:
    records = []
    for n, line in enumerate(read_text(path, "manifest").splitlines(), 1):
        if not line.strip():
            continue
        row = parse_json(line, f"{path}:{n}")
        if not isinstance(row, dict):
            raise SourceError(f"{path}:{n}: each line must be a JSON object like {{\"image\": ..., \"caption\": ...}}")
        records.append(_manifest_record(row, path.parent, f"{path}:{n}"))
    return _merge(records)


def read_csv(path: Path) -> list[Record]:
    reader = csv.DictReader(io.StringIO(read_text(path, "manifest"), newline=""))
    try:
        if not reader.fieldnames or "image" not in reader.fieldnames:
            raise SourceError(f"{path}: the CSV header must have an 'image' column (and 'caption' or 'captions')")
        records = [_manifest_record({k: v for k, v in row.items() if isinstance(k, str)}, path.parent, f"{path}:{n}")
                   for n, row in enumerate(reader, 2)]
    except csv.Error as exc:
        raise SourceError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return _merge(records)


def _coco_id(value, where: str):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SourceError(f"{where}: ids must be numbers or strings, got {type(value).__name__}")
    return value


def read_coco(data: dict, path: Path, images_root: Path | None) -> list[Record]:
    root = images_root or path.parent.resolve()
    captions: dict[int | str, list[str]] = {}
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise SourceError(f"{path}: 'annotations' must be a list of {{\"image_id\", \"caption\"}} objects")
    for n, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise SourceError(f"{path}: annotations[{n}] must be an object with 'image_id' and 'caption'")
        caption = ann.get("caption", "")
        if not isinstance(caption, str):
            raise SourceError(f"{path}: annotations[{n}].caption must be a string")
        captions.setdefault(_coco_id(ann["image_id"], f"{path}: annotations[{n}].image_id"), []).append(caption)
    records = []
    for n, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "file_name" not in img or "id" not in img:
            raise SourceError(f"{path}: images[{n}] lacks 'id' or 'file_name'; is this a COCO captions file?")
        where = f"{path}: images[{n}]"
        image_id = _coco_id(img["id"], f"{where}.id")
        file = _under_root(root, _image_name(img["file_name"], f"{where}.file_name"), where, images_root is not None)
        records.append(Record(file, _clean(captions.get(image_id, [])), {"source": "coco", "coco_id": image_id}))
    if records and images_root is None and not any(r.path.exists() for r in records[:20]):
        raise SourceError(f"{path}: images such as {records[0].path.name} are not beside the JSON file; "
                          "pass --images-root DIR (the folder holding val2014/ or the image files)")
    return records


def karpathy_splits(data: dict) -> set[str]:
    return {str(img.get("split", "")) for img in data.get("images", []) if isinstance(img, dict)}


def _karpathy_captions(sentences, where: str) -> list:
    if not isinstance(sentences, list):
        raise SourceError(f"{where}.sentences must be a list")
    out = []
    for s in sentences:
        if isinstance(s, str):  # a plain string is taken as the sentence itself
            out.append(s)
        elif isinstance(s, dict):
            tokens = s.get("tokens", [])
            out.append(s.get("raw") or (" ".join(t for t in tokens if isinstance(t, str))
                                        if isinstance(tokens, list) else ""))
        else:
            raise SourceError(f"{where}.sentences holds a {type(s).__name__}; expected {{\"raw\": ...}} objects")
    return out


def read_karpathy(data: dict, path: Path, images_root: Path | None, split: str | None) -> list[Record]:
    splits = karpathy_splits(data)
    if split is not None and split not in splits:
        raise SourceError(f"{path}: unknown split {split!r}; this file has: {', '.join(sorted(splits))}")
    root = images_root or path.parent.resolve()
    records = []
    for n, img in enumerate(data["images"]):
        where = f"{path}: images[{n}]"
        if not isinstance(img, dict) or "filename" not in img:
            raise SourceError(f"{where} lacks 'filename'; is this a Karpathy split file?")
        if split is not None and img.get("split") != split:
            continue
        folder = img.get("filepath", "")
        if not isinstance(folder, str) or "\0" in folder:
            raise SourceError(f"{where}.filepath must be a string")
        rel = os.path.join(folder, _image_name(img["filename"], f"{where}.filename"))
        caps = _karpathy_captions(img.get("sentences", []), where)
        meta = {"source": "karpathy", "split": img.get("split")}
        for key in ("cocoid", "imgid"):
            if key in img:
                meta[key] = img[key]
        records.append(Record(_under_root(root, rel, where, images_root is not None), _clean(caps), meta))
    if records and images_root is None and not any(r.path.exists() for r in records[:20]):
        raise SourceError(f"{path}: images such as {records[0].path.name} are not found under {root}; "
                          "pass --images-root DIR (the folder that holds train2014/ and val2014/)")
    return records


def read_source(source: str | Path, *, images_root: str | Path | None = None, split: str | None = None) -> list[Record]:
    """Read one source of any supported kind into records (nothing is written)."""
    if "\0" in str(source) or (images_root and "\0" in str(images_root)):
        raise SourceError("a source path contains a NUL byte")
    path = Path(source).expanduser()
    root = Path(images_root).expanduser().resolve() if images_root else None
    if root is not None and not root.is_dir():
        raise SourceError(f"--images-root {root} is not a folder")
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        from .emoji import is_emoji_datasource, read_emoji_datasource

        return read_emoji_datasource(path) if is_emoji_datasource(path) else read_folder(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return [Record(path.resolve(), [], {"source": "file"})]
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".csv":
        return read_csv(path)
    if suffix == ".json":
        data = parse_json(read_text(path, "JSON file"), str(path))
        if isinstance(data, dict) and isinstance(data.get("images"), list):
            first = data["images"][0] if data["images"] else {}
            if not isinstance(first, dict):
                raise SourceError(f"{path}: 'images' must hold objects (COCO: id + file_name; Karpathy: filename + "
                                  "sentences)")
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


@dataclass
class SourceScan:
    """What reading some sources found: the records, and for each folder source what a sync needs
    (:class:`~ravl.ingest.folders.FolderScan`); ``sync_all``: every item not among the records goes
    (``ravl index --sync``), not only those under a folder source."""
    sources: list[str]
    records: list[Record]
    folders: list[FolderScan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sync_all: bool = False


def scan_sources(sources: Iterable[str | Path], *, images_root: str | Path | None = None, split: str | None = None,
                 exclude: Iterable[str | Path] = ()) -> SourceScan:
    """:func:`read_sources`, keeping what each folder's scan found; folders in ``exclude`` (the
    collection's own folder) are left out of the scan, with a note when one lay inside a source."""
    names = [str(s) for s in sources]
    left_out = tuple(Path(e).expanduser().resolve() for e in exclude)
    folders: list[FolderScan] = []
    records: list[Record] = []
    notes: list[str] = []
    for source in names:
        path = Path(source).expanduser()
        if "\0" not in source and path.is_dir():
            from .emoji import is_emoji_datasource

            if not is_emoji_datasource(path):
                scan = scan_folder(path, left_out)
                folders.append(scan)
                records += scan.records
                for folder in left_out:
                    if folder.is_relative_to(scan.root):
                        notes.append(f"the collection folder {folder} lies inside {scan.root}, a folder being "
                                     "indexed; it is left out of the scan (keep collections outside photo folders)")
                continue
        records += read_source(source, images_root=images_root, split=split)
    return SourceScan(names, _merge(records), folders, notes)
