"""ravl reindex --collection DIR [--index auto|flat|hnsw|ivfpq] [--memory-budget SIZE]"""
from __future__ import annotations

from .common import add_collection_arg, add_index_args, emit_json


def add_parser(sub) -> None:
    p = sub.add_parser("reindex", help="rebuild a collection's vector indexes (choose the kind and memory budget)",
                       description="Rebuild the images, features and captions indexes from the vectors stored in the "
                                   "collection, as the given kind within the memory budget (also retrains IVF-PQ).")
    add_collection_arg(p)
    add_index_args(p)
    p.add_argument("--json", action="store_true", help="print the indexes' facts as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..collection import open_collection

    with open_collection(args.collection) as coll:
        old = coll.index_config()
        facts = coll.reindex(args.index or old["kind"],
                             args.memory_budget if args.memory_budget is not None else old["memory_budget"])
        config = coll.index_config()
    if args.json:
        emit_json({"index": config, "indexes": facts})
    else:
        budget = config["memory_budget"]
        print(f"index {config['kind']}" + (f" within {budget / 2**20:.1f} MiB" if budget else ""))
        for name, f in facts.items():
            print(f"{name}: {f.get('kind')} ({f.get('factory')}), {f.get('count')} vectors, "
                  f"{(f.get('bytes') or 0) / 2**20:.1f} MiB, recall@10 ~{f.get('recall_at_10')}, "
                  f"search {f.get('search') or {}}, {f.get('build_seconds')}s")
    return 0
