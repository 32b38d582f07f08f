"""ravl.images, the one safe way to open an image: allow-listed formats by content, regular files
only, byte-capped reads, the documented decompression-bomb limit; and ingest skipping every hostile
file with a reason while indexing the rest."""
from __future__ import annotations

import io
import json
import os
import struct
import threading
import zlib

import pytest
from PIL import Image

from conftest import make_image
from ravl.collection import open_collection
from ravl.errors import ImageError, UnsupportedImageError
from ravl.images import MAX_PIXELS, decode_image, load_image, read_file, read_head, sniff_format
from ravl.ingest.pipeline import index_sources

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"


def png_bytes(size=(8, 8), mode="RGB", colour=0) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes: a PNG whose header declares ``width`` x ``height`` 1-bit pixels, with
    one short row of data (a real bomb compresses to the same shape)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_formats_are_allow_listed_by_content(tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(EPS)
    with pytest.raises(UnsupportedImageError, match="not a JPEG, PNG"):
        load_image(fake)
    for data in (b"%PDF-1.4\n", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"\x00" * 64, b"P6\n1 1\n255\n\0\0\0"):
        with pytest.raises(UnsupportedImageError):
            decode_image(data, name="x.png")
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp"),
                     ("TIFF", "tif")):
        buf = io.BytesIO()
        Image.new("RGB", (9, 7), (10, 200, 30)).save(buf, format=fmt)
        assert sniff_format(buf.getvalue()) == ext
        img, w, h = decode_image(buf.getvalue())
        assert (img.mode, w, h) == ("RGB", 9, 7)
    # the right magic bytes followed by garbage: a clean error, not a crash
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_image(png_bytes()[:40])


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    done = threading.Event()

    def attempt():
        with pytest.raises(ImageError, match="not a regular file"):
            read_file(fifo)
        done.set()

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(10)
    assert done.is_set(), "reading a FIFO blocked"
    dev = tmp_path / "zero.png"
    dev.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match="not a regular file"):
        read_file(dev)
    with pytest.raises(ImageError, match="not a regular file"):
        read_head(dev)
    with pytest.raises(ImageError, match="is a folder"):
        read_file(tmp_path)
    with pytest.raises(ImageError, match="not found"):
        read_file(tmp_path / "missing.png")
    real = make_image(tmp_path / "real.png", (1, 2, 3))
    link = tmp_path / "link.png"
    link.symlink_to(real)
    assert load_image(link).image.getpixel((0, 0)) == (1, 2, 3)


def test_reads_are_capped_whatever_the_size_says(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes() + b"\0" * 5000)
    with pytest.raises(ImageError, match="over the"):
        read_file(path, max_bytes=4096)
    assert len(read_file(path, max_bytes=len(path.read_bytes()))) == len(path.read_bytes())


def test_decompression_bomb_limit_is_the_documented_one():
    assert MAX_PIXELS == 144_000_000
    for width, height in ((12_100, 12_000), (20_000, 10_000)):  # 145.2 M; 200 M (past Pillow's hard limit)
        with pytest.raises(ImageError, match="144,000,000-pixel limit"):
            decode_image(png_claiming(width, height), name="bomb.png")
    # 95 M pixels: above Pillow's 89.5 M warning but inside ravl's limit, so it gets as far as
    # decoding (and fails there only because this file holds one row of data)
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_image(png_claiming(10_000, 9_500), name="big.png")
    _, w, h = decode_image(png_bytes((1000, 1000), mode="1"))
    assert (w, h) == (1000, 1000)


def test_ingest_skips_hostile_files_and_indexes_the_rest(tmp_path, colour_spec):
    root = tmp_path / "photos"
    make_image(root / "red.png", (255, 0, 0))
    make_image(root / "blue.jpg", (0, 0, 255))
    (root / "ghost.jpg").write_bytes(EPS)
    os.mkfifo(root / "fifo.png")
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "bomb.png").write_bytes(png_claiming(12_100, 12_000))
    (root / "empty.png").write_bytes(b"")
    (root / "cut.png").write_bytes(png_bytes((64, 64), colour=(1, 2, 3))[:60])
    names = sorted(p.name for p in root.iterdir())
    manifest = tmp_path / "all.jsonl"  # a folder walk lists regular files only; a manifest names them all
    manifest.write_text("".join(json.dumps({"image": str(root / n), "caption": n}) + "\n" for n in names))
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as coll:
        report = index_sources(coll, [manifest])
        skipped = {os.path.basename(u): r for u, r in report.skipped}
        assert report.added == 2
        assert set(skipped) == {"ghost.jpg", "fifo.png", "zero", "bomb.png", "empty.png", "cut.png"}  # uris are resolved
        assert "not a JPEG, PNG" in skipped["ghost.jpg"]
        assert "not a regular file" in skipped["fifo.png"] and "not a regular file" in skipped["zero"]
        assert "pixel limit" in skipped["bomb.png"]
        assert coll.search_text(["red"], k=1)[0][0].uri.endswith("red.png")
