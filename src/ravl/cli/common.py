"""Helpers shared by CLI commands: progress bars on stderr, JSON lines on stdout."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def add_collection_arg(parser, required: bool = True) -> None:
    parser.add_argument("--collection", "-c", required=required, metavar="DIR",
                        help="collection folder (created by 'ravl index')")


#: the index kinds (ravl.collection.INDEX_KINDS; spelled out so parsing needs no numpy/FAISS import)
INDEX_KINDS = ("auto", "flat", "hnsw", "ivfpq")


def add_index_args(parser) -> None:
    parser.add_argument("--index", choices=INDEX_KINDS, default=None,
                        help="vector index: auto (exact while small, then HNSW or IVF-PQ to fit the budget; the "
                             "default for a new collection), flat (exact), hnsw, ivfpq (compressed codes, shortlist "
                             "re-ranked exactly); default for an existing collection: its recorded choice")
    parser.add_argument("--memory-budget", metavar="SIZE", default=None,
                        help="memory for the collection's three indexes together, e.g. 2GB or 512MB; 'none' for no "
                             "limit (default: the recorded budget, none for a new collection)")


#: storage dtypes (ravl.store.codec.VECTOR_DTYPES; spelled out so parsing needs no numpy import)
VECTOR_DTYPES = ("float32", "float16")


def add_vector_dtype_arg(parser, more: str = "") -> None:
    parser.add_argument("--vector-dtype", choices=VECTOR_DTYPES, default=None,
                        help="how a new collection stores its vectors: float32 (the default) or float16 (half the "
                             "bytes; searches still compute in float32); fixed when the collection is created" + more)


def index_settings(args) -> dict | None:
    """``set_index_config``'s keyword arguments from ``--index``/``--memory-budget`` (None for an
    option not given: the recorded value stays; budget 0: none), or None when neither was given."""
    from ..collection import parse_memory_budget

    if args.index is None and args.memory_budget is None:
        return None
    budget = args.memory_budget
    if budget is not None:
        budget = 0 if budget.strip().lower() == "none" else parse_memory_budget(budget)
    return {"kind": args.index, "memory_budget": budget}


def _size(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def index_lines(facts: dict[str, dict]) -> list[str]:
    """One line per index: kind, size, recall and how it was built."""
    lines = []
    for name, f in facts.items():
        if f.get("shared_with"):
            lines.append(f"index {name}: shared: the {f['shared_with']} index answers (every item's features are its "
                         "embedding, stored once)")
            continue
        recall = f.get("recall_at_10")
        search = ", ".join(f"{k}={v}" for k, v in sorted((f.get("search") or {}).items()))
        lines.append(f"index {name}: {f.get('kind')} ({f.get('factory')}) over {f.get('count')} vectors, "
                     f"{_size(f.get('bytes') or 0)}, recall@10 "
                     f"{'n/a' if recall is None else format(recall, '.3f')}"
                     + (f" ({f['recall_note']})" if f.get("recall_note") else "")
                     + (f" on {f['recall_query_kind']} queries" if f.get("recall_query_kind") else "")
                     + (f", search {search}" if search else "")
                     + f", built in {f.get('build_seconds')}s at generation {f.get('generation')}"
                     + (f"; {f['over_budget']}" if f.get("over_budget") else "")
                     + (f"; {f['note']}" if f.get("note") else ""))
    return lines


def add_search_knobs(parser) -> None:
    parser.add_argument("--ef-search", type=int, default=None, metavar="N",
                        help="HNSW indexes: candidates explored per query (default: tuned at build for recall@10 "
                             ">= 0.95; higher = more exact, slower)")
    parser.add_argument("--nprobe", type=int, default=None, metavar="N",
                        help="IVF-PQ indexes: inverted lists visited per query (default: tuned at build for "
                             "recall@10 >= 0.95)")
    parser.add_argument("--rerank", type=int, default=None, metavar="N",
                        help="IVF-PQ indexes: candidates per hit re-scored exactly (default: tuned at build for "
                             "recall@10 >= 0.95; higher = more exact, slower)")


class _Bar:
    """A tqdm bar as a ``(done, total)`` callback; ``describe(text)`` names the step it counts next
    (an index build's "index images: adding"), shown at once and counted from 0."""

    def __init__(self, bar):
        self._bar = bar

    def __call__(self, done: int, total: int) -> None:
        bar = self._bar
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh() if done == total else bar.update(0)

    def describe(self, text: str) -> None:
        self._bar.reset()
        self._bar.total = None  # a step without counts (training) shows none
        self._bar.unit = "vec"
        self._bar.set_description_str(text, refresh=True)

    def close(self) -> None:
        """End the bar before its ``with`` block does (a job that goes on without it)."""
        self._bar.close()


@contextmanager
def progress_bar(desc: str, unit: str = "img") -> Iterator:
    """A tqdm bar on stderr, exposed as a ``(done, total)`` callback that can name its steps."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    try:
        yield _Bar(bar)
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
