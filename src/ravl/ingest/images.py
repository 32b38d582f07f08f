"""Safe image loading: every failure becomes an :class:`ImageError` with a reason, never a crash.

Handles empty, truncated, corrupt and non-image files, decompression bombs, EXIF rotation,
palette/alpha images (composited on white) and 16-bit/greyscale modes. JPEGs are decoded at
reduced scale (``draft``) when far larger than the model needs, which is most of decode time.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

#: refuse images with more pixels than this (about 12k x 12k); Pillow's own default warns at 89M
MAX_PIXELS = 144_000_000
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB
    width: int  # original size, before any draft reduction
    height: int
    sha256: str
    size: int


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency composited on white (stamps, logos and screenshots stay legible)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v * (1 / 256)).convert("L")
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_image(data: bytes, *, min_side: int = 0, name: str = "image") -> tuple[Image.Image, int, int]:
    """Bytes -> (RGB image, original width, original height); raises ImageError with the reason."""
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{name}: {width}x{height} exceeds the {MAX_PIXELS:,}-pixel limit "
                                 "(possible decompression bomb); resize it first")
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
        raise ImageError(f"{name}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: rejected as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({exc})") from None
    if rgb.width < 1 or rgb.height < 1:
        raise ImageError(f"{name}: image has no pixels")
    return rgb, width, height


def read_file(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"{path}: file is {size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES / 2**20:.0f} MiB limit")
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None


def load_image(path: str | Path, *, min_side: int = 0) -> LoadedImage:
    """Read, hash and decode one image file."""
    path = Path(path)
    data = read_file(path)
    img, width, height = decode_image(data, min_side=min_side, name=str(path))
    return LoadedImage(img, width, height, hashlib.sha256(data).hexdigest(), len(data))


def open_image(path: str | Path) -> Image.Image:
    """Just the RGB image (for queries)."""
    return load_image(path).image
