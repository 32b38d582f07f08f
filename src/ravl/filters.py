"""Search filters over photo metadata: when (``after``/``before``), where on disk (``folder``),
where on Earth (``near``) and with which camera. Validated once at the door (CLI strings, HTTP
fields, Python values) into a frozen :class:`Filters`; a collection turns it into the allowed item
ids (:meth:`ravl.collection.Collection.allowed_items`).

Dates are the wall-clock time where a photo was taken (EXIF ``DateTimeOriginal``; a file without
one dates from its modification time, in this machine's zone). Both bounds include the whole
period they name: ``--after 2019 --before 2019`` is the year 2019, ``--before 2019-06-30`` includes
June 30th.
"""
from __future__ import annotations

import calendar
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}))?)?)?)?$")
#: the largest search radius (half the Earth's circumference)
MAX_KM = 20_038.0


def parse_date(text: str, *, end: bool = False, name: str = "date") -> float:
    """``2019``, ``2019-06``, ``2019-06-01`` or ``2019-06-01T14:30[:00]`` -> wall-clock seconds (as
    if UTC) of the start of that period, or with ``end`` of the first moment after it."""
    m = _DATE.match(str(text).strip())
    if not m:
        raise ConfigError(f"--{name} {text!r} is not a date; use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM")
    year = int(m.group(1))
    month, day, hour, minute, second = (int(g) if g is not None else None for g in m.groups()[1:])
    parts = [year, month or 1, day or 1, hour or 0, minute or 0, second or 0]
    try:
        time.strptime("{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}".format(*parts), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ConfigError(f"--{name} {text!r} is not a real date or time") from None
    start = calendar.timegm((*parts, 0, 0, 0))
    if not end:
        return float(start)
    if month is None:
        return float(calendar.timegm((year + 1, 1, 1, 0, 0, 0, 0, 0, 0)))
    if day is None:
        return float(calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0, 0, 0, 0)))
    if hour is None:
        return float(start + 86_400)
    return float(start + (1 if second is not None else 60))


def parse_near(text: str | tuple | list) -> tuple[float, float, float]:
    """``"LAT,LON,KM"`` (or a 3-sequence) -> (lat, lon, km), checked."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        lat, lon, km = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"--near {text!r} must be LAT,LON,KM, e.g. 38.72,-9.14,25 (Lisbon, 25 km)") from None
    if not all(math.isfinite(v) for v in (lat, lon, km)):
        raise ConfigError(f"--near {text!r}: numbers must be finite")
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise ConfigError(f"--near {text!r}: latitude must be within -90..90 and longitude within -180..180")
    if not 0 < km <= MAX_KM:
        raise ConfigError(f"--near {text!r}: the radius must be more than 0 and at most {MAX_KM:,.0f} km")
    return lat, lon, km


@dataclass(frozen=True)
class Filters:
    """Which items a search may return; every field None means no filter on it."""
    after: float | None = None  # wall-clock seconds (as if UTC), inclusive
    before: float | None = None  # wall-clock seconds, exclusive (the end of the period named)
    folder: str | None = None  # an absolute folder: items whose file lies under it
    near: tuple[float, float, float] | None = None  # (lat, lon, km)
    camera: str | None = None  # case-insensitive part of "Make Model"

    def __post_init__(self) -> None:
        if self.after is not None and self.before is not None and self.after >= self.before:
            raise ConfigError("--after must be earlier than --before (both include the period they name)")
        if self.near is not None:
            object.__setattr__(self, "near", parse_near(self.near))
        if self.camera is not None and not self.camera.strip():
            raise ConfigError("--camera must name part of a camera's make or model")
        if self.folder is not None:
            if "\0" in self.folder or not self.folder.strip():
                raise ConfigError(f"--folder {self.folder!r} is not a folder path")
            object.__setattr__(self, "folder", folder_prefix(self.folder))

    @classmethod
    def parse(cls, *, after: str | None = None, before: str | None = None, folder: str | None = None,
              near: str | None = None, camera: str | None = None) -> Filters:
        """From CLI/HTTP strings (None: not given)."""
        return cls(after=parse_date(after, name="after") if after else None,
                   before=parse_date(before, end=True, name="before") if before else None,
                   folder=folder or None, near=parse_near(near) if near else None,
                   camera=camera.strip() if camera is not None else None)

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.after, self.before, self.folder, self.near, self.camera))


def folder_prefix(folder: str) -> str:
    """An absolute folder path with one trailing separator (``~`` expanded, symlinks resolved)."""
    path = str(Path(folder).expanduser().resolve())
    return path if path.endswith(os.sep) else path + os.sep
