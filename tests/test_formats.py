"""Issue 22 item 4: HEIC/HEIF (the pillow-heif plugin) and AVIF (Pillow) go through the same safe
opener, recognised by content; a file that is skipped is reported with a reason."""
from __future__ import annotations

import pytest
from PIL import Image

from ravl.collection import open_collection
from ravl.errors import UnsupportedImageError
from ravl.images import decode_image, sniff_format
from ravl.ingest.pipeline import index_sources


def save(path, fmt, colour=(200, 30, 30), size=(40, 30)):
    if fmt == "HEIF":
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.register_heif_opener()
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def test_heic_and_avif_are_read_by_content(tmp_path):
    heic = save(tmp_path / "IMG_1234.HEIC", "HEIF")
    avif = save(tmp_path / "photo.avif", "AVIF")
    assert sniff_format(heic.read_bytes()) == "heic" and sniff_format(avif.read_bytes()) == "avif"
    for path in (heic, avif):
        img, width, height = decode_image(path.read_bytes(), name=str(path))
        assert (width, height) == (40, 30) and img.mode == "RGB"
        r, g, b = img.getpixel((20, 15))
        assert r > 150 and g < 80 and b < 80
    renamed = tmp_path / "not-really.jpg"  # the name is not trusted, the content is
    renamed.write_bytes(heic.read_bytes())
    assert sniff_format(renamed.read_bytes()) == "heic"
    with pytest.raises(UnsupportedImageError):
        sniff_format(b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isommp42")  # an MP4 video


def test_folder_with_heic_avif_and_a_broken_heic(tmp_path, colour_spec):
    photos = tmp_path / "photos"
    photos.mkdir()
    save(photos / "IMG_1.HEIC", "HEIF", (20, 20, 200))
    save(photos / "b.avif", "AVIF", (20, 200, 20))
    (photos / "IMG_2.heic").write_bytes((photos / "IMG_1.HEIC").read_bytes()[:120])  # truncated
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as coll:
        report = index_sources(coll, [str(photos)])
        assert report.added == 2
        assert [(u.rsplit("/", 1)[-1], "corrupt" in r or "truncated" in r) for u, r in report.skipped] == \
            [("IMG_2.heic", True)]
        assert coll.search_text(["blue"], k=1, mode="vector")[0][0].uri.endswith("IMG_1.HEIC")
