"""ravl info --collection DIR"""
from __future__ import annotations

from .common import add_collection_arg, emit_json


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show a collection's counts, encoder, dimension and size on disk")
    add_collection_arg(p)
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..collection import open_collection

    with open_collection(args.collection, readonly=True) as coll:
        info = coll.info()
    if args.json:
        emit_json(info)
    else:
        for key, value in info.items():
            if key == "size_bytes":
                value = f"{value} ({value / 2**20:.1f} MiB)"
            if key == "indexes":
                for name, f in value.items():
                    print(f"index {name}: {f.get('kind')} ({f.get('factory')}) over {f.get('count')} vectors, "
                          f"{(f.get('bytes') or 0) / 2**20:.1f} MiB, recall@10 ~{f.get('recall_at_10')}, "
                          f"search {f.get('search') or {}}, built in {f.get('build_seconds')}s at {f.get('built_at')}")
                continue
            print(f"{key}: {value}")
    return 0
