"""Sync: after a run, items whose file is gone from a folder being indexed are removed, so the
collection matches the folder. A guard keeps a folder that is empty, unreadable or looks
unmounted (or a sync that would remove more than :data:`GUARD_SHARE` of a folder's items) from
emptying the collection: nothing is removed then without ``prune_missing``."""
from __future__ import annotations

from pathlib import Path

from .report import IngestReport
from .sources import SourceScan

#: a sync that would remove more than this share of a folder's items is held back ...
GUARD_SHARE = 0.5
#: ... when it would remove more than this many (a small folder may lose most of its files)
GUARD_MIN = 10


def _held(report: IngestReport, where: str, gone: int, of: int, why: str) -> None:
    report.missing += gone
    report.notes.append(f"{gone} of {of} items under {where} have no file now ({why}); nothing was removed: "
                        "check the folder (is it mounted?), then run again with --prune-missing to remove them")


def sync_removals(collection, scan: SourceScan, report: IngestReport, *, prune_missing: bool = False) -> list[int]:
    """Ids of the items this sync removes (their files are gone from the scanned folders, or with
    ``scan.sync_all`` are in none of the sources); guarded folders add a note and keep theirs."""
    present = {r.uri for r in scan.records}
    states = collection.file_states()
    remove: list[int] = []
    claimed: set[int] = set()
    for folder in scan.folders:
        under = [(uri, s[0]) for uri, s in states.items() if folder.covers(uri)]
        gone = [item_id for uri, item_id in under if uri not in present and item_id not in claimed]
        claimed.update(gone)
        if not gone:
            continue
        if not prune_missing and not folder.records:
            _held(report, str(folder.root), len(gone), len(under), "the folder holds no images now")
        elif not prune_missing and len(gone) > GUARD_MIN and len(gone) > GUARD_SHARE * len(under):
            _held(report, str(folder.root), len(gone), len(under), f"more than {GUARD_SHARE:.0%} of them")
        else:
            remove += gone
    if scan.sync_all:
        gone = [s[0] for uri, s in states.items() if uri not in present and s[0] not in claimed
                and not any(Path(uri).is_relative_to(f.root) and not f.covers(uri) for f in scan.folders)]
        if gone and not prune_missing and len(gone) > GUARD_MIN and len(gone) > GUARD_SHARE * len(states):
            _held(report, "the collection", len(gone), len(states), f"more than {GUARD_SHARE:.0%} of them")
        else:
            remove += gone
    return remove


def apply_sync(collection, scan: SourceScan, report: IngestReport, *, prune_missing: bool = False) -> None:
    """Remove what :func:`sync_removals` finds, in bounded chunks (counted in ``report.removed``)."""
    ids = sync_removals(collection, scan, report, prune_missing=prune_missing)
    if ids:
        report.removed += collection.remove_items(ids)


def count_missing(collection, scan: SourceScan, report: IngestReport) -> None:
    """With ``--keep-missing``: count (do not remove) the items of the scanned folders whose file is gone."""
    present = {r.uri for r in scan.records}
    report.missing += sum(1 for uri in collection.file_states() if uri not in present
                          and any(f.covers(uri) for f in scan.folders))
