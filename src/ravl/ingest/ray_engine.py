"""``ravl index --engine ray``: read → decode → encode on a Ray cluster, written by the driver.

Ray Data runs ``map_batches`` over a pool of encoder actors (one model load per actor). Each actor
stats, reads, hashes, decodes and preprocesses its records where it runs (the images must be on a
filesystem the workers see), then encodes the images and the captions the collection lacks; two
calls run at once per actor, so one batch is decoded while the model encodes the other. The driver
receives the vectors and writes them through :func:`ravl.ingest.pipeline.write_prepared`: the same
code, the same one-transaction batches and the same skip reasons as the local engine. The database
stays the one truth: Ray restarts a killed actor and retries its batches, and re-running after a
crash resumes exactly like the local engine (unchanged files are skipped by size + mtime or hash,
writes are upserts by uri), so nothing is lost or written twice.
"""
from __future__ import annotations

import os
import pickle
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..encoders.base import ImageVectors
from ..errors import ConfigError, EncoderMismatchError, EngineError, MissingDependencyError, ModelNotAvailableError
from ..progress import Progress, stepped
from .prepare import TEXT_CACHE_SIZE, prepare_record
from .report import IngestReport
from .sources import Record, read_sources
from .write import wanted_captions, write_prepared

#: records per actor call (and per driver transaction) when the caller does not say
BATCH = 64


def import_ray():
    """The ``ray`` module with Ray Data, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError("--engine ray needs Ray; install it with: pip install 'ravl[ray]'") from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast (one line) when nothing answers at ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``);
    ``ray.init`` itself retries for minutes. ``auto`` (a cluster started on this machine) is not probed."""
    if address == "auto":
        return
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except ValueError:
        raise EngineError(f"--ray-address {address!r} is not HOST:PORT (the head's address, e.g. 10.0.0.5:6379, "
                          "printed by 'ray start --head')") from None
    except OSError as exc:
        raise EngineError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
                          "'ray start --head' or fix --ray-address") from None


def connect(address: str | None, num_workers: int):
    """``ray.init`` for a cluster (``address``) or a local instance; returns (ray, started_here).
    A Ray already initialised in this process (a test's cluster, a notebook) is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    import logging

    kwargs = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    if address:
        check_address(address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError) as exc:
            raise EngineError(f"cannot join the Ray cluster at {address} ({str(exc).splitlines()[0][:200]}); "
                              "check --ray-address and that this machine runs the cluster's Ray version") from None
    else:
        # logical CPUs: one per actor plus one for Ray Data's own tasks (they may exceed the cores)
        ray.init(num_cpus=num_workers + 1, include_dashboard=False, **kwargs)
    return ray, True


class EncodeActor:
    """One per Ray worker slot: loads the model once, then prepares and encodes record batches.
    Decoding runs outside the model lock, so a second call decodes while the first encodes."""

    def __init__(self, encoder_factory: Callable, fingerprint: str, by_sha: dict[str, int], threads: int = 2):
        self.encoder = encoder_factory()
        if self.encoder.fingerprint != fingerprint:
            raise EncoderMismatchError(f"a Ray worker loaded encoder {self.encoder.fingerprint!r}, but the collection "
                                       f"was built with {fingerprint!r}; install the same model on every worker")
        self.by_sha = by_sha
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ravl-ray-decode")
        self.model_lock = threading.Lock()
        self.texts: dict[str, np.ndarray] = {}  # captions this actor encoded (datasets repeat captions)

    def __call__(self, batch: dict) -> dict:
        rows = [pickle.loads(b) for b in batch["row"]]  # (Record, state, the item's stored captions)
        enc = self.encoder
        prepared = list(self.pool.map(
            lambda r: prepare_record(r[0], r[1], self.by_sha, enc, enc.image_size_hint), rows))
        new = [p for p in prepared if p.kind == "new"]
        known = {p.item_id: r[2] for p, r in zip(prepared, rows) if p.item_id is not None}
        wanted = {c for _, c in wanted_captions([p for p in prepared if p.kind != "skip"], known)}
        with self.model_lock:  # one model call at a time (tokenizers are not thread-safe)
            vecs = enc.embed_pixels(np.stack([p.pixels for p in new if p.pixels is not None])) if new else None
            texts = sorted(wanted - self.texts.keys(), key=len)
            if len(self.texts) + len(texts) > TEXT_CACHE_SIZE:
                self.texts.clear()
                texts = sorted(wanted, key=len)
            if texts:
                self.texts.update(zip(texts, enc.encode_texts(texts)))
            text_vecs = {c: self.texts[c] for c in wanted}
        out, n = [], 0
        for p in prepared:
            p.pixels = None
            emb = feat = None
            if p.kind == "new":
                assert vecs is not None
                emb, feat = vecs.embedding[n], vecs.features[n]
                n += 1
            caps = {c: text_vecs[c] for c in p.record.captions if c in text_vecs}
            out.append(pickle.dumps((p, emb, feat, caps)))
        return {"row": np.array(out, dtype=object)}


class _SpecFactory:
    """Loads the collection's encoder from its spec on a worker (picklable)."""

    def __init__(self, spec: str):
        self.spec = spec

    def __call__(self):
        from ..encoders.base import load_encoder

        return load_encoder(self.spec)


