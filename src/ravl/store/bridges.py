"""Tuned-bridge files inside a collection folder: ``bridge/bridge-<sha>.safetensors``.

The database's meta table names the file in use and its sha256 (written in the same transaction
that bumps the generation, so index caches rebuild); the file is written first, atomically, so a
crash never leaves the meta pointing at a partial file. A file whose digest differs is refused.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import BridgeError
from ..fsutil import atomic_write_bytes

FOLDER = "bridge"


def write_file(collection_path: Path, data: bytes) -> tuple[str, str]:
    """Write ``data`` under the collection; returns (file name, sha256)."""
    sha = hashlib.sha256(data).hexdigest()
    folder = collection_path / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    name = f"bridge-{sha[:16]}.safetensors"
    atomic_write_bytes(folder / name, data)
    return name, sha


def read_file(collection_path: Path, name: str, sha: str) -> bytes:
    """The stored bridge's bytes, verified against the digest recorded in the database."""
    path = collection_path / FOLDER / Path(name).name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BridgeError(f"the collection's tuned bridge {path} cannot be read ({exc.strerror}); run "
                          f"'ravl tune --collection {collection_path} --reset' to return to the base encoder") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise BridgeError(f"the collection's tuned bridge {path} is damaged (its sha256 does not match the one "
                          f"recorded); run 'ravl tune --collection {collection_path} --reset' (and tune again)")
    return data


def remove_others(collection_path: Path, keep: str | None) -> None:
    """Delete bridge files other than ``keep`` (left behind by resets or interrupted runs)."""
    folder = collection_path / FOLDER
    if not folder.is_dir():
        return
    for path in folder.glob("bridge-*"):
        if path.name != keep:
            try:
                path.unlink()
            except OSError:
                pass
