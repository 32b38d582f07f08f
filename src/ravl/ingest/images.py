"""Moved to :mod:`ravl.images` (the one safe way to open an image); kept as an alias."""
from __future__ import annotations

from ..images import (  # noqa: F401
                      MAX_FILE_BYTES,
                      MAX_PIXELS,
                      LoadedImage,
                      decode_image,
                      load_image,
                      open_image,
                      read_file,
                      sniff_format,
                      to_rgb,
)
