"""Tux Paint stamps (Debian ``tuxpaint-stamps-default``) as a small captioned image set.

Each stamp is ``name.png`` with a sidecar ``name.txt``: the first line is the English
description, further lines are translations such as ``fr.utf8=Un corbeau.``. Mirrored variants
(``name_mirror.png``) and SVG-only stamps are skipped. The symbol folders that hold letters,
digits, chess pieces, coins and math operators are left out by default: they are not pictures
of things, and no ImageNet concept describes them.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SourceError
from .sidecar import parse_sidecar

STAMPS_ROOT = Path("/usr/share/tuxpaint/stamps")
#: folder prefixes (relative to the stamps root) left out by default
DEFAULT_EXCLUDE: tuple[str, ...] = ("symbols/alphabets", "symbols/chess", "symbols/math", "symbols/money")


@dataclass(frozen=True)
class Stamp:
    image: Path  # the PNG
    description: str  # English, from the sidecar's first line
    translations: dict[str, str] = field(default_factory=dict, hash=False, compare=False, repr=False)  # locale -> text
    category: str = ""  # folder relative to the stamps root, e.g. "animals/birds"

    @property
    def relpath(self) -> str:
        """The image path relative to the stamps root, e.g. ``animals/birds/crow.png``."""
        return f"{self.category}/{self.image.name}" if self.category else self.image.name


def _excluded(category: str, exclude: Iterable[str]) -> bool:
    return any(category == p.strip("/") or category.startswith(p.strip("/") + "/") for p in exclude)


def _read_sidecar(path: Path) -> tuple[str, dict[str, str]]:
    english, translations = "", {}
    for locale, text in parse_sidecar(path.read_text(encoding="utf-8", errors="replace")):
        if locale:
            translations[locale] = text
        elif not english:
            english = text
    return english, translations


def load_stamps(root: Path | str = STAMPS_ROOT, exclude: Iterable[str] = DEFAULT_EXCLUDE) -> list[Stamp]:
    """All PNG stamps with an English description under ``root``, sorted by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(
            f"Tux Paint stamps not found at {root}: install them with "
            "'apt-get install tuxpaint-stamps-default' or pass the folder that holds them"
        )
    exclude = tuple(exclude)
    stamps = []
    for png in sorted(root.rglob("*.png")):
        if png.stem.endswith("_mirror"):
            continue
        sidecar = png.with_suffix(".txt")
        category = png.parent.relative_to(root).as_posix()
        category = "" if category == "." else category
        if not sidecar.is_file() or _excluded(category, exclude):
            continue
        english, translations = _read_sidecar(sidecar)
        if english:
            stamps.append(Stamp(png, english, translations, category))
    if not stamps:
        raise SourceError(
            f"no Tux Paint stamps (PNG + .txt description) under {root}: "
            "reinstall with 'apt-get install --reinstall tuxpaint-stamps-default'"
        )
    return stamps


def _bucket(stamp: Stamp) -> int:
    return hashlib.sha256(stamp.relpath.encode("utf-8")).digest()[0] & 1


def split_half(stamps: Iterable[Stamp]) -> tuple[list[Stamp], list[Stamp]]:
    """Deterministic split by a hash of each stamp's relative path: ``(select, report)``."""
    select: list[Stamp] = []
    report: list[Stamp] = []
    for stamp in stamps:
        (select if _bucket(stamp) == 0 else report).append(stamp)
    return select, report
