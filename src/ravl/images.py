"""The one safe way to open an image: every path (CLI, server, eval, ingest) comes through here.

- **Regular files only.** A file is opened with ``O_NONBLOCK`` and checked with ``fstat`` before a
  byte is read, so a FIFO named ``.png`` cannot hang ravl and a symlink to ``/dev/zero`` or another
  device is refused; a symlink to a regular file is fine.
- **Byte cap.** Reads stop at :data:`MAX_FILE_BYTES` (+1 to detect more) whatever ``st_size``
  says, so a file that grows while read cannot exhaust memory.
- **Allow-listed formats by content.** JPEG, PNG, GIF, WebP, BMP, TIFF, AVIF (Pillow) and
  HEIC/HEIF (the ``pillow-heif`` plugin, ``pip install 'ravl[heif]'``), recognised by magic
  bytes (the file name is not trusted), and Pillow is told to try only those decoders: no
  PostScript/EPS (Pillow would run Ghostscript), PDF, SVG or any format that shells out.
- **Decompression bombs.** Images over :data:`MAX_PIXELS` pixels are refused from the header,
  before decoding; this is the limit docs/encoders.md documents (Pillow's own warning threshold is
  switched off for these calls in favour of it).

Every failure is an :class:`~ravl.errors.ImageError` with a reason, never a crash. Handles
truncated and corrupt files, EXIF rotation, palette/alpha images (composited on white) and
16-bit/greyscale modes. JPEGs are decoded at reduced scale (``draft``) when far larger than the
model needs, which is most of decode time.
"""
from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, UnsupportedImageError
from .fsutil import FileTooLargeError, NotRegularFileError, read_regular

#: refuse images with more pixels than this (about 12k x 12k)
MAX_PIXELS = 144_000_000
#: refuse files larger than this (read stops here whatever the file system reports)
MAX_FILE_BYTES = 256 * 1024 * 1024

#: magic bytes -> file extension
_MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"BM", "bmp"), (b"II*\x00", "tif"), (b"MM\x00*", "tif"))
#: extension -> the only Pillow decoder tried for it
_PIL_FORMAT = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "tif": "TIFF", "webp": "WEBP",
               "heic": "HEIF", "avif": "AVIF"}
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "bmp": "image/bmp",
               "tif": "image/tiff", "webp": "image/webp", "heic": "image/heic", "avif": "image/avif"}
#: ISO base media file brands (the ``ftyp`` box): HEIF/HEIC stills and sequences, AVIF
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB
    width: int  # original size, before any draft reduction
    height: int
    sha256: str
    size: int


