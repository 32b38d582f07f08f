"""Keeping a collection in step with folders while it runs (``ravl watch``): file events from
watchdog (inotify, FSEvents, ReadDirectoryChangesW, or polling) are gathered into debounced
batches, and each batch goes through the one write path (:func:`~ravl.ingest.pipeline.index_records`):
new and changed images are indexed, a renamed file's item follows it, an edited sidecar replaces
its captions, and items whose file is gone are removed (the same guard as a sync holds back a
removal that looks like an unmounted folder). The folders are synced once before watching."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MissingDependencyError, SourceError
from ..progress import Progress
from .folders import COLLECTION_DB, IMAGE_EXTENSIONS, folder_record, scan_folder
from .pipeline import index_records, index_sources
from .report import IngestReport
from .sync import GUARD_MIN, GUARD_SHARE

#: seconds without a new event before a batch is written (a copy of many files becomes one batch)
DEBOUNCE = 1.0


@dataclass
class WatchReport:
    batches: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, report: IngestReport) -> None:
        self.batches += 1
        self.added += report.added
        self.updated += report.updated
        self.moved += report.moved
        self.removed += report.removed
        self.skipped += report.skipped
        self.notes += report.notes


class _Changes:
    """Paths touched since the last batch (thread-safe; filled by watchdog's thread)."""

    def __init__(self, exclude: tuple[Path, ...]):
        self.lock = threading.Lock()
        self.paths: set[str] = set()
        self.last = 0.0
        self.exclude = tuple(str(e) for e in exclude)

    def dispatch(self, event) -> None:  # watchdog's handler protocol
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        with self.lock:
            for p in paths:
                p = os.fsdecode(p)
                if p and not any(p == e or p.startswith(e + os.sep) for e in self.exclude):
                    self.paths.add(p)
            self.last = time.monotonic()

    def take(self, debounce: float) -> set[str] | None:
        with self.lock:
            if not self.paths or time.monotonic() - self.last < debounce:
                return None
            out, self.paths = self.paths, set()
            return out


def _batch(changed: set[str]) -> tuple[list, list[str]]:
    """(records to index, paths that may have lost their item: files and whole folders)."""
    records: dict[str, object] = {}
    gone: list[str] = []
    for raw in sorted(changed):
        path = Path(raw)
        if path.suffix.lower() == ".txt":  # a sidecar: its image's captions
            for ext in IMAGE_EXTENSIONS:
                for image in (path.with_suffix(ext), path.with_suffix(ext.upper())):
                    if image.is_file():
                        records[str(image.resolve())] = folder_record(image)
            continue
        if path.is_dir():
            for rec in scan_folder(path).records:
                records[rec.uri] = rec
        elif path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            rec = folder_record(path)
            records[rec.uri] = rec
        elif not os.path.lexists(path):
            gone.append(str(path.resolve()) if path.parent.exists() else str(path))
    return list(records.values()), gone


def _removals(collection, roots: list[Path], gone: list[str], report: IngestReport, prune_missing: bool) -> list[int]:
    states = collection.file_states()
    ids = [s[0] for uri, s in states.items() if not os.path.lexists(uri)
           and any(uri == g or uri.startswith(g.rstrip(os.sep) + os.sep) for g in gone)]
    under = sum(1 for uri in states if any(Path(uri).is_relative_to(r) for r in roots))
    if ids and not prune_missing and len(ids) > GUARD_MIN and len(ids) > GUARD_SHARE * under:
        report.missing += len(ids)
        report.notes.append(f"{len(ids)} of {under} watched items have no file now (more than {GUARD_SHARE:.0%}); "
                            "nothing was removed: check the folder (is it mounted?), then run 'ravl index "
                            "--prune-missing' to remove them")
        return []
    return ids


def watch_folders(collection, folders: Iterable[str | Path], *, debounce: float = DEBOUNCE,
                  keep_missing: bool = False, prune_missing: bool = False, stop: threading.Event | None = None,
                  on_ready: Callable[[IngestReport], None] | None = None,
                  on_batch: Callable[[IngestReport], None] | None = None, poll: float = 0.2,
                  lock: AbstractContextManager | None = None, progress: Progress | None = None) -> WatchReport:
    """Sync ``folders`` into ``collection`` once (``on_ready`` gets that report; ``progress`` hears
    that first pass and its index builds), then keep it in step with their file events until
    ``stop`` is set or Ctrl-C (KeyboardInterrupt), which stops cleanly after the batch being
    written. Returns the totals of the watched batches. ``lock`` (a server's write lock) is held
    while each batch is written."""
    try:
        from watchdog.observers import Observer
    except ImportError:
        raise MissingDependencyError("watching folders needs watchdog: pip install 'ravl[watch]'") from None
    roots = [Path(f).expanduser().resolve() for f in folders]
    for root in roots:
        if not root.is_dir():
            raise SourceError(f"{root}: not a folder; 'ravl watch' follows folders of images")
    if not 0 <= debounce <= 3600:
        raise SourceError(f"--debounce must be from 0 to 3600 seconds, got {debounce}")
    exclude = (Path(collection.path).resolve(),)
    changes = _Changes(exclude)
    observer = Observer()
    for root in roots:
        observer.schedule(changes, str(root), recursive=True)  # type: ignore[arg-type]
    observer.start()  # events from here on are kept: nothing falls between the sync and the watch
    totals = WatchReport()
    stop = stop or threading.Event()
    try:
        with lock or nullcontext():
            first = index_sources(collection, [str(r) for r in roots], keep_missing=keep_missing,
                                  prune_missing=prune_missing, progress=progress)
        if on_ready:
            on_ready(first)
        while not stop.is_set():
            changed = changes.take(debounce)
            if changed is None:
                stop.wait(poll)
                continue
            changed = {p for p in changed if Path(p).name != COLLECTION_DB}
            records, gone = _batch(changed)
            ids: list[int] = []
            with lock or nullcontext():
                report = index_records(collection, records, keep_missing=keep_missing)
                if gone and not keep_missing:
                    ids = _removals(collection, roots, gone, report, prune_missing)
                    if ids:
                        report.removed += collection.remove_items(ids)
            # counted as soon as it is written: a Ctrl-C during the index refresh below still reports it
            if report.added or report.updated or report.moved or report.removed or report.skipped or \
                    report.captions_added or report.captions_removed or report.notes:
                totals.add(report)
                if on_batch:
                    on_batch(report)
            if ids:
                with lock or nullcontext():
                    collection.refresh_indexes(lazy=True)
    except KeyboardInterrupt:
        pass
    finally:
        observer.stop()
        observer.join(timeout=10)
    return totals