def index_sources_ray(collection, sources, *, images_root=None, split: str | None = None,
                      batch_size: int | None = None, num_workers: int | None = None, workers: int | None = None,
                      ray_address: str | None = None, progress: Progress | None = None,
                      records: list[Record] | None = None, encoder_factory: Callable | None = None,
                      finish: bool = True, moves: bool = True) -> IngestReport:
    """:func:`ravl.ingest.pipeline.index_sources` with decode + encode on Ray actors.

    ``num_workers`` actors (default: one per two CPUs of the cluster, at least one), ``workers``
    decoding threads in each (default 2); ``encoder_factory`` (picklable, called once per actor)
    defaults to loading the collection's encoder spec. Ctrl-C stops after the last committed batch
    (``interrupted=True``); a failure Ray cannot retry is an :class:`EngineError`, and in both
    cases re-running resumes. ``finish=False`` (from :func:`~ravl.ingest.pipeline.index_records`,
    which syncs first) leaves the index refresh to the caller; ``moves``: a file whose content is
    stored under a path that is gone takes that item over (the driver checks the old path).
    """
    for name, value in (("batch_size", batch_size), ("num_workers", num_workers), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096):
            raise ConfigError(f"{name.replace('_', '-')} must be a whole number from 1 to 4096, got {value!r}")
    t0 = time.perf_counter()
    sources = [str(s) for s in sources]
    report = IngestReport(sources=sources)
    if records is None:
        records = read_sources(sources, images_root=images_root, split=split)
    report.total = len(records)
    report.seconds["read_sources"] = round(time.perf_counter() - t0, 3)
    factory = encoder_factory or _SpecFactory(collection.encoder_spec)
    t = time.perf_counter()
    ray, started = connect(ray_address, num_workers or max(1, (os.cpu_count() or 2) // 2))
    report.seconds["ray_start"] = round(time.perf_counter() - t, 3)
    if num_workers is None:
        num_workers = max(1, int(ray.cluster_resources().get("CPU", 2)) // 2)
    try:
        _run(ray, collection, records, factory, batch_size or BATCH, num_workers, workers or 2, report, progress,
             moves)
    except KeyboardInterrupt:
        report.interrupted = True
    except Exception as exc:  # a failure Ray could not retry: what was written stays written
        cause = _root_cause(exc)
        if isinstance(cause, EncoderMismatchError | MissingDependencyError | ModelNotAvailableError):
            raise cause from None  # a worker's set-up: re-running will not help until it is fixed
        raise EngineError(f"the Ray job failed ({type(cause).__name__}: {_first_line(cause)}); every committed "
                          "batch is kept, run the same command again to resume") from exc
    finally:
        if started:
            ray.shutdown()
    if finish and not report.interrupted:
        t = time.perf_counter()
        collection.refresh_indexes(lazy=True, progress=stepped(progress))  # readers catch up what is left
        report.seconds["index"] = round(time.perf_counter() - t, 3)
    report.seconds["total"] = round(time.perf_counter() - t0, 3)
    return report


def _root_cause(exc: BaseException) -> BaseException:
    """The error under Ray's wrappers (``RayTaskError``, ``ActorDiedError``): a ravl error raised on a
    worker when there is one (found through the exception chain or, when Ray keeps only its text,
    rebuilt from it), else the innermost exception."""
    from .. import errors

    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        if isinstance(e, errors.RavlError):
            return e
        seen.append(e)
        todo += [getattr(e, "cause", None) if isinstance(getattr(e, "cause", None), BaseException) else None,
                 e.__cause__, e.__context__]
    for line in reversed(str(exc).splitlines()):  # "ravl.errors.EncoderMismatchError: message"
        name, _, message = line.strip().partition(": ")
        cls = getattr(errors, name.rpartition(".")[2], None) if name.startswith("ravl.errors.") else None
        if isinstance(cls, type) and issubclass(cls, errors.RavlError) and message:
            return cls(message)
    return seen[-1] if seen else exc


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def _run(ray, collection, records: list[Record], factory, batch_size: int, num_workers: int, threads: int,
         report: IngestReport, progress: Progress | None, moves: bool = True) -> None:
    states = collection.file_states()
    uris = {s[0]: uri for uri, s in states.items()}
    by_sha = {sha: item_id for item_id, _, _, sha in states.values()}
    known_caps = collection.caption_sources()
    rows = [{"row": pickle.dumps((r, states.get(r.uri), known_caps.get(states[r.uri][0], {}) if r.uri in states else {}))}
            for r in records]
    if not rows:
        return
    import logging

    from ray.util import log_once

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ravl shows its own progress bar
    log_once("ray_data_progress_manager_disabled")  # ... so Ray Data need not log that its bars are off
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset INFO lines on stderr
    ctx.execution_options.preserve_order = True  # rows get the ids the local engine would give them
    # one block per actor call (up to 10,000 blocks): results stream back, and commit, batch by batch
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(-(-len(rows) // batch_size), 10_000)))
    # two calls at once per actor: one decodes its batch while the other holds the model
    pool = ray.data.ActorPoolStrategy(size=num_workers, max_concurrent_calls_per_actor=2,
                                      enable_true_multi_threading=True)
    ds = ds.map_batches(EncodeActor, batch_size=batch_size, batch_format="numpy", compute=pool, num_cpus=1,
                        fn_constructor_kwargs={"encoder_factory": factory, "fingerprint": collection.fingerprint,
                                               "by_sha": by_sha, "threads": threads})
    # Ray Data restarts dead actors and retries their batches (actor max_restarts=-1 by default)
    timing = {"wait_workers": 0.0, "first_batch": 0.0, "write": 0.0}
    done = 0
    t = time.perf_counter()
    for out in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        timing["wait_workers"] += time.perf_counter() - t
        if not done:  # actor start-up, model load and the first batch: paid once per run
            timing["first_batch"] = time.perf_counter() - t
        t = time.perf_counter()
        batch, side, emb, feat, text_vecs = [], [], [], [], {}
        for blob in out["row"]:
            p, e, f, caps = pickle.loads(blob)
            text_vecs.update(caps)
            if p.kind == "skip":
                report.skipped.append((p.record.uri, p.reason))
            elif p.kind == "new":
                batch.append(p)
                emb.append(e)
                feat.append(f)
            else:
                if moves and p.kind == "reuse" and p.item_id in uris and not os.path.lexists(uris[p.item_id]):
                    p.kind = "move"  # the stored copy's file is gone: its item follows this file
                side.append(p)
        vecs = ImageVectors(np.stack(emb), np.stack(feat)) if batch else None
        if batch or side:
            write_prepared(collection, report, batch, side, vecs, text_vecs, known_caps)
        timing["write"] += time.perf_counter() - t
        done += len(out["row"])
        if progress:
            progress(done, report.total)
        t = time.perf_counter()
    report.seconds.update({k: round(v, 3) for k, v in timing.items()})
