"""Backend registry: spec family -> factory, for encoders and generators alike.

Every backend, built-in or third-party, is declared the same way: an entry point in the
``ravl.encoders`` / ``ravl.generators`` / ``ravl.image_generators`` / ``ravl.translators`` group whose value is
``module:factory`` (ravl's own are declared in its ``pyproject.toml``). :func:`register` adds one at
run time (tests, notebooks). A factory takes a :class:`~ravl.specs.Spec` and returns the backend
object; nothing heavy is imported until a spec asks for it. Scanning the installed packages' entry
points costs ~0.2 s, so ravl's own families are looked up in ``_BUILTIN`` (a mirror of its entry
points that a test keeps in step) and the scan happens only for other families; a plugin cannot
shadow a built-in name.

A factory declares its options with :func:`ravl.specs.declare`; the registry checks a spec's options
against the declaration (unknown keys, wrong types) before calling the factory; a factory that
fails on a missing library (``ImportError``) is reported as :class:`~ravl.errors.MissingExtraError`
with its declared install command (the extra to install), after its own checks of the spec (a
missing model file is named first). :func:`describe` lists every family with its options and
whether it can run here; a factory may add what only a look at this machine can tell (a program on
PATH, the installed language pairs) through a ``describe_here()`` attribute returning
``usable``/``why_not``/``detail``.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

from .errors import ConfigError, UnknownBackendError
from .extras import missing_modules, require
from .specs import Declaration, Spec, parse_options, parse_spec

Factory = Callable[[Spec], Any]

KINDS = ("encoders", "generators", "image_generators", "translators")

# ravl's own entry points (looked up here without scanning installed packages, and used where the
# installed metadata lacks them, e.g. a checkout run through PYTHONPATH).
# Keep in step with [project.entry-points] in pyproject.toml (a test checks).
_BUILTIN: dict[str, dict[str, str]] = {
    "encoders": {
        "default": "ravl.encoders.default:create",
        "open_clip": "ravl.encoders.open_clip_backend:create",
        "hf": "ravl.encoders.hf_backend:create",
    },
    "generators": {
        "consensus": "ravl.generate.consensus:create",
        "hf": "ravl.generate.hf_backend:create",
        "openai": "ravl.generate.openai_backend:create",
        "llamacpp": "ravl.generate.llamacpp_backend:create",
        "smollm2": "ravl.generate.smollm2:create",
    },
    "image_generators": {
        "diffusers": "ravl.generate.images.diffusers_backend:create",
        "openai_images": "ravl.generate.images.openai_images:create",
        "a1111": "ravl.generate.images.a1111:create",
        "sdcpp": "ravl.generate.images.sdcpp_backend:create",
    },
    "translators": {
        "apertium": "ravl.generate.translate.apertium:create",
    },
}
_REGISTERED: dict[str, dict[str, Factory | str]] = {kind: {} for kind in KINDS}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"backend kind must be one of {', '.join(KINDS)}, not {kind!r}")


def register(kind: str, family: str, factory: Factory | str) -> None:
    """Register ``factory`` (a callable or a ``module:attr`` string) for ``family``; it takes
    precedence over a built-in or an entry point of the same name."""
    _check_kind(kind)
    _REGISTERED[kind][family] = factory


@cache
def _entry_points(kind: str) -> dict[str, tuple[str, str]]:
    """family -> (``module:attr``, distribution) from the installed packages' metadata."""
    from importlib.metadata import entry_points  # scanning installed packages costs ~0.2 s: only when needed

    out = {}
    for ep in entry_points(group=f"ravl.{kind}"):
        dist = getattr(ep, "dist", None)
        out[ep.name] = (ep.value, getattr(dist, "name", "") or "")
    return out


def _table(kind: str) -> dict[str, tuple[Factory | str, str]]:
    """family -> (target, origin): plugins, then ravl's own (which plugins cannot shadow), then runtime registrations."""
    table: dict[str, tuple[Factory | str, str]] = {
        f: (value, dist or "entry point") for f, (value, dist) in _entry_points(kind).items()}
    table.update({f: (t, "ravl") for f, t in _BUILTIN[kind].items()})
    table.update({f: (t, "registered") for f, t in _REGISTERED[kind].items()})
    return table


