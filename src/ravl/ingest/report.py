"""What an ingest run did: :class:`IngestReport`, and where its time went (:class:`StageClock`,
:func:`build_profile`).

The profile tells wall and CPU time per stage apart. Decoding runs on worker threads (their CPU is
``time.thread_time`` summed over records), the text model on its own thread (its thread's CPU),
the image model and writing on the calling thread (its CPU). onnxruntime runs each model's
matrix work on its own pool of threads too, whose CPU no stage owns: it is ``other_cpu`` (the
process's CPU, ``time.process_time``, less what the stages' threads used), mostly the two models';
in a process doing other work meanwhile (a server's uploads) that work lands there too. ``idle``
is the core-seconds no thread of the process used. ``after`` is what follows the batches: the sync
of scanned folders, and bringing the index caches and the search calibration (refitted when the
caption count moved by 10%) up to date. What bounds a run is read off the calling thread, which
does the image model and the writes and waits for decoded images and for caption vectors: the
largest of those four is the bottleneck.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    caption_vectors_reused: int = 0  # distinct caption texts the collection already held: vector copied, not encoded
    profile: dict = field(default_factory=dict)  # wall/CPU per stage, idle, the bottleneck (see build_profile)
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

    def profile_lines(self) -> list[str]:
        """The per-stage profile as a few aligned lines (empty when the run kept none)."""
        return profile_lines(self.profile)


#: stage key -> what the report calls it
STAGES = {"decode": "decode", "encode_images": "image model", "encode_texts": "text model", "write": "write",
          "reuse_captions": "reuse captions"}


class StageClock:
    """Wall and CPU seconds per stage, and the process's CPU since it was made."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def add(self, stage: str, wall: float, cpu: float = 0.0) -> None:
        self.wall[stage] = self.wall.get(stage, 0.0) + wall
        self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time a block on the calling thread (wall, and this thread's CPU)."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - wall, time.thread_time() - cpu)

    def seconds(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.wall.items()}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def build_profile(clock: StageClock, *, workers: int, cores: int | None = None) -> dict:
    """``{"wall", "cpu", "cores", "idle", "other_cpu", "stages": {stage: {"wall", "cpu"}}, "waits": {...},
    "bound_by"}`` for a run timed by ``clock`` (see the module docstring for what each means)."""
    wall, cpu = time.perf_counter() - clock.wall0, time.process_time() - clock.cpu0
    cores = cores or usable_cores()
    stages = {k: {"wall": round(clock.wall.get(k, 0.0), 3), "cpu": round(clock.cpu.get(k, 0.0), 3)}
              for k in STAGES if k in clock.wall and (k != "reuse_captions" or clock.wall[k] >= 0.0005)}
    if "decode" in stages:
        stages["decode"]["threads"] = workers
    waits = {"decode": round(clock.wall.get("wait_decode", 0.0), 3), "texts": round(clock.wall.get("wait_texts", 0.0), 3)}
    critical = {"image model": clock.wall.get("encode_images", 0.0), "decoding": waits["decode"],
                "text model": waits["texts"], "writing": clock.wall.get("write", 0.0)}
    bound = max(critical, key=lambda k: critical[k]) if any(critical.values()) else None
    attributed = sum(clock.cpu.values())
    return {"wall": round(wall, 3), "cpu": round(cpu, 3), "cores": cores,
            "idle": round(max(0.0, cores * wall - cpu), 3), "other_cpu": round(max(0.0, cpu - attributed), 3),
            "stages": stages, "waits": waits, "bound_by": bound}


def profile_lines(profile: dict) -> list[str]:
    """``stage  wall s  CPU s`` rows, then the run's CPU, idle time and what bounded it."""
    if not profile:
        return []
    lines = [f"{'stage':<22}{'wall s':>8}{'CPU s':>8}"]
    for key, st in profile["stages"].items():
        name = STAGES.get(key, key) + (f" ({st['threads']} threads)" if "threads" in st else "")
        lines.append(f"{name:<22}{st['wall']:>8.1f}{st['cpu']:>8.1f}")
    lines.append(f"{'other (onnxruntime)':<22}{'':>8}{profile['other_cpu']:>8.1f}")
    wall, cpu, cores = profile["wall"], profile["cpu"], profile["cores"]
    busy = cpu / (cores * wall) if wall else 0.0
    lines.append(f"run: {wall:.1f}s wall, {cpu:.1f}s CPU on {cores} cores ({busy:.0%} busy, "
                 f"{profile['idle']:.1f} core-s idle)")
    waits = profile["waits"]
    lines.append(f"the main thread waited {waits['decode']:.1f}s for decoding and {waits['texts']:.1f}s for the "
                 f"text model; bound by: {profile['bound_by'] or 'nothing (no work)'}")
    after = profile.get("after")
    if after:
        lines.append(f"after the batches: sync {after['sync']:.1f}s, index caches and search calibration "
                     f"{after['index']:.1f}s")
    return lines