def sniff_format(data: bytes, name: str = "image") -> str:
    """The image format by content (the file name is ignored); raises UnsupportedImageError."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    if data[4:8] == b"ftyp":  # ISO base media: the major brand, then the compatible ones
        size = int.from_bytes(data[:4], "big")
        brands = {data[8:12]} | {data[i:i + 4] for i in range(16, min(max(size, 16), 64), 4)}
        if brands & _AVIF_BRANDS:
            return "avif"
        if brands & _HEIF_BRANDS:
            return "heic"
    raise UnsupportedImageError(f"{name}: not an image ravl accepts: the content is not a JPEG, PNG, GIF, WebP, "
                                "BMP, TIFF, HEIC or AVIF image (the file name's extension is not trusted); convert it")


_heif_ready = False


def _heif_opener(name: str) -> None:
    """Register the pillow-heif plugin (the HEIF decoder) once; UnsupportedImageError without it."""
    global _heif_ready
    if _heif_ready:
        return
    try:
        import pillow_heif
    except ImportError:
        raise UnsupportedImageError(f"{name}: HEIC/HEIF images need the pillow-heif plugin: "
                                    "pip install 'ravl[heif]'") from None
    pillow_heif.register_heif_opener()
    _heif_ready = True


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency composited on white (stamps, logos and screenshots stay legible)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v * (1 / 256)).convert("L")
    return img.convert("RGB") if img.mode != "RGB" else img


def _too_big(name: str, width: int, height: int) -> ImageError:
    return ImageError(f"{name}: {width}x{height} exceeds the {MAX_PIXELS:,}-pixel limit "
                      "(possible decompression bomb); resize it first")


def decode_image(data: bytes, *, min_side: int = 0, name: str = "image") -> tuple[Image.Image, int, int]:
    """Bytes -> (RGB image, original width, original height); raises ImageError with the reason."""
    if not data:
        raise ImageError(f"{name}: empty file")
    fmt = _PIL_FORMAT[sniff_format(data, name)]
    if fmt == "HEIF":
        _heif_opener(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS is checked below
            img = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise _too_big(name, width, height)
            if img.format == "JPEG" and min_side:
                scale = min(width, height) / min_side
                if scale >= 2:
                    img.draft("RGB", (max(1, int(width / scale)), max(1, int(height / scale))))
            img.load()
            img = ImageOps.exif_transpose(img) or img
            if getattr(img, "is_animated", False):
                img.seek(0)
            rgb = to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: corrupt or truncated {fmt} image (its decoder cannot read it)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: exceeds the {MAX_PIXELS:,}-pixel limit (possible decompression bomb); "
                         "resize it first") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, RecursionError,
            struct.error, ZeroDivisionError, IndexError, KeyError, TypeError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({type(exc).__name__}: {exc})"[:300]) from None
    if rgb.width < 1 or rgb.height < 1:
        raise ImageError(f"{name}: image has no pixels")
    return rgb, width, height


def read_exif(data: bytes, *, name: str = "image") -> Image.Exif | None:
    """The EXIF of an image's bytes (header only, no pixels decoded), through the same allow-list;
    None when it has none or it cannot be read."""
    try:
        fmt = _PIL_FORMAT[sniff_format(data, name)]
        if fmt == "HEIF":
            _heif_opener(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                exif = img.getexif()
                exif.get_ifd(0x8769), exif.get_ifd(0x8825)  # parse the sub-IFDs while the file is open
    except Exception:  # a photo with unreadable EXIF is still a photo: just no metadata
        return None
    return exif if len(exif) else None


def read_file(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES, head: bool = False) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` of them (``head``: just the first
    ``max_bytes``); anything else is an ImageError."""
    path = Path(path)
    try:
        return read_regular(path, max_bytes, head=head)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except NotRegularFileError as exc:
        what = "is a folder, not an image" if "folder" in str(exc) else \
            "not a regular file (a FIFO, device or socket); give an image file"
        raise ImageError(f"{path}: {what}") from None
    except FileTooLargeError:
        raise ImageError(f"{path}: file is over the {max_bytes / 2**20:.0f} MiB limit; resize or recompress it") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise ImageError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


def read_head(path: str | Path, n: int = 16) -> bytes:
    """The first ``n`` bytes of a regular file (to sniff its format); ImageError otherwise."""
    return read_file(path, max_bytes=n, head=True)


def load_image(path: str | Path, *, min_side: int = 0) -> LoadedImage:
    """Read, hash and decode one image file."""
    path = Path(path)
    data = read_file(path)
    img, width, height = decode_image(data, min_side=min_side, name=str(path))
    return LoadedImage(img, width, height, hashlib.sha256(data).hexdigest(), len(data))


def open_image(path: str | Path) -> Image.Image:
    """Just the RGB image (for queries)."""
    return load_image(path).image


def decode_data_url(text: str, *, max_bytes: int = MAX_FILE_BYTES, name: str = "data URL") -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URL, or of plain base64 text; ImageError for
    anything else or for more than ``max_bytes`` (the image itself is checked by :func:`decode_image`)."""
    import base64
    import binascii

    body = text.strip()
    if body.startswith("data:"):
        head, sep, body = body.partition(",")
        if not sep or ";base64" not in head:
            raise ImageError(f"{name}: expected 'data:image/png;base64,...'")
        if not head[5:].lower().startswith("image/"):
            raise ImageError(f"{name}: the data URL's type must be image/..., got {head[5:].split(';')[0]!r}")
    if len(body) > (max_bytes + 2) // 3 * 4 + 4:
        raise ImageError(f"{name}: over the {max_bytes / 2**20:.1f} MiB image limit; send a smaller image")
    try:
        data = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{name}: not valid base64") from None
    if not data:
        raise ImageError(f"{name}: empty image")
    return data
