"""A deterministic corpus of hostile inputs for ravl's CLI: malformed images, manifests, COCO and
Karpathy files, query files and options. Built by the tests (nothing is committed); the same seed
always gives the same bytes. Each case is (name, argv) where argv is a `ravl` command line that
targets the collection ``COLL`` (substituted by the test)."""
from __future__ import annotations

import io
import json
import os
import random
import struct
import zlib
from pathlib import Path

from PIL import Image

COLL = "<COLL>"
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke showpage\n"


def _png(size=(24, 18), colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _encoded(fmt: str, colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (33, 21), colour).save(buf, format=fmt)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def bad_images(root: Path, seed: int = 8) -> list[Path]:
    """Files with image names and hostile content; returns the paths (FIFO and links included)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    made: dict[str, bytes] = {
        "ghostscript.jpg": EPS, "pdf.png": b"%PDF-1.4\n1 0 obj<<>>endobj\n",
        "svg.png": b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", "empty.png": b"",
        "random.jpg": bytes(rng.randrange(256) for _ in range(3000)), "bomb.png": png_claiming(30000, 30000),
        "bomb-mid.png": png_claiming(12100, 12000), "zero-size.png": png_claiming(0, 10),
    }
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp"),
                     ("TIFF", "tif")):
        good = _encoded(fmt, (rng.randrange(256), 90, 30))
        for cut in (len(good) // 3, len(good) - 5):
            made[f"cut{cut}.{ext}"] = good[:cut]
        flipped = bytearray(good)
        for _ in range(12):
            flipped[rng.randrange(8, len(flipped))] ^= 1 << rng.randrange(8)
        made[f"flipped.{ext}"] = bytes(flipped)
    paths = []
    for name, data in made.items():
        (root / name).write_bytes(data)
        paths.append(root / name)
    os.mkfifo(root / "fifo.png")
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "dangling.png").symlink_to(root / "missing.png")
    (root / "folder.jpg").mkdir()
    odd = os.path.join(os.fsencode(root), b"latin\xe9.png")
    with open(odd, "wb") as fh:
        fh.write(_png(colour=(10, 10, 250)))
    return paths + [root / "fifo.png", root / "zero.png", root / "dangling.png", root / "folder.jpg", Path(os.fsdecode(odd))]


def manifests(root: Path, image: Path) -> dict[str, Path]:
    """Malformed JSONL, CSV, COCO and Karpathy files naming ``image`` (a real image)."""
    root.mkdir(parents=True, exist_ok=True)
    img = str(image)
    deep = "[" * 100_000 + "]" * 100_000
    big_int = "9" * 5000
    files: dict[str, bytes] = {
        "latin1.jsonl": json.dumps({"image": img, "caption": "x"}).encode()[:-2] + b"caf\xe9\"}\n",
        "bom.jsonl": b"\xef\xbb\xbf" + json.dumps({"image": img, "caption": "a bom manifest"}).encode() + b"\n",
        "deep.jsonl": deep.encode() + b"\n",
        "bigint.jsonl": ('{"image": ' + json.dumps(img) + ', "n": ' + big_int + "}\n").encode(),
        "notobject.jsonl": b"[1, 2, 3]\n",
        "imagelist.jsonl": json.dumps({"image": [img]}).encode() + b"\n",
        "captionint.jsonl": json.dumps({"image": img, "caption": 5}).encode() + b"\n",
        "captionsdict.jsonl": json.dumps({"image": img, "captions": {"a": 1}}).encode() + b"\n",
        "nul.jsonl": json.dumps({"image": img + "\0x", "caption": "nul"}).encode() + b"\n",
        "surrogate.jsonl": b'{"image": "%s", "caption": "lone \\udcff surrogate"}\n' % img.encode(),
        "badjson.jsonl": b'{"image": \n',
        "empty.jsonl": b"",
        "latin1.csv": b"image,caption\n" + img.encode() + b",caf\xe9\n",
        "bom.csv": b"\xef\xbb\xbfimage,caption\n" + img.encode() + b",a bom csv\n",
        "noheader.csv": b"",
        "nul.csv": b"image,caption\n" + img.encode() + b",a\0b\n",
        "hugefield.csv": b"image,caption\n" + img.encode() + b",\"" + b"x" * 200_000 + b"\"\n",
        "coco-idlist.json": json.dumps({"images": [{"id": [1], "file_name": image.name}],
                                        "annotations": [{"image_id": [1], "caption": "x"}]}).encode(),
        "coco-strann.json": json.dumps({"images": [{"id": 1, "file_name": image.name}],
                                        "annotations": ["a caption", "another"]}).encode(),
        "coco-ints.json": json.dumps({"images": [1, 2], "annotations": []}).encode(),
        "coco-abs.json": json.dumps({"images": [{"id": 1, "file_name": "/etc/passwd"}],
                                     "annotations": [{"image_id": 1, "caption": "escape"}]}).encode(),
        "coco-dotdot.json": json.dumps({"images": [{"id": 1, "file_name": "../../../../etc/hostname"}],
                                        "annotations": []}).encode(),
        "karpathy-nofile.json": json.dumps({"images": [{"split": "test", "sentences": [{"raw": "x"}]}]}).encode(),
        "karpathy-strsent.json": json.dumps({"images": [{"filename": image.name, "split": "test",
                                                         "sentences": ["a plain string sentence"]}]}).encode(),
        "karpathy-intsent.json": json.dumps({"images": [{"filename": image.name, "split": "test",
                                                         "sentences": [5]}]}).encode(),
        "images12.json": b'{"images": [1, 2]}',
        "deep.json": deep.encode(),
        "bigint.json": ('{"images": [], "x": ' + big_int + "}").encode(),
        "latin1.json": b'{"images": [], "annotations": [], "x": "caf\xe9"}',
    }
    return _write_with_fifo(root, files)


def query_files(root: Path, image: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "latin1.jsonl": b'{"text": "caf\xe9"}\n', "bom.jsonl": b'\xef\xbb\xbf{"text": "red"}\n',
        "deep.jsonl": ("[" * 50_000 + "]" * 50_000).encode() + b"\n", "bigint.jsonl": b'{"text": ' + b"9" * 5000 + b"}\n",
        "both.jsonl": json.dumps({"text": "red", "image": str(image)}).encode() + b"\n",
        "eps.jsonl": json.dumps({"image": str(root / "q.jpg")}).encode() + b"\n", "empty.jsonl": b"\n\n",
    }
    (root / "q.jpg").write_bytes(EPS)
    return _write_with_fifo(root, files)


def cases(base: Path, good_image: Path) -> list[tuple[str, list[str]]]:
    """Every hostile command line: (case name, argv with COLL for the collection)."""
    imgs = bad_images(base / "imgs")
    mans = manifests(base / "manifests", good_image)
    qs = query_files(base / "queries", good_image)
    out: list[tuple[str, list[str]]] = [("index folder of bad images", ["index", str(base / "imgs"), "-c", COLL])]
    for p in imgs:
        out.append((f"index {p.name}", ["index", str(p), "-c", COLL]))
        if p.name not in ("folder.jpg",):
            out.append((f"search --image {p.name}", ["search", "-c", COLL, "--image", str(p)]))
    for name, p in mans.items():
        out.append((f"index {name}", ["index", str(p), "-c", COLL]))
    for name in ("coco-abs.json", "coco-dotdot.json", "karpathy-strsent.json"):
        out.append((f"index {name} --images-root", ["index", str(mans[name]), "-c", COLL, "--images-root",
                                                    str(good_image.parent)]))
    for name, p in qs.items():
        out.append((f"search --queries {name}", ["search", "-c", COLL, "--queries", str(p)]))
    for opts in (["--workers", "-1"], ["--workers", "0"], ["--batch-size", "0"], ["--batch-size", "-5"],
                 ["--workers", "9" * 30], ["--batch-size", "9" * 5000], ["--split", "nope"]):
        out.append((f"index {' '.join(o[:12] for o in opts)}", ["index", str(good_image), "-c", COLL, *opts]))
    for opts in (["--k", "0"], ["--k", "-3"], ["--k", "9" * 5000], ["--k", "1e3"], ["--target", "videos"],
                 ["--text", ""], ["--text", "   "], ["--text", "\udcff\udcfe"], ["--text", "x" * 100_000]):
        argv = ["search", "-c", COLL, *opts]
        if "--text" not in opts:
            argv += ["--text", "red"]
        out.append((f"search {' '.join(o[:12] for o in opts)}", argv))
    for argv in (["info", "-c", str(base / "nowhere")], ["search", "-c", str(base / "imgs"), "--text", "red"],
                 ["info", "-c", str(good_image)], ["index", str(base / "missing-source"), "-c", COLL]):
        out.append((" ".join(argv[:2]) + " odd collection", argv))
    return out


def _write_with_fifo(root: Path, files: dict[str, bytes]) -> dict[str, Path]:
    """Write ``files`` under ``root`` and add a FIFO named ``fifo.jsonl``; name -> path."""
    out = {}
    for name, data in files.items():
        (root / name).write_bytes(data)
        out[name] = root / name
    os.mkfifo(root / "fifo.jsonl")
    out["fifo.jsonl"] = root / "fifo.jsonl"
    return out
