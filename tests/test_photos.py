"""Issue 22 item 3 (the store side): EXIF read at ingest into filterable columns (date taken with
its offset, GPS, camera), back-filled once for items indexed before; Filters parsed and checked
from CLI strings; a collection turns Filters into the allowed item ids and gives each item's date."""
from __future__ import annotations

import calendar
import dataclasses
import os
import sqlite3
import time

import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from ravl.collection import open_collection
from ravl.errors import ConfigError
from ravl.filters import Filters, parse_date, parse_near
from ravl.ingest.pipeline import index_sources


def dms(value: float) -> tuple:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = round((value - d - m / 60) * 3600 * 100)
    return IFDRational(d), IFDRational(m), IFDRational(s, 100)


def photo(path, colour, *, taken=None, offset=None, gps=None, make=None, model=None):
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if taken:
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = taken
        if offset:
            sub[0x9011] = offset
    if gps:
        g = exif.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = ("N" if gps[0] >= 0 else "S"), dms(gps[0]), ("E" if gps[1] >= 0 else "W"), dms(gps[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path, exif=exif)
    return path


LISBON, PORTO = (38.7223, -9.1393), (41.1579, -8.6291)


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    photo(root / "2019" / "lisbon.jpg", (200, 30, 30), taken="2019:06:01 14:30:00", offset="+01:00", gps=LISBON,
          make="Canon", model="Canon EOS 5D")
    photo(root / "2019" / "porto.jpg", (30, 200, 30), taken="2019:12:31 23:59:59", gps=PORTO, make="NIKON CORPORATION",
          model="NIKON D750")
    photo(root / "2021" / "fiji.jpg", (30, 30, 200), taken="2021:03:05 08:00:00", gps=(-17.7, 179.95), make="Apple",
          model="iPhone 12")
    plain = root / "old" / "scan.png"
    plain.parent.mkdir(parents=True)
    Image.new("RGB", (40, 30), (90, 90, 90)).save(plain)
    mtime = time.mktime((2015, 3, 10, 12, 0, 0, 0, 0, -1))  # local time
    os.utime(plain, (mtime, mtime))
    return root


def ids_of(coll, names) -> list[int]:
    states = coll.file_states()
    return sorted(states[next(u for u in states if u.endswith("/" + n))][0] for n in names)


def allowed(coll, **kw) -> list[int]:
    got = coll.allowed_items(Filters.parse(**kw))
    assert got.dtype == np.int64
    return got.tolist()


def test_exif_columns_and_filters(photos, tmp_path, colour_spec):
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as coll:
        index_sources(coll, [str(photos)])
        meta = coll.photo_metadata(ids_of(coll, ["lisbon.jpg"]))
        (row,) = meta.values()
        assert row["taken_at"] == calendar.timegm((2019, 6, 1, 14, 30, 0, 0, 0, 0)) and row["taken_offset"] == 60
        assert abs(row["lat"] - LISBON[0]) < 1e-3 and abs(row["lon"] - LISBON[1]) < 1e-3
        assert row["camera"] == "Canon EOS 5D"
        assert coll.allowed_items(None) is None and coll.allowed_items(Filters()) is None
        assert allowed(coll, after="2019", before="2019") == ids_of(coll, ["lisbon.jpg", "porto.jpg"])
        assert allowed(coll, before="2019-06-01") == ids_of(coll, ["lisbon.jpg", "scan.png"])
        assert allowed(coll, after="2019-06-02") == ids_of(coll, ["porto.jpg", "fiji.jpg"])
        assert allowed(coll, after="2015-03-10", before="2015-03-10") == ids_of(coll, ["scan.png"])  # file date
        assert allowed(coll, near="38.72,-9.14,25") == ids_of(coll, ["lisbon.jpg"])
        assert allowed(coll, near="38.72,-9.14,400") == ids_of(coll, ["lisbon.jpg", "porto.jpg"])
        assert allowed(coll, near="-17.7,-179.95,30") == ids_of(coll, ["fiji.jpg"])  # across the antimeridian
        assert allowed(coll, camera="nikon") == ids_of(coll, ["porto.jpg"])
        assert allowed(coll, camera="5d", after="2020") == []
        assert allowed(coll, folder=str(photos / "2019")) == ids_of(coll, ["lisbon.jpg", "porto.jpg"])
        assert allowed(coll, folder=str(photos / "201")) == []  # a folder, not a string prefix
        dates = coll.item_dates()
        scan = ids_of(coll, ["scan.png"])[0]
        assert time.gmtime(dates[scan])[:4] == (2015, 3, 10, 12)
        assert sorted(dates, key=dates.get) == ids_of(coll, ["scan.png"]) + ids_of(coll, ["lisbon.jpg"]) + \
            ids_of(coll, ["porto.jpg"]) + ids_of(coll, ["fiji.jpg"])


def test_items_indexed_before_photo_metadata_are_back_filled_once(photos, tmp_path, colour_spec):
    coll_dir = tmp_path / "c"
    with open_collection(coll_dir, encoder=colour_spec, create=True) as coll:
        index_sources(coll, [str(photos)])
    conn = sqlite3.connect(coll_dir / "ravl.sqlite")  # as an older ravl left it: nothing read
    conn.execute("UPDATE items SET taken_at=NULL, taken_offset=NULL, lat=NULL, lon=NULL, camera=NULL, photo_read=0")
    conn.commit()
    conn.close()
    with open_collection(coll_dir, create=True) as coll:
        assert len(coll.photo_unread()) == 4 and allowed(coll, camera="canon") == []
        report = index_sources(coll, [str(photos)])
        assert report.unchanged == 4 and report.added == 0
        assert coll.photo_unread() == set() and allowed(coll, camera="canon") == ids_of(coll, ["lisbon.jpg"])


def test_filter_strings_are_checked():
    assert parse_date("2019") == calendar.timegm((2019, 1, 1, 0, 0, 0, 0, 0, 0))
    assert parse_date("2019", end=True) == calendar.timegm((2020, 1, 1, 0, 0, 0, 0, 0, 0))
    assert parse_date("2019-12", end=True) == calendar.timegm((2020, 1, 1, 0, 0, 0, 0, 0, 0))
    assert parse_date("2019-02-28", end=True) == calendar.timegm((2019, 3, 1, 0, 0, 0, 0, 0, 0))
    assert parse_date("2019-06-01T14:30") == calendar.timegm((2019, 6, 1, 14, 30, 0, 0, 0, 0))
    assert parse_near("38.7, -9.1, 25") == (38.7, -9.1, 25.0)
    f = Filters.parse(folder="~/x", camera=" Canon ")
    assert f.folder.endswith(os.sep) and f.camera == "Canon" and not f.empty and Filters().empty
    for bad in ("19", "2019-13", "2019-02-30", "yesterday", "2019-06-01T25:00"):
        with pytest.raises(ConfigError, match="--after"):
            Filters.parse(after=bad)
    for bad in ("38,-9", "91,0,5", "0,181,5", "0,0,0", "0,0,-3", "a,b,c", "nan,0,1"):
        with pytest.raises(ConfigError, match="--near"):
            Filters.parse(near=bad)
    with pytest.raises(ConfigError, match="earlier"):
        Filters.parse(after="2020", before="2019")
    with pytest.raises(ConfigError, match="camera"):
        Filters.parse(camera="  ")
    with pytest.raises(dataclasses.FrozenInstanceError):
        Filters().after = 1.0  # type: ignore[misc]
