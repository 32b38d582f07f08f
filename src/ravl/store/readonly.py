"""Collections this process cannot write (a read-only mount, a DVD, a shared drive, a container
image) are read with SQLite's ``immutable=1``: no lock and no ``-shm`` file are needed, nothing is
written, and index caches are used when their seals verify (else search is exact, in memory)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import CollectionError


def writable(db_path: Path) -> bool:
    """True when this process could write the database and its folder (WAL needs both)."""
    folder = db_path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    return not db_path.exists() or os.access(db_path, os.W_OK)


def check_no_pending_log(db_path: Path) -> None:
    """A read-only collection whose write-ahead log still holds writes cannot be read as immutable
    (SQLite would not see them): say how to fold them in."""
    wal = Path(f"{db_path}-wal")
    try:
        pending = wal.stat().st_size > 0
    except OSError:
        return
    if pending:
        raise CollectionError(f"{db_path.parent} is read-only here, and its write-ahead log {wal.name} still holds "
                              "recent writes; open it once where it is writable (e.g. 'ravl info -c DIR') so they "
                              "are folded into the database, then copy it again")


def permission_problem(path: Path) -> str | None:
    """What this user lacks on the database ``path`` or its folder, if anything (for messages)."""
    folder = path.parent
    if not os.access(folder, os.X_OK) or (not path.exists() and not os.access(folder, os.R_OK)):
        return f"this user cannot enter the folder {folder}"
    if path.exists() and not os.access(path, os.R_OK):
        return f"this user cannot read {path}"
    return None
