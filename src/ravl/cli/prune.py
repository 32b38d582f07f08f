"""ravl prune --collection DIR"""
from __future__ import annotations

from contextlib import nullcontext

from .common import add_collection_arg, emit_json, log, progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("prune", help="remove items whose image file is gone, from any source",
                       description="Remove the items whose file no longer exists (with their vectors, captions and "
                                   "index entries), whatever indexed them. 'ravl info' counts them first.")
    add_collection_arg(p)
    p.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    p.add_argument("--json", action="store_true", help="print the items as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..collection import open_collection

    open_collection(args.collection, readonly=True).close()  # a missing collection is an error, not created
    with open_collection(args.collection, create=not args.dry_run, readonly=args.dry_run) as coll, \
            (nullcontext() if args.dry_run else progress_bar("pruning", unit="vec")) as bar:
        gone = coll.prune_missing(dry_run=args.dry_run, progress=bar)  # a rebuild shows its steps
    if args.json:
        emit_json({"dry_run": args.dry_run, "items": [{"id": i, "uri": u} for i, u in gone]})
        return 0
    for item_id, uri in gone[:20]:
        log(f"{'missing' if args.dry_run else 'removed'} {item_id}: {uri}")
    if len(gone) > 20:
        log(f"... and {len(gone) - 20} more")
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(gone)} items whose file is gone")
    return 0
