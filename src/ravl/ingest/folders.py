"""Reading a folder of images: every image file under it (recursively), with the captions of its
``name.txt`` sidecar (:mod:`.sidecar`), plus what a sync needs to know: which sub-folders could
not be read (their items are kept, never taken for deleted), which files were passed over and why,
and which folders were left out (a collection folder inside the folder being indexed)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .record import Record, clean_captions
from .sidecar import SIDECAR_SOURCE, parse_sidecar

#: file extensions read as images (the content is checked again when the file is opened)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
#: files that are never reported as skipped: sidecars and the usual companions of photos
#: the database file that marks a ravl collection folder (kept out of every scan)
COLLECTION_DB = "ravl.sqlite"
_QUIET = {".txt", ".xmp", ".json", ".aae", ".ds_store", ".thm", ".db", ".ini"}


@dataclass
class FolderScan:
    root: Path
    records: list[Record] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)  # sub-folders (or the root) that could not be listed
    excluded: list[Path] = field(default_factory=list)  # folders left out (a collection inside the folder)
    other_files: list[Path] = field(default_factory=list)  # files with an extension that is not an image's

    def covers(self, uri: str) -> bool:
        """True when ``uri`` lies under this folder in a part that was read (not unreadable, not
        left out): an item there without a record has lost its file."""
        path = Path(uri)
        if not path.is_relative_to(self.root):
            return False
        return not any(path.is_relative_to(p) for p in self.unreadable + self.excluded)


def read_sidecar_captions(path: Path) -> tuple[list[str], dict[str, str]]:
    """(captions, caption -> locale) of the sidecar beside image ``path`` (none when absent)."""
    sidecar = path.with_suffix(".txt")
    try:
        if not sidecar.is_file():
            return [], {}
        lines = parse_sidecar(sidecar.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return [], {}
    captions = clean_captions(text for _, text in lines)
    untagged = {" ".join(text.split()) for locale, text in lines if not locale}
    locales: dict[str, str] = {}
    for locale, text in lines:
        text = " ".join(text.split())
        if locale and text not in untagged:  # a line also given untagged is the untagged caption
            locales.setdefault(text, locale)
    return captions, {c: loc for c, loc in locales.items() if c in captions}


def folder_record(path: Path) -> Record:
    """The record of one image file of a folder (its sidecar's captions included)."""
    captions, locales = read_sidecar_captions(path)
    return Record(path.resolve(), captions, {"source": "folder"}, caption_source=SIDECAR_SOURCE,
                  caption_locales=locales)


def _is_collection(folder: Path) -> bool:
    try:
        return (folder / COLLECTION_DB).is_file()
    except OSError:  # a folder this user cannot enter: os.walk reports it as unreadable
        return False


def scan_folder(root: Path, exclude: tuple[Path, ...] = ()) -> FolderScan:
    """Every image under ``root``, sorted; folders in ``exclude`` (resolved) are left out."""
    root = root.resolve()
    scan = FolderScan(root)
    paths: list[Path] = []

    def unreadable(exc: OSError) -> None:
        scan.unreadable.append(Path(exc.filename).resolve() if exc.filename else root)

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=False):
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            sub = (here / d)
            if any(sub.resolve() == e for e in exclude):
                scan.excluded.append(sub.resolve())
            elif _is_collection(sub):  # another ravl collection: its thumbnails are not photos
                scan.excluded.append(sub.resolve())
            else:
                keep.append(d)
        dirs[:] = keep
        for name in files:
            path = here / name
            suffix = path.suffix.lower()
            if suffix in IMAGE_EXTENSIONS:
                paths.append(path)
            elif suffix not in _QUIET and not name.startswith("."):
                scan.other_files.append(path)
    for path in sorted(paths):
        try:
            if not path.is_file():
                continue
        except OSError:
            continue
        scan.records.append(folder_record(path))
    return scan
