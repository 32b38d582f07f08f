"""File digests memoised by file identity, so large files are not re-hashed on every start-up.

A digest is remembered under ``cache_dir('digests')`` together with the file's identity (size,
mtime, ctime, inode, device: what git's index compares), and recomputed when any of those
changed. A file changed within the last few seconds is never memoised, because it could change
again within the file system's timestamp resolution without its identity changing (git's "racy"
rule). Used for the ONNX caches (:mod:`ravl.encoders.onnx_cache`) and the ImageNet class data.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import cache_dir
from .fsutil import atomic_write_bytes

#: a file modified more recently than this is hashed on every use until it settles
RACY_NS = 3_000_000_000


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def same_identity(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stats are of the same file, unchanged (size, mtime, ctime, inode, device)."""
    return _identity(a) == _identity(b)


def _memo_path(key: str) -> Path:
    return cache_dir("digests") / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def file_sha256(path: Path, data: bytes | None = None) -> str:
    """The file's sha256, from the memo when the file's identity is unchanged (else hashed and memoised).

    ``data`` (the file's bytes, already read by the caller) saves a second read."""
    path = Path(path)
    st = path.stat()
    known = remembered("sha256", path, st)
    if known is not None and len(known) == 64:
        return known
    h = hashlib.sha256()
    if data is not None:
        h.update(data)
    else:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    digest = h.hexdigest()
    if same_identity(path.stat(), st):  # not changed while we read it
        remember("sha256", path, st, digest)
    return digest


def memoised(tag: str, files: Sequence[Path], compute: Callable[[], str]) -> str:
    """``compute()`` (a string derived only from ``files``), remembered until any file's identity changes."""
    stats = [Path(f).stat() for f in files]
    memo = _memo_path(f"memo:{tag}")
    ident = [str(Path(f).resolve()) for f in files] + [_identity(st) for st in stats]
    try:
        saved = json.loads(memo.read_text())
        if saved.get("identity") == ident and isinstance(saved.get("value"), str):
            return saved["value"]
    except (OSError, ValueError, AttributeError):
        pass
    value = compute()
    newest = max((max(st.st_mtime_ns, st.st_ctime_ns) for st in stats), default=0)
    if time.time_ns() - newest > RACY_NS and [_identity(Path(f).stat()) for f in files] == ident[len(files):]:
        try:
            atomic_write_bytes(memo, json.dumps({"identity": ident, "value": value}).encode())
        except OSError:
            pass
    return value


def remembered(kind: str, path: Path, st: os.stat_result) -> str | None:
    """The ``kind`` digest remembered for ``path`` when its identity is still ``st``'s (see
    :func:`remember`), else None."""
    try:
        saved = json.loads(_memo_path(f"{kind}:{Path(path).resolve()}").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(saved, dict) and saved.get("identity") == _identity(st) and isinstance(saved.get(kind), str):
        return saved[kind]
    return None


def remember(kind: str, path: Path, st: os.stat_result, digest: str) -> None:
    """Remember ``digest`` (just computed from the file's bytes, identity ``st``) unless the file
    changed too recently to be told apart from a later change (git's racy rule)."""
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) <= RACY_NS:
        return
    try:
        atomic_write_bytes(_memo_path(f"{kind}:{Path(path).resolve()}"),
                           json.dumps({"path": str(path), "identity": _identity(st), kind: digest}).encode())
    except OSError:
        pass  # read-only cache: hash again next time

