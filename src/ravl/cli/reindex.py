"""ravl reindex --collection DIR [--index auto|flat|hnsw|ivfpq] [--memory-budget SIZE]"""
from __future__ import annotations

from .common import add_collection_arg, add_index_args, emit_json, index_lines, index_settings, progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("reindex", help="rebuild a collection's vector indexes (choose the kind and memory budget)",
                       description="Rebuild the images, features and captions indexes from the vectors stored in the "
                                   "collection, as the given kind within the memory budget (IVF-PQ is retrained), "
                                   "and record the choice for later writes. Without options: rebuild as recorded.")
    add_collection_arg(p)
    add_index_args(p)
    p.add_argument("--json", action="store_true", help="print the settings and each index's facts as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..collection import open_collection

    index_settings(args)  # a bad --memory-budget fails before the collection is opened
    with open_collection(args.collection) as coll:
        settings = index_settings(args) or {}
        coll.set_index_config(**settings)  # a budget too small fails before any progress bar
        with progress_bar("reindexing", unit="vec") as bar:
            facts = coll.reindex(**settings, progress=bar)
        config = coll.index_config()
    if args.json:
        emit_json({"index": config, "indexes": facts})
    else:
        budget = config["memory_budget"]
        print(f"index {config['kind']}" + (f" within {budget / 2**20:.1f} MiB" if budget else ""))
        for line in index_lines(facts):
            print(line)
    return 0
