"""Small file-system helpers shared by the caches and the store."""
from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a
    partial file, even if the process is killed (temp file in the same folder, fsync, rename)."""
    atomic_write_with(path, lambda fh: fh.write(data))


def atomic_write_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """:func:`atomic_write_bytes` for a file that ``write(fh)`` writes (e.g. in chunks)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; caches are shared like any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class WriterLock:
    """An exclusive lock on a file, shared by everything in this process that asks for the same
    path (reference-counted) and exclusive between processes (``flock``: released by the kernel
    when a holder dies, so a killed run never leaves a stale lock)."""

    _held: dict[str, list] = {}  # path -> [fd, refcount]
    _guard = threading.Lock()

    def __init__(self, path: Path, on_wait=None):
        import fcntl

        self.key = str(Path(path).resolve())
        with WriterLock._guard:
            held = WriterLock._held.get(self.key)
            if held:
                held[1] += 1
                return
        fd = os.open(self.key, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait:
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        with WriterLock._guard:
            WriterLock._held[self.key] = [fd, 1]
        self._released = False

    def release(self) -> None:
        with WriterLock._guard:
            held = WriterLock._held.get(self.key)
            if held is None or getattr(self, "_released", False):
                return
            self._released = True
            held[1] -= 1
            if held[1] == 0:
                del WriterLock._held[self.key]
                os.close(held[0])


class NotRegularFileError(OSError):
    """A FIFO, device, socket or folder where a regular file was expected."""


class FileTooLargeError(OSError):
    """A file with more bytes than the reader's cap (whatever its size claims)."""


def read_regular(path: Path, max_bytes: int, *, head: bool = False) -> bytes:
    """The bytes of a regular file, read without trusting ``st_size``: opened non-blocking (a FIFO
    cannot hang the caller), checked with ``fstat`` before any read, and never more than
    ``max_bytes``. Raises FileNotFoundError, PermissionError, NotRegularFileError,
    FileTooLargeError (unless ``head``: then the first ``max_bytes``) or another OSError."""
    import stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise NotRegularFileError(f"{path} is a folder")
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{path} is not a regular file (a FIFO, device or socket)")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + (0 if head else 1) - total))
            if not chunk or (head and total + len(chunk) >= max_bytes):
                return b"".join(chunks) + chunk
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise FileTooLargeError(f"{path} is over the {max_bytes / 2**20:,.0f} MiB limit")
    finally:
        os.close(fd)
