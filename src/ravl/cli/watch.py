"""ravl watch DIR... --collection DIR"""
from __future__ import annotations

from .common import add_collection_arg, add_vector_dtype_arg, log, progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("watch", help="keep a collection in step with folders while it runs (Ctrl-C stops)",
                       description="Index the folders once, then follow them: new and changed images are indexed, "
                                   "renamed ones keep their item, deleted ones are removed, edited sidecars replace "
                                   "their captions. Changes are written in batches once the folder has been quiet "
                                   "for --debounce seconds. Ctrl-C stops cleanly. Needs pip install 'ravl[watch]'.")
    p.add_argument("folders", nargs="+", metavar="DIR", help="folders of images to follow")
    add_collection_arg(p)
    p.add_argument("--encoder", metavar="SPEC", default=None, help="encoder for a new collection (default: 'default')")
    p.add_argument("--debounce", type=float, default=1.0, metavar="SECONDS",
                   help="quiet time before a batch of changes is written (default 1.0)")
    p.add_argument("--keep-missing", action="store_true", help="keep items whose file is gone")
    p.add_argument("--prune-missing", action="store_true",
                   help="remove missing items even when a folder looks emptied or unmounted")
    add_vector_dtype_arg(p)
    p.set_defaults(run=run)


def run(args) -> int:
    import time

    from ..collection import open_collection
    from ..ingest.watch import watch_folders

    def ready(report) -> None:
        bar.close()  # the first pass is done: from here on, a line per batch
        print(report.summary(), flush=True)
        for note in report.notes:
            log(note)
        log(f"watching {', '.join(args.folders)} (Ctrl-C stops)")

    def batch(report) -> None:
        print(f"{time.strftime('%H:%M:%S')} {report.summary()}", flush=True)
        for uri, reason in report.skipped[:20]:
            log(f"skipped {uri}: {reason}")
        for note in report.notes:
            log(note)

    with open_collection(args.collection, encoder=args.encoder, create=True, vector_dtype=args.vector_dtype) as coll, \
            progress_bar("indexing") as bar:
        totals = watch_folders(coll, args.folders, debounce=args.debounce, keep_missing=args.keep_missing,
                               prune_missing=args.prune_missing, on_ready=ready, on_batch=batch, progress=bar)
    log(f"stopped after {totals.batches} batches: {totals.added} added, {totals.updated} updated, "
        f"{totals.moved} moved, {totals.removed} removed")
    return 0
