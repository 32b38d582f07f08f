"""Exported ONNX models cached under ``cache_dir('onnx')``, each with a sha256 sidecar, and the
onnxruntime session options every ravl model shares.

A cached model is used only when its bytes hash to the digest written beside it at export (the
sidecar is written first, then the model, both atomically), so a damaged or half-copied file is
exported again instead of loaded. Hashing a 90 MB text model on every start-up would cost a
noticeable part of a one-shot ``ravl search``, so a verified digest is remembered together with
the file's identity (size, mtime, ctime, inode, as git's index does): a file that changed in any
of those is hashed again. A file changed within the last few seconds is never memoised (it could
change again within the file system's timestamp resolution: git's "racy" rule). The same memo
keys the caches by their source weights.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ..config import cache_dir
from ..digests import file_sha256
from ..errors import MissingDependencyError
from ..fsutil import atomic_write_bytes


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def cache_key(*parts: str | Path) -> str:
    """16 hex digits naming a cache entry: files contribute their sha256, strings themselves."""
    h = hashlib.sha256()
    for part in parts:
        h.update((f"file:{file_sha256(part)}" if isinstance(part, Path) else f"str:{part}").encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def cache_path(stem: str, *key_parts: str | Path) -> Path:
    """``cache_dir('onnx')/<stem>-<key>.onnx`` for the given source files and settings."""
    return cache_dir("onnx") / f"{stem}-{cache_key(*key_parts)}.onnx"


def verified(path: Path) -> bool:
    """True when ``path`` exists and hashes to the digest in its sidecar."""
    try:
        expected = sidecar(path).read_text().strip()
        return file_sha256(path) == expected
    except OSError:
        return False


def write_verified(path: Path, data: bytes) -> None:
    """Sidecar first, then the model, each atomically: a reader never sees an unvouched model."""
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(sidecar(path), digest.encode())
    atomic_write_bytes(path, data)
    file_sha256(path, data)  # memoise the digest just computed


def data_path(path: Path) -> Path:
    """The external-weights file of a model saved with its initializers outside the graph."""
    return path.with_name(path.name + ".data")


def load_or_export(path: Path, export: Callable[[], bytes | tuple[bytes, bytes]], check: Callable[[object], None],
                   threads: int, *, external_data: bool = False, quick: bool = False):
    """``(session, exported)`` for the cached model at ``path``; (re-)exported with ``export()``
    when missing or damaged, and then passed to ``check(session)``, which raises (the files are
    removed) when the export disagrees with its reference.

    With ``external_data``, ``export()`` returns ``(graph, weights)``: the weights go to
    :func:`data_path` (each file with its own sidecar), which onnxruntime maps instead of parsing
    them out of the graph (about 0.3 s less CPU at start-up for a 90 MB model). ``quick``: see
    :func:`session`.
    """
    files = [path, data_path(path)] if external_data else [path]
    if all(verified(f) for f in files):
        try:
            return session(str(path), threads, quick=quick), False
        except Exception:  # unreadable despite the digest: export again
            pass
    from ..progress import preparing

    preparing(f"the ONNX model {path.name}", "about 10-30 s")
    out = export()
    parts: tuple[bytes, ...] = out if isinstance(out, tuple) else (out,)
    if len(parts) != len(files):
        raise ValueError(f"export of {path.name} returned {len(parts)} file(s), expected {len(files)}")
    for f, data in reversed(list(zip(files, parts))):  # the graph last: a reader never sees it without its data
        write_verified(f, data)
    try:
        sess = session(str(path), threads, quick=quick)
        check(sess)
    except BaseException:
        for f in files:
            f.unlink(missing_ok=True)
        raise
    return sess, True


def session(model: str | bytes, threads: int, *, quick: bool = False):
    """An onnxruntime CPU session with ravl's options (a file path or the model's bytes).

    ``quick`` trades about 10% of throughput for a session that is ready in a fraction of the
    time: basic graph optimisations only, and no pre-packing of the weight matrices into the
    GEMM kernels' layout (measured for MiniLM: 6.5 ms instead of 52 ms to create, 3.0 instead of
    2.7 ms of CPU per 18-token text). For processes that may encode a handful of texts and exit."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError("runtime=onnx needs onnxruntime: pip install onnxruntime") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if quick
                                        else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    if quick:
        options.add_session_config_entry("session.disable_prepacking", "1")
    options.log_severity_level = 3
    # no busy-waiting between ops: ingest shares the cores with decoding threads, and spinning
    # workers steal their cycles (measured: ingest/forward 0.76 -> 0.81-0.92 on 2 cores)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
