"""Backend spec strings: ``family:name?key=value&key2=value2``.

Examples: ``default``, ``open_clip:ViT-B-32/laion2b_s34b_b79k``, ``hf:/models/clip-tiny``,
``openai:gpt-4o-mini?base_url=http://127.0.0.1:8080/v1``. A bare word with no colon is a family
with an empty name (``default``, ``consensus``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from .errors import SpecError


@dataclass(frozen=True)
class Spec:
    family: str
    name: str = ""
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def opts(self) -> dict[str, str]:
        return dict(self.options)

    def __str__(self) -> str:
        text = self.family if not self.name else f"{self.family}:{self.name}"
        if self.options:
            text += "?" + urlencode(sorted(self.options), safe=":/")
        return text


def parse_spec(text: str) -> Spec:
    """Parse a spec string; raises :class:`SpecError` with an example when malformed."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("empty backend spec: use e.g. 'default' or 'open_clip:ViT-B-32/laion2b_s34b_b79k'")
    text = text.strip()
    query = ""
    if "?" in text:
        text, query = text.split("?", 1)
    family, sep, name = text.partition(":")
    family = family.strip().lower().replace("-", "_")
    if not family or not family.replace("_", "").isalnum():
        raise SpecError(f"bad backend spec {text!r}: it must start with a family name such as 'hf:' or 'open_clip:'")
    if sep and not name:
        raise SpecError(f"backend spec {text!r} names no model after '{family}:'")
    try:
        options = tuple(sorted(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))))
    except ValueError as exc:
        raise SpecError(f"bad options {query!r} in spec {text!r}: write them as ?key=value&key2=value2") from exc
    return Spec(family=family, name=name.strip(), options=options)
