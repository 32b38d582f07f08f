"""Queries over the photo metadata columns (schema step 5): the item ids a filter allows, each
item's date, and the items whose metadata was never read (for the one-time back-fill)."""
from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

EARTH_KM = 6371.0088
#: a date for items without an EXIF date: the file's mtime in this machine's zone (as if UTC)
_FILE_DATE = "(mtime_ns / 1e9 + ?)"


def _utc_offset() -> float:
    return -float(time.altzone if time.localtime().tm_isdst > 0 else time.timezone)


def has_photo_columns(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "taken_at" for row in conn.execute("PRAGMA table_info(items)"))


def _require(conn: sqlite3.Connection) -> None:
    if not has_photo_columns(conn):
        raise ConfigError("this collection predates photo metadata; run 'ravl index' on its folders once (where "
                          "the collection is writable) to read it")


def unread_ids(conn: sqlite3.Connection) -> set[int]:
    if not has_photo_columns(conn):
        return set()
    return {r[0] for r in conn.execute("SELECT id FROM items WHERE photo_read = 0")}


def allowed_ids(conn: sqlite3.Connection, *, after: float | None, before: float | None, folder: str | None,
                near: tuple[float, float, float] | None, camera: str | None) -> np.ndarray:
    """Sorted int64 ids of the items every given condition allows."""
    where: list[str] = []
    args: list[object] = []
    if after is not None or before is not None:
        _require(conn)
        lo, hi = (-math.inf if after is None else after), (math.inf if before is None else before)
        where.append(f"((taken_at >= ? AND taken_at < ?) OR (taken_at IS NULL AND {_FILE_DATE} >= ? "
                     f"AND {_FILE_DATE} < ?))")
        off = _utc_offset()
        args += [lo, hi, off, lo, off, hi]
    if folder is not None:
        where.append("uri >= ? AND uri < ?")
        args += [folder, folder + "\U0010ffff"]
    if camera is not None:
        _require(conn)
        where.append("camera LIKE ? ESCAPE '\\'")
        args.append("%" + camera.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    if near is not None:
        _require(conn)
        lat, lon, km = near
        dlat = math.degrees(km / EARTH_KM)
        where.append("lat BETWEEN ? AND ?")
        args += [lat - dlat, lat + dlat]
        cos = math.cos(math.radians(lat))
        if cos > 1e-6 and abs(lat) + dlat < 90:
            dlon = math.degrees(km / (EARTH_KM * cos))
            if dlon < 180 and -180 <= lon - dlon and lon + dlon <= 180:  # else: the latitude band only
                where.append("lon BETWEEN ? AND ?")
                args += [lon - dlon, lon + dlon]
    sql = "SELECT id" + (", lat, lon" if near is not None else "") + " FROM items"
    rows = conn.execute(sql + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id", args).fetchall()
    if near is None:
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return np.zeros(0, np.int64)
    ids = np.array([r[0] for r in rows], np.int64)
    pts = np.radians(np.array([(r[1], r[2]) for r in rows], np.float64))
    lat0, lon0 = math.radians(near[0]), math.radians(near[1])
    a = np.sin((pts[:, 0] - lat0) / 2) ** 2 + math.cos(lat0) * np.cos(pts[:, 0]) * np.sin((pts[:, 1] - lon0) / 2) ** 2
    dist = 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
    return ids[dist <= near[2]]


def item_dates(conn: sqlite3.Connection, item_ids: Sequence[int] | None) -> dict[int, float]:
    """item id -> its date (taken, else the file's mtime; wall-clock seconds as if UTC)."""
    off = _utc_offset()
    col = "COALESCE(taken_at, mtime_ns / 1e9 + ?)" if has_photo_columns(conn) else "(mtime_ns / 1e9 + ?)"
    if item_ids is None:
        return dict(conn.execute(f"SELECT id, {col} FROM items", (off,)).fetchall())
    out: dict[int, float] = {}
    ids = [int(i) for i in item_ids]
    for start in range(0, len(ids), 5000):
        part = ids[start:start + 5000]
        marks = ",".join("?" * len(part))
        out.update(conn.execute(f"SELECT id, {col} FROM items WHERE id IN ({marks})", (off, *part)).fetchall())
    return out


def photo_rows(conn: sqlite3.Connection, item_ids: Sequence[int]) -> dict[int, dict]:
    """item id -> its photo metadata columns (for display)."""
    if not has_photo_columns(conn) or not item_ids:
        return {}
    out: dict[int, dict] = {}
    ids = [int(i) for i in item_ids]
    for start in range(0, len(ids), 5000):
        part = ids[start:start + 5000]
        marks = ",".join("?" * len(part))
        for row in conn.execute(f"SELECT id, taken_at, taken_offset, lat, lon, camera FROM items WHERE id IN ({marks})",
                                part):
            out[row[0]] = dict(zip(("taken_at", "taken_offset", "lat", "lon", "camera"), row[1:]))
    return out
