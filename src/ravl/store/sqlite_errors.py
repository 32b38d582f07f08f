"""SQLite failures as one-line CollectionErrors that say what to do (used by store/ and Collection)."""
from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CollectionError

DB_NAME = "ravl.sqlite"


@contextmanager
def sqlite_errors(path: Path) -> Iterator[None]:
    """Turn SQLite failures into one-line CollectionErrors that say what to do."""
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError):
        raise  # bugs or per-record problems: handled (or reported) by the caller
    except sqlite3.OperationalError as exc:
        msg = str(exc)
        if "full" in msg:
            raise CollectionError(f"disk full while writing {path}; free some space and run the same command "
                                  "again (everything committed so far is kept)") from None
        if "locked" in msg or "busy" in msg:
            raise CollectionError(f"{path} stayed locked by another process for 30 s; try again when its "
                                  "writer is done") from None
        if "readonly" in msg or "read-only" in msg:
            raise CollectionError(f"{path} is read-only here; give a collection folder you can write to") from None
        from .readonly import permission_problem

        denied = permission_problem(path)
        if denied:
            raise CollectionError(f"cannot open the collection database {path}: permission denied ({denied}); "
                                  "ask for read access (searching needs only read access)") from None
        raise CollectionError(f"cannot use the collection database {path} ({msg}); if it is damaged, restore a "
                              "backup or index into a new --collection folder") from None
    except sqlite3.DatabaseError as exc:  # malformed file, not a database, I/O error
        raise CollectionError(f"the collection database {path} is damaged or unreadable ({exc}); restore a "
                              "backup, or delete the folder and re-index") from None


def translating_sqlite_errors(fn):
    """Decorator for methods of objects with a ``.path`` folder holding the database."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        with sqlite_errors(Path(self.path) / DB_NAME if Path(self.path).is_dir() else Path(self.path)):
            return fn(self, *args, **kwargs)
    return wrapper
