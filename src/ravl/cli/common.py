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
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def log(message: str) -> None:
    sys.stderr.write(message + "\n")


def finish_report(args, report: dict, extra_markdown: str = "") -> int:
    """``ravl eval ...``: write the report files when --out is given; print JSON or Markdown to stdout."""
    import copy

    from ..eval.report import render_markdown, write_report

    if args.out:
        paths = write_report(args.out, report)
        if extra_markdown:
            with open(paths["markdown"], "a", encoding="utf-8") as fh:
                fh.write("\n" + extra_markdown)
        log("report: " + ", ".join(str(p) for p in paths.values()))
    if args.json:
        brief = copy.deepcopy(report)
        (brief.get("captioning") or {}).pop("per_image", None)
        ((brief.get("extra") or {}).get("zeroshot") or {}).pop("predictions", None)
        ((brief.get("extra") or {}).get("imagine") or {}).pop("rows", None)
        emit_json(brief)
    else:
        print(render_markdown(report) + ("\n" + extra_markdown if extra_markdown else ""))
    return 0
