"""Opening and creating a collection: :func:`open_collection`, the writer lock, finishing an
interrupted creation, and the check that a given encoder matches the stored one."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from .. import __version__
from ..encoders.base import Encoder, load_encoder
from ..errors import CollectionError, CollectionNotFoundError, ConfigError, EncoderMismatchError
from ..fsutil import WriterLock
from ..store.codec import DEFAULT_DTYPE, check_dtype
from ..store.db import DB_NAME, Database
from ..store.sqlite_errors import sqlite_errors
from .core import Collection, check_fingerprint

LOCK_NAME = "ravl.lock"
log = logging.getLogger("ravl")


def _initial_meta(enc: Encoder, vector_dtype: str | None) -> dict[str, object]:
    return {"encoder_spec": enc.spec, "encoder_fingerprint": enc.fingerprint, "dim": enc.dim,
            "feature_dim": enc.feature_dim, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "ravl_version": __version__, "generation": 0, "vector_dtype": vector_dtype or DEFAULT_DTYPE}


def open_collection(path: str | Path, *, encoder: str | Encoder | None = None, create: bool = False,
                    readonly: bool = False, vector_dtype: str | None = None) -> Collection:
    """Open the collection in folder ``path``.

    ``encoder`` (a spec or an :class:`Encoder`) is used to create a new collection; for an existing
    one it must match what the collection was built with. ``create=True`` makes the folder and
    database when missing (schema and metadata in one transaction), finishes a collection whose
    creation was interrupted, and holds the collection's writer lock until :meth:`Collection.close`:
    a second process opening it with ``create=True`` waits (and logs that it waits).

    ``vector_dtype`` (``float32``, the default, or ``float16``: half the bytes) is how a new
    collection stores its vectors; for an existing one it must be the stored one (None: any).
    """
    path = Path(path).expanduser().resolve()
    if vector_dtype is not None:
        vector_dtype = check_dtype(vector_dtype)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--collection {path} is a file; give a folder path")
    lock = None
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = WriterLock(path / LOCK_NAME, on_wait=lambda: log.warning(
                "ravl: another process is writing to %s; waiting for it to finish (Ctrl-C to stop)", path))
        except OSError as exc:
            raise CollectionError(f"cannot write to collection folder {path} ({exc.strerror or exc}); "
                                  "choose a folder you can write to") from None
    try:
        coll = _open(path, encoder, create, readonly, vector_dtype)
    except PermissionError as exc:
        if lock:
            lock.release()
        raise CollectionError(f"cannot open the collection in {path}: permission denied on {exc.filename or path}; "
                              "ask for read access (searching needs only read access)") from None
    except BaseException:
        if lock:
            lock.release()
        raise
    coll._writer_lock = lock
    return coll


def _open(path: Path, encoder: str | Encoder | None, create: bool, readonly: bool,
          vector_dtype: str | None) -> Collection:
    db_path = path / DB_NAME
    enc_obj = encoder if isinstance(encoder, Encoder) else None
    initial = None
    if not db_path.exists():
        if not create:
            raise CollectionNotFoundError(
                f"no collection at {path}; build one with 'ravl index SOURCE --collection {path}'")
        enc_obj = enc_obj or load_encoder(str(encoder or "default"))
        initial = _initial_meta(enc_obj, vector_dtype)
    db = Database(db_path, readonly=readonly and not create, initial_meta=initial)
    try:
        with sqlite_errors(db_path):
            meta = db.get_meta()
        if "encoder_spec" not in meta:  # creation interrupted (or made by an older ravl): finish it
            if not create:
                raise CollectionNotFoundError(
                    f"{path} holds an unfinished collection (its creation was interrupted); run 'ravl index "
                    f"SOURCE --collection {path}' to finish creating it")
            enc_obj = enc_obj or load_encoder(str(encoder or "default"))
            meta = db.finish_meta(_initial_meta(enc_obj, vector_dtype))
        _check_dtype(path, vector_dtype, db.codec.dtype)
        if enc_obj is None and encoder is not None and str(encoder).strip() != meta["encoder_spec"]:
            if _same_vectors(str(encoder), meta["encoder_spec"]):  # differs only in runtime options (threads, ...)
                enc_obj = load_encoder(str(encoder))
        if enc_obj is None and encoder is not None and str(encoder).strip() != meta["encoder_spec"]:
            raise EncoderMismatchError(
                f"collection {path} was built with encoder {meta['encoder_spec']!r}, not {encoder!r}; omit "
                "--encoder to use the collection's own, or index into a new --collection folder")
        coll = Collection(path, db, encoder=enc_obj)
        if enc_obj is not None:
            check_fingerprint(path, coll.fingerprint, enc_obj)
        return coll
    except BaseException:
        db.close()
        raise


def _check_dtype(path: Path, wanted: str | None, stored: str) -> None:
    """Refuse a storage dtype other than the collection's (it is fixed when the collection is created)."""
    if wanted is not None and wanted != stored:
        raise ConfigError(f"collection {path} stores {stored} vectors, not {wanted}; the vector dtype is chosen when a "
                          f"collection is created: 'ravl export --collection {path} --out DIR', then 'ravl import DIR "
                          f"--collection NEW_DIR --vector-dtype {wanted}'")


def _same_vectors(a: str, b: str) -> bool:
    """True when specs ``a`` and ``b`` differ only in options their family declares runtime-only."""
    from .. import registry
    from ..errors import RavlError
    from ..specs import fingerprint_spec, parse_spec

    try:
        pa, pb = parse_spec(a), parse_spec(b)
        if pa.family != pb.family:
            return False
        options = registry.declaration(registry.factory_for("encoders", pa)).options
    except (RavlError, ImportError, AttributeError):
        return False
    return bool(options) and fingerprint_spec(pa, options) == fingerprint_spec(pb, options)
