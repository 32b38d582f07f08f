"""Helpers shared by CLI commands: progress bars on stderr, JSON lines on stdout."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def add_collection_arg(parser, required: bool = True) -> None:
    parser.add_argument("--collection", "-c", required=required, metavar="DIR",
                        help="collection folder (created by 'ravl index')")


@contextmanager
def progress_bar(desc: str, unit: str = "img") -> Iterator:
    """A tqdm bar on stderr, exposed as a ``(done, total)`` callback."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh() if done == total else bar.update(0)

    try:
        yield update
    finally:
        bar.close()


def emit_json(obj) -> None:
    """One JSON line, valid UTF-8 always: a file name that is not UTF-8 comes out as \\udcXX
    escapes (json.loads gives back the same str, os.fsencode the original bytes)."""
    line = json.dumps(obj, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(obj)
    sys.stdout.write(line + "\n")


def safe_streams() -> None:
    """Plain-text output writes a non-UTF-8 file name as its original bytes (like ls), and a
    message about one can always be printed."""
    for stream, errors in ((sys.stdout, "surrogateescape"), (sys.stderr, "backslashreplace")):
        try:
            stream.reconfigure(errors=errors)  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass  # not a TextIOWrapper (captured by a test or an embedding app)


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
