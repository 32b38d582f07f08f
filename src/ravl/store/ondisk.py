"""IVF-PQ inverted lists kept in a file and memory-mapped (FAISS ``OnDiskInvertedLists``), for a
memory budget that cannot hold them (:func:`~.index_plan.choose_index` decides).

The lists file holds, per inverted list, its PQ codes then its ids (FAISS positions), lists one
after the other with no free space: the layout ``OnDiskInvertedLists.set_all_lists_sizes`` gives.
It is written with ``pwrite`` (the pages are the kernel's page cache, not this process's memory)
into an unnamed file (``O_TMPFILE``) in the index folder, so a build killed at any point leaves
nothing behind and the sealed pair it would have replaced in use. Sealing (:func:`seal`) hashes it
(BLAKE2b, streamed), links it as ``<name>.<first 16 hex of its hash>.ivfdata`` and records name,
size and hash in the index file's facts (``info['lists']``), which its own seal covers: the pair
is bound by hashes, and a new build's lists file never replaces the old one's (another name), so
the old pair stays whole until the new ``.faiss`` is renamed over the old one. A sealed lists file
is never written again: a catch-up that adds vectors writes a new file (old lists copied in the
kernel with ``copy_file_range``, new entries appended per list), remaps it and is sealed like a
build. Removals are tombstones in :class:`~.ann.AnnIndex`; the lists are not touched.

Loading (:func:`attach`) verifies the lists file against the hash the verified index file names,
then maps that same open file (``/proc/self/fd/N``: a file renamed over the name meanwhile is not
the one mapped) read-only. A file that does not verify is never mapped: the caller rebuilds.
"""
from __future__ import annotations

import os
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..progress import Progress
from .chunked import counted
from .integrity import hash_fd, open_verified

SUFFIX = ".ivfdata"
_ID_BYTES = 8


@dataclass
class DiskLists:
    """The open lists file an index maps: ``file`` is its sealed name, None while unsealed."""

    fd: int
    size: int
    file: str | None = None
    blake2b: str | None = None
    folder: str | None = None

    def meta(self) -> dict:
        return {"file": self.file, "size": self.size, "blake2b": self.blake2b}


def _faiss():
    import faiss

    return faiss


def _anonymous(folder: Path) -> int:
    """A new unnamed file in ``folder`` (``O_TMPFILE``; else a named one unlinked at once; a folder
    that cannot be written, a read-only collection's: the temp folder, never sealed there)."""
    for where in (folder, Path(tempfile.gettempdir())):
        try:
            where.mkdir(parents=True, exist_ok=True)
            return os.open(where, getattr(os, "O_TMPFILE", 0) | os.O_RDWR, 0o644) if hasattr(os, "O_TMPFILE") \
                else _unlinked(where)
        except OSError:
            try:
                return _unlinked(where)
            except OSError:
                continue
    raise OSError("no folder to write IVF-PQ lists to")


def _unlinked(folder: Path) -> int:
    fd, tmp = tempfile.mkstemp(prefix=".lists.", suffix=".tmp", dir=folder)
    os.unlink(tmp)
    return fd


def _own(fd: int, size: int, folder: Path) -> DiskLists:
    lists = DiskLists(fd, size, folder=str(folder))
    weakref.finalize(lists, os.close, fd)
    return lists


def _map(ivf, fd: int, sizes: np.ndarray, total: int) -> None:
    """Replace ``ivf``'s inverted lists by the file ``fd`` (laid out for ``sizes``), mapped read-only."""
    faiss = _faiss()
    od = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, f"/proc/self/fd/{fd}")
    od.totsize = total  # set first: set_all_lists_sizes then finds the size right and does not resize
    counts = np.ascontiguousarray(sizes, dtype=np.uint64)  # held: FAISS reads it through the pointer
    od.set_all_lists_sizes(faiss.swig_ptr(counts))
    od.read_only = True
    od.prefetch_nthread = 0  # no prefetch threads per search: the lists are read through the map
    od.do_mmap()
    ivf.replace_invlists(od, True)
    od.this.disown()


def _offsets(sizes: np.ndarray, code_size: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes.astype(np.int64) * (code_size + _ID_BYTES))]).astype(np.int64)


