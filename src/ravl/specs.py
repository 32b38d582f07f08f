"""Backend spec strings: ``family:name?key=value&key2=value2``.

Examples: ``default``, ``open_clip:ViT-B-32/laion2b_s34b_b79k``, ``hf:/models/clip-tiny``,
``openai:gpt-4o-mini?base_url=http://127.0.0.1:8080/v1``. A bare word with no colon is a family
with an empty name (``default``, ``consensus``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
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


# --- declared options ---------------------------------------------------------------------------
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_TYPE_NAMES = {str: "text", int: "integer", float: "number", bool: "1 or 0"}


@dataclass(frozen=True)
class Option:
    """One ``?key=value`` option a backend accepts.

    ``type`` is ``str``, ``int``, ``float`` or ``bool``; ``default`` is used when the option is
    absent or empty (None: the backend decides). ``fingerprint=False`` marks a runtime-only option
    (device, batch size, threads): it does not change the vectors, so it stays out of an encoder's
    fingerprint. ``choices`` and ``minimum`` restrict the value.
    """

    name: str
    type: type = str
    default: object = None
    help: str = ""
    fingerprint: bool = True
    choices: tuple[str, ...] = ()
    minimum: float | None = None

    def parse(self, raw: str, spec: Spec) -> object:
        where = f"option {self.name}={raw!r} in {str(spec)!r}"
        if self.type is bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise SpecError(f"{where} must be 1 or 0")
        if self.choices and raw not in self.choices:
            raise SpecError(f"{where} must be one of {', '.join(self.choices)}")
        try:
            value = self.type(raw)
        except ValueError:
            raise SpecError(f"{where} must be {'an integer' if self.type is int else 'a number'}") from None
        if self.minimum is not None and value < self.minimum:
            raise SpecError(f"{where} must be at least {self.minimum:g}")
        return value

    def to_dict(self) -> dict:
        return {"name": self.name, "type": _TYPE_NAMES.get(self.type, self.type.__name__), "default": self.default,
                "help": self.help, "fingerprint": self.fingerprint, "choices": list(self.choices),
                "minimum": self.minimum}


@dataclass(frozen=True)
class Declaration:
    """What a registry factory declares: its options, the modules it needs, how to install them."""

    options: tuple[Option, ...] = ()
    requires: tuple[str, ...] = ()
    install: str = ""


def declare(*options: Option, requires: tuple[str, ...] = (), install: str = ""):
    """Decorator for a registry factory ``create(spec)``: declares its options (and the modules it
    imports, with the command that installs them). The registry rejects unknown options and bad
    values before calling the factory, and ``ravl backends`` lists them."""
    def attach(factory):
        factory.declaration = Declaration(tuple(options), tuple(requires), install)
        return factory

    return attach


def parse_options(spec: Spec, options: tuple[Option, ...]) -> dict[str, Any]:
    """``spec``'s option values checked against ``options`` and typed, defaults filled in."""
    known = {o.name: o for o in options}
    unknown = sorted(set(spec.opts) - set(known))
    if unknown:
        raise SpecError(f"unknown option(s) {', '.join(unknown)} in {str(spec)!r}; "
                        f"known: {', '.join(known) or 'none'} (see 'ravl backends')")
    out: dict[str, Any] = {}
    for name, option in known.items():
        raw = spec.opts.get(name, "")
        out[name] = option.default if raw == "" else option.parse(raw, spec)
    return out


def fingerprint_spec(spec: Spec, options: tuple[Option, ...]) -> Spec:
    """``spec`` without its runtime-only options: what identifies an encoder's vectors."""
    runtime = {o.name for o in options if not o.fingerprint}
    return Spec(spec.family, spec.name, tuple(kv for kv in spec.options if kv[0] not in runtime))
