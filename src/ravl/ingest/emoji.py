"""Reader for the emoji datasets on npm: ``emoji-datasource-google`` (Noto Emoji, Apache-2.0) and
``emoji-datasource-twitter`` (Twemoji, CC-BY 4.0) ship the same ~1,900 emoji as 64-px PNGs with an
``emoji.json`` of names. When ``cldr-annotations-full`` (Unicode licence) sits beside the package
(same ``node_modules``), its English keywords become a second caption and its names in every
locale are kept in the metadata (``names``) for multilingual evaluation.

``ravl index node_modules/emoji-datasource-google`` reads one package; skin-tone variants are left
out (their names repeat the base emoji's).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import SourceError
from .record import Record

CLDR = "cldr-annotations-full"


def is_emoji_datasource(folder: Path) -> bool:
    return (folder / "emoji.json").is_file() and (folder / "img").is_dir()


def emoji_char(unified: str) -> str:
    return "".join(chr(int(cp, 16)) for cp in unified.split("-"))


def cldr_annotations(node_modules: Path, locale: str) -> dict[str, dict]:
    """emoji -> {"default": [keywords], "tts": [name]} for ``locale`` (empty when not installed)."""
    path = node_modules / CLDR / "annotations" / locale / "annotations.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["annotations"]["annotations"]
    except (OSError, ValueError, KeyError):
        return {}


def cldr_locales(node_modules: Path) -> list[str]:
    folder = node_modules / CLDR / "annotations"
    return sorted(p.name for p in folder.iterdir() if (p / "annotations.json").is_file()) if folder.is_dir() else []


def _lookup(table: dict, char: str) -> dict:
    return table.get(char) or table.get(char.replace("\ufe0f", "")) or {}


def read_emoji_datasource(folder: Path, locales: tuple[str, ...] = ()) -> list[Record]:
    """One record per emoji that has an image in this package's art style."""
    try:
        entries = json.loads((folder / "emoji.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"{folder / 'emoji.json'}: cannot read the emoji list ({exc})") from None
    sets = [p.name for p in (folder / "img").iterdir() if (p / "64").is_dir()]
    if len(sets) != 1:
        raise SourceError(f"{folder}: expected one art style under img/ (google, twitter, ...), found {sets or 'none'}")
    style = sets[0]
    english = cldr_annotations(folder.parent, "en")
    others = {loc: cldr_annotations(folder.parent, loc) for loc in locales}
    records = []
    for e in entries:
        if not isinstance(e, dict) or not e.get(f"has_img_{style}") or not e.get("image") or not e.get("name"):
            continue
        path = folder / "img" / style / "64" / e["image"]
        char = emoji_char(e.get("unified", ""))
        name = " ".join(e["name"].lower().split())
        captions = [name]
        keywords = _lookup(english, char).get("default", [])
        if keywords:
            captions.append(", ".join(keywords))
        names = {loc: _lookup(table, char).get("tts", [None])[0] for loc, table in others.items()}
        meta = {"source": "emoji", "style": style, "emoji": char, "category": e.get("category"),
                "subcategory": e.get("subcategory"), "short_names": e.get("short_names", [])}
        if names:
            meta["names"] = {loc: n for loc, n in names.items() if n}
        records.append(Record(path.resolve(), captions, meta))
    if not records:
        raise SourceError(f"{folder}: no emoji images listed in emoji.json were found for style {style!r}")
    return records
