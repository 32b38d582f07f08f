"""Helpers shared by CLI commands: progress bars on stderr, JSON lines on stdout."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def add_collection_arg(parser, required: bool = True) -> None:
    parser.add_argument("--collection", "-c", required=required, metavar="DIR",
                        help="collection folder (created by 'ravl index')")


def add_search_knobs(parser) -> None:
    parser.add_argument("--ef-search", type=int, default=None, metavar="N",
                        help="HNSW indexes: candidates explored per query (default: tuned at build for recall@10 >= 0.95)")
    parser.add_argument("--nprobe", type=int, default=None, metavar="N",
                        help="IVF-PQ indexes: inverted lists visited per query (default: tuned at build)")


def add_index_args(parser) -> None:
    from ..store.index_plan import KINDS

    parser.add_argument("--index", choices=KINDS, default=None,
                        help="vector index: auto (default: exact while small, then HNSW or IVF-PQ to fit the "
                             "budget), flat (exact), hnsw, ivfpq (compressed, re-ranked exactly)")
    parser.add_argument("--memory-budget", metavar="SIZE", default=None,
                        help="memory for all of the collection's indexes together, e.g. 2GB or 512MB")


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
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
