"""ravl info --collection DIR"""
from __future__ import annotations

from .common import add_collection_arg, emit_json, index_lines


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show a collection's counts, encoder, dimension and size on disk")
    add_collection_arg(p)
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..collection import open_collection

    with open_collection(args.collection, readonly=True) as coll:
        info = {**coll.info(), "missing_files": len(coll.missing_items())}  # 'ravl prune' removes them
    if args.json:
        emit_json(info)
    else:
        for key, value in info.items():
            if key == "size_bytes":
                value = f"{value} ({value / 2**20:.1f} MiB)"
            if key == "index":
                budget = value.get("memory_budget")
                value = value["kind"] + (f" within {budget / 2**20:.1f} MiB" if budget else "")
            if key == "indexes":
                for line in index_lines(value):
                    print(line)
                continue
            print(f"{key}: {value}")
    return 0
