"""Which of ravl's optional extras a feature needs, and the one-line error when it is missing.

``pip install ravl`` installs only what the offline ``default`` encoder needs to index, search,
caption by consensus, serve and export (no torch). Everything else is an extra named in
``pyproject.toml``; a feature checks its modules here (found without importing them) and, when one
is missing, raises :class:`~ravl.errors.MissingExtraError` naming the extra to install.
"""
from __future__ import annotations

import importlib.util

from .errors import MissingExtraError


def install_hint(extra: str) -> str:
    return f"pip install 'ravl[{extra}]'"


def missing_modules(modules: tuple[str, ...] | list[str]) -> list[str]:
    """The top-level modules of ``modules`` that cannot be imported here (without importing them)."""
    out = []
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                out.append(module)
        except (ImportError, ValueError):
            out.append(module)
    return out


def require(what: str, modules: tuple[str, ...], install: str) -> None:
    """Raise :class:`MissingExtraError` (``"{what} needs X, Y: {install}"``) when a module is missing."""
    missing = missing_modules(modules)
    if missing:
        raise MissingExtraError(f"{what} needs {', '.join(missing)}: {install}")
