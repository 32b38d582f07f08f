"""What an ingest run did: :class:`IngestReport`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class IngestReport:
    sources: list[str]
    total: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    reused: int = 0  # same content already stored under another path: vectors copied, no model call
    moved: int = 0  # a file found under a new name: its row (id, vectors, captions) follows it
    removed: int = 0  # items whose file is gone from a folder being indexed (a sync)
    missing: int = 0  # items whose file is gone but that were kept (--keep-missing, or the guard)
    captions_added: int = 0
    captions_removed: int = 0  # sidecar lines that are no longer in their sidecar
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line each: guards, a collection inside a folder, ...
    seconds: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    moved_ids: set[int] = field(default_factory=set, repr=False)  # rows moved in this run (each moves once)

    @property
    def encoded(self) -> int:
        return self.added + self.updated

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("moved_ids")
        out["skipped"] = [{"uri": u, "reason": r} for u, r in self.skipped]
        total = self.seconds.get("total", 0.0)
        out["images_per_second"] = round(self.encoded / total, 2) if total else None
        return out

    def summary(self) -> str:
        """``30 images seen: 1 added, 1 moved, 3 removed, 28 unchanged, 0 skipped; 2 captions added``."""
        parts = [f"{self.added} added", f"{self.updated} updated"]
        parts += [f"{n} {what}" for n, what in ((self.moved, "moved"), (self.removed, "removed"),
                                                (self.missing, "missing (kept)")) if n]
        parts += [f"{self.unchanged} unchanged", f"{len(self.skipped)} skipped"]
        caps = f"{self.captions_added} captions added"
        if self.captions_removed:
            caps += f", {self.captions_removed} removed"
        return f"{self.total} images seen: {', '.join(parts)}; {caps}"
