"""``ravl index --engine ray``: read → decode → encode on a Ray cluster, written here.

Ray Data runs ``map_batches`` over a pool of encoder actors (one model load per actor). Each actor
stats, reads, hashes and decodes its records where it runs (the images must be on a filesystem the
workers see), then encodes the images and the captions the collection lacks. The driver receives the
vectors and writes them through :func:`ravl.ingest.pipeline.write_prepared` — the same code, the same
single-transaction batches and the same skip reasons as the local engine. The database stays the one
truth: a killed worker's blocks are retried by Ray, and re-running after a crash of the driver resumes
exactly like the local engine (unchanged files are skipped by size + mtime or hash, writes are upserts
by uri), so nothing is lost or written twice.
"""
from __future__ import annotations

import os
import pickle
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..encoders.base import ImageVectors
from ..errors import EngineError, MissingDependencyError
from .pipeline import IngestReport, Progress, prepare_record, wanted_captions, write_prepared
from .sources import Record, read_sources

#: records per actor call (and per driver transaction)
BATCH = 64


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError("--engine ray needs Ray; install it with: pip install 'ravl[ray]'") from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast (one line) when the cluster's GCS port does not answer; Ray itself retries for minutes."""
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except ValueError:
        raise EngineError(f"--ray-address {address!r} is not HOST:PORT (the head's GCS address, e.g. "
                          "10.0.0.5:6379, printed by 'ray start --head')") from None
    except OSError as exc:
        raise EngineError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
                          "'ray start --head' or fix --ray-address") from None


def connect(address: str | None, num_workers: int):
    """ray.init for a cluster (``address``) or a local instance; returns (ray, started_here)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    import logging

    kwargs = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    if address:
        check_address(address)
        ray.init(address=address, **kwargs)
    else:
        # logical CPUs: one per actor plus room for Ray Data's own tasks (they may exceed the cores)
        ray.init(num_cpus=num_workers + 1, include_dashboard=False, **kwargs)
    return ray, True


class EncodeActor:
    """One per Ray worker slot: loads the model once, then prepares and encodes record batches."""

    def __init__(self, encoder_factory: Callable, by_sha: dict, threads: int = 2):
        self.encoder = encoder_factory()
        self.by_sha = by_sha
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ravl-ray-decode")

    def __call__(self, batch: dict) -> dict:
        rows = [pickle.loads(b) for b in batch["row"]]  # (Record, state, known captions)
        enc = self.encoder
        prepared = list(self.pool.map(
            lambda r: prepare_record(r[0], r[1], self.by_sha, enc, enc.image_size_hint), rows))
        new = [p for p in prepared if p.kind == "new"]
        vecs = enc.embed_pixels(np.stack([p.pixels for p in new])) if new else None
        known = {p.item_id: r[2] for p, r in zip(prepared, rows) if p.item_id is not None}
        texts = sorted({c for _, c in wanted_captions([p for p in prepared if p.kind != "skip"], known)})
        text_vecs = dict(zip(texts, enc.encode_texts(texts))) if texts else {}
        out, n = [], 0
        for p in prepared:
            p.pixels = None
            emb = feat = None
            if p.kind == "new":
                emb, feat = vecs.embedding[n], vecs.features[n]
                n += 1
            caps = {c: text_vecs[c] for c in p.record.captions if c in text_vecs}
            out.append(pickle.dumps((p, emb, feat, caps)))
        return {"row": np.array(out, dtype=object)}


def index_sources_ray(collection, sources, *, images_root=None, split: str | None = None,
                      batch_size: int | None = None, num_workers: int | None = None,
                      ray_address: str | None = None, progress: Progress | None = None,
                      records: list[Record] | None = None,
                      encoder_factory: Callable | None = None) -> IngestReport:
    """Like :func:`ravl.ingest.pipeline.index_sources`, with decode + encode on Ray actors.

    ``encoder_factory`` (picklable, called once per actor) defaults to loading the collection's
    encoder spec; ``num_workers`` actors (default: one per two CPUs of the cluster, at least one).
    """
    t0 = time.perf_counter()
    sources = [str(s) for s in sources]
    report = IngestReport(sources=sources)
    if records is None:
        records = read_sources(sources, images_root=images_root, split=split)
    report.total = len(records)
    report.seconds["read_sources"] = round(time.perf_counter() - t0, 3)
    spec = collection.encoder_spec
    factory = encoder_factory or _SpecFactory(spec)
    db = collection.db
    states = db.file_states()
    by_sha = {sha: item_id for item_id, _, _, sha in states.values()}
    known_caps = db.captions_by_item()
    workers_guess = num_workers or max(1, (os.cpu_count() or 2) // 2)
    t = time.perf_counter()
    ray, started = connect(ray_address, workers_guess)
    report.seconds["ray_start"] = round(time.perf_counter() - t, 3)
    if num_workers is None:
        num_workers = max(1, int(ray.cluster_resources().get("CPU", 2)) // 2)
    try:
        _run(ray, collection, db, records, states, by_sha, known_caps, factory, batch_size or BATCH,
             num_workers, report, progress)
    except KeyboardInterrupt:
        report.interrupted = True
    except EngineError:
        raise
    except Exception as exc:  # a Ray failure Ray could not retry: what was written stays written
        raise EngineError(f"the Ray job failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); every "
                          "committed batch is kept, run the same command again to resume") from exc
    finally:
        if started:
            ray.shutdown()
    if not report.interrupted:
        t = time.perf_counter()
        collection.refresh_indexes()
        report.seconds["index"] = round(time.perf_counter() - t, 3)
    report.seconds["total"] = round(time.perf_counter() - t0, 3)
    return report


class _SpecFactory:
    def __init__(self, spec: str):
        self.spec = spec

    def __call__(self):
        from ..encoders.base import load_encoder

        return load_encoder(self.spec)


def _run(ray, collection, db, records, states, by_sha, known_caps, factory, batch_size, num_workers, report,
         progress) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    rows = [{"row": pickle.dumps((r, states.get(r.uri), known_caps.get(states[r.uri][0], [])
                                  if r.uri in states else []))} for r in records]
    if not rows:
        return
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // batch_size + 1, 4 * num_workers)))
    ds = ds.map_batches(EncodeActor, batch_size=batch_size, batch_format="numpy", concurrency=num_workers,
                        num_cpus=1, fn_constructor_kwargs={"encoder_factory": factory, "by_sha": by_sha})
    # Ray Data restarts dead actors and retries their batches by default (max_restarts=-1)
    timing = {"encode_and_transfer": 0.0, "write": 0.0}
    done = 0
    t = time.perf_counter()
    for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
        timing["encode_and_transfer"] += time.perf_counter() - t
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
                side.append(p)
        vecs = ImageVectors(np.stack(emb), np.stack(feat)) if batch else None
        if batch or side:
            write_prepared(db, report, batch, side, vecs, text_vecs, known_caps)
        timing["write"] += time.perf_counter() - t
        done += len(out["row"])
        if progress:
            progress(done, report.total)
        t = time.perf_counter()
    report.seconds.update({k: round(v, 3) for k, v in timing.items()})