def _encode(ivf, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(list numbers, codes) of the rows of ``x``, as ``IndexIVFPQ.add`` computes them."""
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    lists = ivf.quantizer.assign(x, 1).ravel().astype(np.int64)
    codes = np.empty((len(x), ivf.code_size), np.uint8)
    ivf.encode_vectors(len(x), faiss.swig_ptr(x), faiss.swig_ptr(lists), faiss.swig_ptr(codes))
    return lists, codes


def _write_entries(fd: int, offsets: np.ndarray, sizes: np.ndarray, fill: np.ndarray, lists: np.ndarray,
                   codes: np.ndarray, ids: np.ndarray, code_size: int) -> None:
    """Append entries (list number, code, id) to their lists at ``fill`` (advanced)."""
    order = np.argsort(lists, kind="stable")
    lists, codes, ids = lists[order], codes[order], np.ascontiguousarray(ids[order], dtype=np.int64)
    bounds = np.flatnonzero(np.diff(lists)) + 1
    for start, stop in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(lists)]])):
        if start == stop:
            continue
        no = int(lists[start])
        base, at = int(offsets[no]), int(fill[no])
        os.pwrite(fd, codes[start:stop].tobytes(), base + at * code_size)
        os.pwrite(fd, ids[start:stop].tobytes(), base + int(sizes[no]) * code_size + at * _ID_BYTES)
        fill[no] += stop - start


def build(index, chunks, dim: int, folder: Path, *, progress: Progress | None = None,
          count: int = 0) -> tuple[np.ndarray, DiskLists]:
    """Add every vector ``chunks()`` yields to the trained, empty IVF-PQ ``index`` with its lists in
    a new unnamed file in ``folder``: one pass assigns lists (to size them), a second encodes and
    writes; returns the ids in position order and the lists file. ``progress`` hears both passes
    (of about ``count`` vectors) as named steps."""
    faiss = _faiss()
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    assigned, labels = [], []
    for ids, vecs in counted(chunks, progress, "adding (1/2: assigning lists)", count)():
        if len(ids):
            x = np.ascontiguousarray(vecs, dtype=np.float32).reshape(len(ids), dim)
            assigned.append(ivf.quantizer.assign(x, 1).ravel().astype(np.int32))
            labels.append(np.asarray(ids, dtype=np.int64))
    all_lists = np.concatenate(assigned) if assigned else np.zeros(0, np.int32)
    sizes = np.bincount(all_lists, minlength=ivf.nlist).astype(np.int64)
    offsets = _offsets(sizes, ivf.code_size)
    total = max(1, int(offsets[-1]))
    fd = _anonymous(folder)
    lists = _own(fd, total, folder)
    os.ftruncate(fd, total)
    fill, pos = np.zeros(ivf.nlist, np.int64), 0
    for ids, vecs in counted(chunks, progress, "adding (2/2: writing lists)", count)():
        if not len(ids):
            continue
        x = np.ascontiguousarray(vecs, dtype=np.float32).reshape(len(ids), dim)
        codes = np.empty((len(x), ivf.code_size), np.uint8)
        nos = all_lists[pos:pos + len(x)].astype(np.int64)
        ivf.encode_vectors(len(x), faiss.swig_ptr(x), faiss.swig_ptr(nos), faiss.swig_ptr(codes))
        _write_entries(fd, offsets, sizes, fill, nos, codes, np.arange(pos, pos + len(x)), ivf.code_size)
        pos += len(x)
    if pos != len(all_lists) or not np.array_equal(fill, sizes):
        raise RuntimeError("the vectors changed between the two passes of an on-disk IVF-PQ build")
    _map(ivf, fd, sizes, total)
    index.ntotal = ivf.ntotal = pos
    return (np.concatenate(labels) if labels else np.zeros(0, np.int64)), lists


def add(index, lists: DiskLists, vectors: np.ndarray, start: int) -> DiskLists:
    """Append ``vectors`` at positions ``start``.. : a new lists file (the old entries copied by the
    kernel, the new ones appended per list), mapped in place of the old one, which is not written."""
    faiss = _faiss()
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    old = faiss.downcast_InvertedLists(ivf.invlists)
    old_sizes = np.array([old.list_size(i) for i in range(ivf.nlist)], np.int64)
    nos, codes = _encode(ivf, vectors)
    sizes = old_sizes + np.bincount(nos, minlength=ivf.nlist)
    offsets, old_offsets = _offsets(sizes, ivf.code_size), _offsets(old_sizes, ivf.code_size)
    total = max(1, int(offsets[-1]))
    folder = Path(lists.folder or tempfile.gettempdir())
    fd = _anonymous(folder)
    new = _own(fd, total, folder)
    os.ftruncate(fd, total)
    cs = ivf.code_size
    for no in np.flatnonzero(old_sizes):
        n, src, dst = int(old_sizes[no]), int(old_offsets[no]), int(offsets[no])
        _copy(lists.fd, fd, n * cs, src, dst)
        _copy(lists.fd, fd, n * _ID_BYTES, src + n * cs, dst + int(sizes[no]) * cs)
    _write_entries(fd, offsets, sizes, old_sizes.copy(), nos, codes, np.arange(start, start + len(vectors)), cs)
    _map(ivf, fd, sizes, total)
    index.ntotal = ivf.ntotal = start + len(vectors)
    return new


def _copy(src: int, dst: int, count: int, src_off: int, dst_off: int) -> None:
    while count > 0:
        n = os.copy_file_range(src, dst, count, src_off, dst_off)
        if n <= 0:
            raise OSError("copy_file_range copied nothing")
        count, src_off, dst_off = count - n, src_off + n, dst_off + n


def seal(lists: DiskLists, folder: Path, name: str) -> dict:
    """Give the lists file its sealed name in ``folder`` (hashed as it is read once, linked, synced)
    and return what the index file records of it; a file sealed already is left as it is."""
    if lists.file is not None and Path(lists.folder or "") == folder and (folder / lists.file).exists():
        return lists.meta()
    os.fsync(lists.fd)
    hexdigest = hash_fd(lists.fd, lists.size)
    if hexdigest is None:
        raise OSError("lists file shorter than written")
    final = folder / f"{name}.{hexdigest[:16]}{SUFFIX}"
    # renamed over a file of that name too: it may be a damaged one (this content is verified)
    tmp = folder / f"{final.name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(f"/proc/self/fd/{lists.fd}", tmp, follow_symlinks=True)
    except OSError:  # another file system, or a file that was named: copy it
        with open(tmp, "wb") as fh:
            _copy(lists.fd, fh.fileno(), lists.size, 0, 0)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o644)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    lists.file, lists.blake2b, lists.folder = final.name, hexdigest, str(folder)
    return lists.meta()


def attach(index, folder: Path, meta: object) -> DiskLists | None:
    """Map the lists file ``meta`` names (recorded in a verified index file) into ``index`` (read
    with its lists skipped) when it verifies against ``meta``'s hash; None when it does not."""
    faiss = _faiss()
    if not isinstance(meta, dict) or not isinstance(meta.get("file"), str) or not isinstance(meta.get("size"), int) \
            or not isinstance(meta.get("blake2b"), str):
        return None
    file = meta["file"]
    if "/" in file or not file.endswith(SUFFIX) or file.startswith("."):
        return None
    verified = open_verified(folder / file, meta["size"], meta["blake2b"])
    if verified is None:
        return None
    try:
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        od = faiss.downcast_InvertedLists(ivf.invlists)
        if not isinstance(od, faiss.OnDiskInvertedLists) or od.totsize != meta["size"]:
            return None
        sizes = np.array([od.list_size(i) for i in range(ivf.nlist)], np.int64)
        if int(_offsets(sizes, ivf.code_size)[-1]) > meta["size"] or int(sizes.sum()) != index.ntotal:
            return None
        fd = os.dup(verified.fd)
    except (RuntimeError, ValueError):
        return None
    finally:
        verified.close()
    lists = _own(fd, meta["size"], folder)
    _map(ivf, fd, sizes, meta["size"])
    lists.file, lists.blake2b = file, meta["blake2b"]
    return lists


def lists_files(folder: Path, name: str) -> list[Path]:
    """The ``<name>.*.ivfdata`` lists files in ``folder`` (regular files, not links)."""
    return [p for p in folder.glob(f"{name}.*{SUFFIX}") if p.is_file() and not p.is_symlink()]


def remove_others(folder: Path, name: str, keep: str | None) -> None:
    """Delete ``name``'s lists files but ``keep`` (a process mapping one keeps its pages)."""
    for path in lists_files(folder, name):
        if path.name != keep:
            path.unlink(missing_ok=True)
