"""Photo metadata read at ingest from EXIF (Pillow's reader, through the safe opener): when the
photo was taken, where, and with which camera. Dates are wall-clock seconds where the photo was
taken, as if UTC (a photo taken at 14:30 in Lisbon is 14:30 on that day whatever the machine's
zone); the EXIF offset, when present, is kept beside them in minutes. A photo without an EXIF date
dates from its file's modification time, in this machine's zone (:func:`file_date`)."""
from __future__ import annotations

import calendar
import time
from dataclasses import asdict, dataclass

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_ORIGINAL, _DIGITIZED, _OFFSET_ORIGINAL, _OFFSET = 0x9003, 0x9004, 0x9011, 0x9010


@dataclass(frozen=True)
class PhotoMeta:
    taken_at: float | None = None  # wall-clock seconds (as if UTC)
    taken_offset: int | None = None  # minutes east of UTC, when the EXIF says
    lat: float | None = None
    lon: float | None = None
    camera: str | None = None  # "Make Model" (the make once when the model repeats it)

    def to_dict(self) -> dict:
        return asdict(self)


def _date(value) -> float | None:
    if not isinstance(value, str):
        return None
    text = value.strip().replace("\x00", "")
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y:%m:%d"):
        try:
            parsed = time.strptime(text[:19], fmt)
        except ValueError:
            continue
        if parsed.tm_year < 1800:
            return None
        return float(calendar.timegm(parsed))
    return None


def _offset(value) -> int | None:
    if not isinstance(value, str) or len(value.strip()) < 6:
        return None
    text = value.strip()
    try:
        sign = -1 if text[0] == "-" else 1
        hours, minutes = int(text[1:3]), int(text[4:6])
    except ValueError:
        return None
    return sign * (hours * 60 + minutes) if hours <= 14 and minutes < 60 else None


def _degrees(value, ref) -> float | None:
    try:
        d, m, s = (float(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    out = d + m / 60 + s / 3600
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    return -out if isinstance(ref, str) and ref.strip().upper() in ("S", "W") else out


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).replace("\x00", " ").split()) if value is not None else ""


def from_exif(exif) -> PhotoMeta:
    """:class:`PhotoMeta` of a Pillow ``Image.Exif`` (None: nothing known)."""
    if exif is None:
        return PhotoMeta()
    sub = exif.get_ifd(_EXIF_IFD) or {}
    taken = _date(sub.get(_ORIGINAL)) or _date(sub.get(_DIGITIZED)) or _date(exif.get(_DATETIME))
    offset = _offset(sub.get(_OFFSET_ORIGINAL)) if sub.get(_ORIGINAL) else _offset(sub.get(_OFFSET))
    gps = exif.get_ifd(_GPS_IFD) or {}
    lat, lon = _degrees(gps.get(2), gps.get(1)), _degrees(gps.get(4), gps.get(3))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        lat = lon = None
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    camera = model if make and model.lower().startswith(make.lower().split()[0]) else f"{make} {model}".strip()
    return PhotoMeta(taken, offset if taken is not None else None, lat, lon, camera or None)


def read_photo_meta(data: bytes, name: str = "image") -> PhotoMeta:
    from ..images import read_exif

    return from_exif(read_exif(data, name=name))


def file_date(mtime_ns: int) -> float:
    """A file's modification time as wall-clock seconds in this machine's zone (as if UTC)."""
    local = time.localtime(mtime_ns / 1e9)
    return float(calendar.timegm(local))
