"""Caption sidecars: ``name.txt`` beside ``name.jpg``.

The one rule (README, "Captions beside images"): every non-empty line is a caption of the image; a
line ``LOCALE.utf8=TEXT`` (Tux Paint's format, e.g. ``vi.utf8=Chanh bị cắt ra.`` or
``en_GB.utf8=A petunia.``) is a caption in that language, kept only when the language is one of the
collection's caption languages (English unless ``ravl index --caption-langs`` says otherwise).
Sidecar captions are stored with the source ``sidecar`` (``sidecar:LOCALE`` for tagged lines) and
replaced, not appended, when the sidecar changes.
"""
from __future__ import annotations

from collections.abc import Iterable

#: caption source of a sidecar's untagged lines; tagged lines use ``sidecar:LOCALE``
SIDECAR_SOURCE = "sidecar"
DEFAULT_LANGS: tuple[str, ...] = ("en",)


def parse_sidecar(text: str) -> list[tuple[str | None, str]]:
    """(locale or None, caption) for every non-empty line, in order."""
    out: list[tuple[str | None, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if sep and key.lower().endswith(".utf8") and " " not in key and len(key) <= 24:
            if value.strip():
                out.append((key[: -len(".utf8")], value.strip()))
        else:
            out.append((None, line))
    return out


def language(locale: str) -> str:
    """The language part of a locale: ``en_GB`` -> ``en``, ``sr@latin`` -> ``sr``."""
    for sep in ("_", "@", ".", "-"):
        locale = locale.split(sep, 1)[0]
    return locale.lower()


def parse_langs(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"en,fr"`` -> ``("en", "fr")``; None -> the default (English)."""
    if value is None:
        return DEFAULT_LANGS
    items = value.split(",") if isinstance(value, str) else list(value)
    langs = tuple(dict.fromkeys(language(v.strip()) for v in items if v.strip()))
    return langs or DEFAULT_LANGS


def source_tag(locale: str | None) -> str:
    return f"{SIDECAR_SOURCE}:{locale}" if locale else SIDECAR_SOURCE


def is_sidecar_source(source: str) -> bool:
    return source == SIDECAR_SOURCE or source.startswith(SIDECAR_SOURCE + ":")


def wanted(tagged: dict[str, str], captions: Iterable[str], langs: Iterable[str]) -> list[str]:
    """The captions to index: untagged ones, and tagged ones in one of ``langs``."""
    keep = set(langs)
    return [c for c in captions if c not in tagged or language(tagged[c]) in keep]
