"""Preparing one record for writing, in any thread or process: stat, read, hash, decode and
preprocess, or decide that the file is unchanged, a copy or a move of a stored item."""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Set as AbstractSet

from ..errors import ImageError
from ..images import decode_image, read_file
from .photo_meta import PhotoMeta, read_photo_meta
from .record import Record
from .write import Prepared

_Prepared = Prepared
#: caption texts whose vectors are kept for the rest of a run (datasets often repeat captions)
TEXT_CACHE_SIZE = 50_000


def prepare_record(rec: Record, state: tuple[int, int, int, str] | None, by_sha: dict[str, int], encoder,
                   min_side: int, uris: dict[int, str] | None = None,
                   backfill: AbstractSet[int] = frozenset()) -> _Prepared:
    """Stat, read, hash, decode and preprocess one record (in any thread or process): 'touch' when
    the stored ``state`` = (id, size, mtime_ns, sha256) still matches, 'reuse' when another stored
    item has the same content (``by_sha``) — 'move' instead when ``uris`` (item id -> uri) is given
    and that item's file is gone —, 'skip' with a reason, else 'new' (pixels ready). Photo
    metadata (EXIF) is read for every file read, and for an unchanged item in ``backfill`` (ids
    whose metadata was never read)."""
    start, cpu_start = time.perf_counter(), time.thread_time()
    try:
        st = rec.path.stat()
    except (OSError, ValueError) as exc:
        return _Prepared(rec, "skip", reason="file not found" if isinstance(exc, FileNotFoundError)
                         else f"cannot read ({getattr(exc, 'strerror', None) or exc})")
    if state and state[1] == st.st_size and state[2] == st.st_mtime_ns:
        photo = None
        if state[0] in backfill:
            try:
                photo = read_photo_meta(read_file(rec.path), str(rec.path))
            except ImageError:
                photo = PhotoMeta()
        return _Prepared(rec, "touch", item_id=state[0], size=st.st_size, mtime_ns=st.st_mtime_ns, photo=photo)
    try:
        data = read_file(rec.path)
        sha = hashlib.sha256(data).hexdigest()
        photo = read_photo_meta(data, str(rec.path))
        if state and state[3] == sha:
            return _Prepared(rec, "touch", item_id=state[0], size=len(data), mtime_ns=st.st_mtime_ns, photo=photo)
        if sha in by_sha and not state:
            src = uris.get(by_sha[sha]) if uris is not None else None
            kind = "move" if src is not None and not os.path.lexists(src) else "reuse"
            return _Prepared(rec, kind, item_id=by_sha[sha], sha256=sha, size=len(data), mtime_ns=st.st_mtime_ns,
                             photo=photo)
        img, width, height = decode_image(data, min_side=min_side, name=str(rec.path))
        pixels = encoder.preprocess(img)
    except ImageError as exc:
        return _Prepared(rec, "skip", reason=str(exc).split(": ", 1)[-1])
    except Exception as exc:  # a backend's preprocessing failing on one odd image must not kill the run
        return _Prepared(rec, "skip", reason=f"preprocessing failed: {exc}")
    return _Prepared(rec, "new", item_id=state[0] if state else None, pixels=pixels, sha256=sha,
                     size=len(data), mtime_ns=st.st_mtime_ns, width=width, height=height, photo=photo,
                     seconds=time.perf_counter() - start, cpu_seconds=time.thread_time() - cpu_start)
