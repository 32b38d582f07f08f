"""Where ravl keeps its caches: arguments, then ``RAVL_*`` environment variables, then defaults."""
from __future__ import annotations

import os
from pathlib import Path


def ravl_home() -> Path:
    """The folder for caches (exported ONNX models, downloaded nothing). ``RAVL_HOME`` overrides."""
    home = os.environ.get("RAVL_HOME")
    path = Path(home).expanduser() if home else Path.home() / ".cache" / "ravl"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    """A sub-folder of :func:`ravl_home`, created on demand."""
    path = ravl_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        from .errors import ConfigError

        raise ConfigError(f"environment variable {name}={value!r} must be an integer") from exc
