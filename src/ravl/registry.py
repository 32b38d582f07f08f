"""Backend registry: spec family -> factory, for encoders and generators alike.

Built-in backends are registered by dotted path so that nothing heavy is imported until a spec
asks for it. Third-party packages register through the same mechanism, either by calling
:func:`register` or with an entry point in the ``ravl.encoders`` / ``ravl.generators`` /
``ravl.image_generators`` group whose value is ``module:factory`` (entry points are scanned only
for a family that is not built in or registered at run time, so they cannot shadow a built-in
name). A factory takes a :class:`~ravl.specs.Spec` and returns the
backend object.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

from .errors import UnknownBackendError
from .specs import Spec, parse_spec

Factory = Callable[[Spec], Any]

KINDS = ("encoders", "generators", "image_generators")

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
}
_REGISTERED: dict[str, dict[str, Factory | str]] = {kind: {} for kind in KINDS}


def register(kind: str, family: str, factory: Factory | str) -> None:
    """Register ``factory`` (a callable or a ``module:attr`` string) for ``family``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    _REGISTERED[kind][family] = factory


@cache
def _entry_points(kind: str) -> dict[str, str]:
    from importlib.metadata import entry_points  # scanning installed packages costs ~0.2 s: only when needed

    return {ep.name: ep.value for ep in entry_points(group=f"ravl.{kind}")}


def families(kind: str) -> list[str]:
    """All families known for ``kind``: built-in, plugin and runtime-registered."""
    return sorted({*_BUILTIN[kind], *_entry_points(kind), *_REGISTERED[kind]})


def _resolve(target: Factory | str) -> Factory:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def factory_for(kind: str, spec: Spec) -> Factory:
    # runtime registrations win, then built-ins (without scanning the installed packages), then plugins
    if spec.family in _REGISTERED[kind]:
        return _resolve(_REGISTERED[kind][spec.family])
    if spec.family in _BUILTIN[kind]:
        return _resolve(_BUILTIN[kind][spec.family])
    table = _entry_points(kind)
    if spec.family not in table:
        noun = kind[:-1].replace("_", " ")
        raise UnknownBackendError(
            f"unknown {noun} backend {spec.family!r}; known {noun} backends: {', '.join(families(kind))}"
        )
    return _resolve(table[spec.family])


def create(kind: str, spec: str | Spec) -> Any:
    """Build the backend named by ``spec`` (a string or a parsed :class:`Spec`)."""
    parsed = spec if isinstance(spec, Spec) else parse_spec(spec)
    return factory_for(kind, parsed)(parsed)