def families(kind: str) -> list[str]:
    """All families known for ``kind``: ravl's own, plugins' and runtime-registered."""
    _check_kind(kind)
    return sorted(_table(kind))


def _resolve(target: Factory | str) -> Factory:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def factory_for(kind: str, spec: Spec) -> Factory:
    _check_kind(kind)
    # runtime registrations win, then built-ins (without scanning the installed packages), then plugins
    if spec.family in _REGISTERED[kind]:
        return _resolve(_REGISTERED[kind][spec.family])
    if spec.family in _BUILTIN[kind]:
        return _resolve(_BUILTIN[kind][spec.family])
    table = _table(kind)
    if spec.family not in table:
        noun = kind[:-1].replace("_", " ")
        raise UnknownBackendError(
            f"unknown {noun} backend {spec.family!r}; known {noun} backends: {', '.join(families(kind))}"
        )
    return _resolve(table[spec.family][0])


def declaration(factory: Factory) -> Declaration:
    """What ``factory`` declares (an empty declaration when it declares nothing)."""
    found = getattr(factory, "declaration", None)
    return found if isinstance(found, Declaration) else Declaration()


def create(kind: str, spec: str | Spec) -> Any:
    """Build the backend named by ``spec`` (a string or a parsed :class:`Spec`)."""
    parsed = spec if isinstance(spec, Spec) else parse_spec(spec)
    factory = factory_for(kind, parsed)
    declared = getattr(factory, "declaration", None)
    if isinstance(declared, Declaration):
        parse_options(parsed, declared.options)  # unknown keys and bad values fail here, with the choices
    try:
        return factory(parsed)
    except ImportError:  # a library the factory needs is missing: name the extra that brings it, in one line
        if isinstance(declared, Declaration) and declared.requires:
            require(f"{kind[:-1].replace('_', ' ')} backend {parsed.family!r}", declared.requires,
                    declared.install or "pip install the packages it needs")
        raise


def with_option(kind: str, spec: str, name: str, value: object) -> str:
    """``spec`` with ``?name=value`` added when its family declares that option and the spec does
    not set it already (e.g. ``ravl serve --threads`` for encoders that take ``threads``)."""
    parsed = parse_spec(spec)
    options = declaration(factory_for(kind, parsed)).options
    if name in parsed.opts or name not in {o.name for o in options}:
        return spec
    return str(Spec(parsed.family, parsed.name, (*parsed.options, (name, str(value)))))


def describe(kind: str) -> list[dict]:
    """Every family of ``kind``: where it comes from, its summary, declared options, and whether it
    can run here (``usable``; ``why_not`` says what is missing). Imports no model library."""
    _check_kind(kind)
    out = []
    for family, (target, origin) in sorted(_table(kind).items()):
        row: dict[str, Any] = {"kind": kind[:-1], "family": family, "origin": origin,
                               "factory": target if isinstance(target, str) else repr(target)}
        try:
            factory = factory_for(kind, Spec(family))
        except Exception as exc:  # a broken plugin must not hide the others
            row.update(summary="", options=[], usable=False, why_not=f"cannot load its factory: {exc}")
            out.append(row)
            continue
        declared = declaration(factory)
        doc = (getattr(factory, "__doc__", None) or "").strip().splitlines()
        missing = missing_modules(declared.requires)
        why_not = ""
        if missing:
            why_not = f"needs {', '.join(missing)}" + (f": {declared.install}" if declared.install else "")
        row.update(summary=doc[0] if doc else "", options=[o.to_dict() for o in declared.options],
                   declared=isinstance(getattr(factory, "declaration", None), Declaration),
                   usable=not missing, why_not=why_not)
        here = getattr(factory, "describe_here", None)
        if callable(here) and not missing:
            extra = here()
            row.update(usable=bool(extra.get("usable", True)), why_not=extra.get("why_not", ""))
            if extra.get("detail"):
                row["detail"] = extra["detail"]  # this machine's state: kept out of the generated docs
        out.append(row)
    return out
