"""Reading user-supplied text and JSON files (manifests, COCO/Karpathy files, query files) so
that every way they can be wrong is a one-line error: regular files only (a FIFO cannot hang
ravl), a size cap, UTF-8 with or without a BOM, and JSON that is invalid, nested too deeply or
holds integers too long to convert."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import SourceError
from .fsutil import read_regular

#: manifests, COCO and Karpathy files larger than this are refused (Karpathy's COCO file is ~150 MB)
MAX_SOURCE_BYTES = 2 * 2**30


def read_text(path: Path, what: str = "file", error=SourceError) -> str:
    """A UTF-8 text file (a BOM is fine), read safely: regular files only, size-capped; every
    failure is ``error`` with a message that says what to fix."""
    try:
        data = read_regular(path, MAX_SOURCE_BYTES)
    except FileNotFoundError:
        raise error(f"cannot read {what} {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                    "save it as UTF-8") from None


def parse_json(text: str, where: str, error=SourceError):
    """json.loads with every way it can fail (bad syntax, nesting too deep, integers too long)
    turned into ``error``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer over 4,300 digits
        raise error(f"{where}: invalid JSON ({exc})") from None
