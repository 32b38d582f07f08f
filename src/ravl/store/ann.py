"""Vector indexes of every kind (flat, HNSW, IVF-PQ) behind one small interface, built with FAISS's
``index_factory`` from an :class:`~ravl.store.index_plan.IndexPlan`.

FAISS holds vectors at *positions* 0..ntotal-1; ``labels[pos]`` is the database id there. Updating
or deleting an id marks its old position dead (a tombstone bitmap passed to FAISS as a selector,
since HNSW cannot remove vectors) and appends the new vector, so a batch of writes is applied to a
loaded index in time proportional to the batch, not the collection. :meth:`AnnIndex.needs_rebuild`
says when tombstones or growth past the IVF training set call for a rebuild instead.

IVF-PQ scores are approximate: its top ``k × rerank`` candidates are re-scored exactly with
vectors read back through ``fetch`` (the database), so every returned score is an exact cosine.
"""
from __future__ import annotations

import io
import json
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..hits import Knobs
from ..progress import Progress, describe
from . import ondisk, tuning
from .chunked import Chunks, Fetch, _array_fetch, array_chunks, counted, exact_topk, exact_topk_chunks, faiss_threads, rows_at
from .index_plan import IndexPlan
from .ondisk import DiskLists
from .tuning import TuningQueries

__all__ = ["AnnIndex", "Chunks", "Fetch", "TuningQueries", "array_chunks", "exact_topk", "exact_topk_chunks",
           "rows_at"]
#: rebuild when more than this share of positions are tombstones
MAX_DEAD_SHARE = 0.25
#: retrain IVF when the collection has grown this many times past its training set
RETRAIN_GROWTH = 4.0
#: IVF-PQ re-ranks at least this many candidates (reading them back costs about a millisecond)
MIN_SHORTLIST = 100
#: below this many vectors, build single-threaded
SMALL = 50_000
_TRAIN_POINTS_PER_LIST = 64  # k-means sample: 64 points per list is plenty (FAISS caps at 256)
#: ... and at most this many bytes of vectors (512 MiB: 349k vectors at d = 384, 21 per list at
#: 10M vectors and 16,384 lists, where 64 per list would be 1.5 GiB)
TRAIN_MAX_BYTES = 512 * 2**20


def _faiss():
    import faiss

    return faiss


class AnnIndex:
    def __init__(self, plan: IndexPlan, index, labels: np.ndarray, alive: np.ndarray, info: dict):
        self.plan = plan
        self.index = index
        self.labels = labels  # int64 per position
        self.alive = alive  # bool per position
        self.info = info  # build facts: seconds, bytes, recall, tuned search params, trained_on
        self._live = int(alive.sum())
        self._bitmap: np.ndarray | None = None  # tombstones as FAISS wants them; replaced, never mutated
        self.disk: DiskLists | None = None  # the file its inverted lists are mapped from (lists on disk)
        self._mark_changed()

    def _mark_changed(self) -> None:
        """Recompute the selector bitmap after an update (searches hold a reference to the old one)."""
        self._bitmap = np.packbits(self.alive, bitorder="little") if self._live < len(self.labels) else None

    # --- build ---------------------------------------------------------------------------------
    @classmethod
    def build(cls, plan: IndexPlan, ids: np.ndarray, vectors: np.ndarray, *, tune: bool = True,
              fetch: Fetch | None = None, seed: int = 0, queries: TuningQueries | None = None) -> AnnIndex:
        """Index ``vectors`` (rows matching ``ids``): :meth:`build_from` over them held in memory."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), plan.dim)
        return cls.build_from(plan, len(ids), array_chunks(ids, vectors), tune=tune,
                              fetch=fetch or _array_fetch(ids, vectors), seed=seed, queries=queries)

    @classmethod
    def build_from(cls, plan: IndexPlan, count: int, chunks: Chunks, *, tune: bool = True, fetch: Fetch | None = None,
                   seed: int = 0, queries: TuningQueries | None = None, lists_dir: Path | None = None,
                   progress: Progress | None = None) -> AnnIndex:
        """Index the ``count`` vectors ``chunks()`` yields, one chunk at a time: IVF trains on a
        seeded sample read in a first pass, then every chunk is added, so memory is the index plus a
        chunk. With ``tune``, set the search knobs (efSearch; nprobe and re-ranking depth) on
        queries of the kind the index receives (``queries``: (kind, vectors), e.g. text vectors for
        an image index; without them, a sample of the stored vectors), the exact top-10 computed
        chunk by chunk (:mod:`.tuning`); ``fetch`` (ids -> vectors) is needed to tune. An IVF-PQ
        plan with ``params['lists'] == 'disk'`` writes its lists to a file in ``lists_dir``
        (:mod:`.ondisk`; default: the temp folder). ``progress`` hears each pass over the chunks
        as a named step ("training IVF-PQ", "adding", "tuning"), counted in vectors."""
        # OpenMP threads spin against each other on busy small jobs (10x slower)
        with faiss_threads(1 if count < SMALL else None):
            return cls._build(_faiss(), plan, count, chunks, tune, fetch, seed, queries, lists_dir, progress)

    @classmethod
    def _build(cls, faiss, plan, count, chunks, tune, fetch, seed, queries=None, lists_dir=None,
               progress=None) -> AnnIndex:
        t0 = time.perf_counter()
        index = faiss.index_factory(plan.dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
        if plan.kind == "hnsw":
            index.hnsw.efConstruction = int(plan.params.get("ef_construction", 40))
        if not index.is_trained:
            rng = np.random.default_rng(seed)
            n_train = min(count, max(_TRAIN_POINTS_PER_LIST * plan.params.get("nlist", 1),
                                     4 * 2 ** plan.params.get("nbits", 8)), TRAIN_MAX_BYTES // (4 * plan.dim))
            positions = np.sort(rng.choice(count, n_train, replace=False)) if count else np.zeros(0, np.int64)
            ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
            ivf.cp.min_points_per_centroid = 1  # small collections: no stderr warnings from k-means
            if hasattr(ivf, "pq"):
                ivf.do_polysemous_training = False  # minutes of annealing for codes we re-rank anyway
                ivf.pq.cp.min_points_per_centroid = 1
            sample = rows_at(counted(chunks, progress, f"reading a {n_train:,}-vector training sample", count),
                             positions, plan.dim)
            describe(progress, f"training {'IVF-PQ' if plan.kind == 'ivfpq' else plan.kind} on {n_train:,} vectors")
            index.train(sample)
        disk = None
        if plan.params.get("lists") == "disk":
            all_ids, disk = ondisk.build(index, chunks, plan.dim, Path(lists_dir or tempfile.gettempdir()),
                                         progress=progress, count=count)
        else:
            labels = []
            for ids, vecs in counted(chunks, progress, "adding", count)():
                if len(ids):
                    index.add(np.ascontiguousarray(vecs, dtype=np.float32).reshape(len(ids), plan.dim))
                    labels.append(np.asarray(ids, dtype=np.int64))
            all_ids = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        count = len(all_ids)  # what was read (the caller checks it against the database)
        info = {"kind": plan.kind, "factory": plan.factory, "params": dict(plan.params), "count": count,
                "trained_on": count, "search": dict(plan.search)}
        built = cls(plan, index, all_ids, np.ones(count, bool), info)
        built.disk = disk
        info["build_seconds"] = round(time.perf_counter() - t0, 3)
        if tune and count and fetch is not None:
            built._tune(counted(chunks, progress, "tuning (exact top-10 of the sample queries)", count), fetch, seed,
                        queries=queries)
            describe(progress, "tuning (search knobs)")
            info["tune_seconds"] = round(time.perf_counter() - t0 - info["build_seconds"], 3)
        return built

    def tuned_as(self, chunks: Chunks, fetch: Fetch, seed: int = 0, queries: TuningQueries | None = None) -> dict:
        """The search knobs and recall@10 that a build of this same index tuned on ``queries`` (None:
        a sample of the stored vectors) would have recorded, this index's own left as they are: the
        ``images`` index of a CLIP collection also answers image -> image searches (``features``),
        with the knobs a ``features`` index of its own was tuned to."""
        keys = ("search", "recall_at_10", "recall_queries", "recall_query_kind", "recall_note")
        own = {k: self.info.get(k) for k in keys}
        self.info["search"] = dict(self.plan.search)
        try:
            self._tune(chunks, fetch, seed, queries=queries)
            return {k: self.info.get(k) for k in keys}
        finally:
            self.info.update(own)

    def _tune(self, chunks: Chunks, fetch: Fetch, seed: int, samples: int = 200,
              queries: TuningQueries | None = None) -> None:
        """Set the search knobs on sample queries of the kind the index receives (:mod:`.tuning`)."""
        tuning.tune(self, chunks, fetch, seed, samples, queries)

    # --- facts ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._live

    @property
    def kind(self) -> str:
        return self.plan.kind

    def needs_rebuild(self) -> str | None:
        """Why this index should be rebuilt from scratch rather than updated, or None."""
        dead = len(self.labels) - self._live
        if len(self.labels) >= 64 and dead > MAX_DEAD_SHARE * len(self.labels):
            return f"{dead} of {len(self.labels)} positions are deleted or replaced"
        trained = max(1, int(self.info.get("trained_on", 0)))
        if self.kind == "ivfpq" and len(self) > RETRAIN_GROWTH * trained:
            return f"grew from {trained} to {len(self)} vectors since IVF training"
        return None

    # --- updates -------------------------------------------------------------------------------
    def remove(self, ids: Iterable[int]) -> int:
        wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if not len(wanted) or not self._live:
            return 0
        hit = self.alive & np.isin(self.labels, wanted)
        n = int(hit.sum())
        self.alive = self.alive.copy()  # a search running now keeps the array it started with
        self.alive[hit] = False
        self._live -= n
        self._mark_changed()
        return n

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (or replace) ``ids`` with ``vectors``."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        self.remove(ids.tolist())
        with faiss_threads(1 if len(ids) < SMALL else None):
            x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.plan.dim)
            if self.disk is not None:  # a new lists file: a sealed one is never written
                self.disk = ondisk.add(self.index, self.disk, x, len(self.labels))
                self.info["lists_bytes"] = self.disk.size
            else:
                self.index.add(x)
        self.labels = np.concatenate([self.labels, ids])
        self.alive = np.concatenate([self.alive, np.ones(len(ids), bool)])
        self._live += len(ids)
        self.info["count"] = len(self)
        self._mark_changed()

    # --- search --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, exclude: Iterable[int] = (), *, knobs: Knobs | None = None,
               fetch: Fetch | None = None, tuned: dict | None = None) -> list[list[tuple[int, float]]]:
        """Top-``k`` (id, score) per query row, best first, skipping ids in ``exclude``; ``tuned``
        replaces the search knobs tuned at build time (:meth:`tuned_as`), and a query's own
        ``knobs`` win over both."""
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.plan.dim)
        excluded = {int(i) for i in exclude}
        if not len(self) or k <= 0:
            return [[] for _ in range(len(queries))]
        want = min(len(self), k + len(excluded))
        rescore = self.kind == "ivfpq" and fetch is not None
        use = {**(self.info["search"] if tuned is None else tuned), **(knobs.given() if knobs else {})}
        shortlist = max(want * int(use.get("rerank", 10)), MIN_SHORTLIST)
        fetch_k = min(len(self), shortlist) if rescore else want
        bitmap = self._bitmap  # held for the whole search (the selector points into it)
        scores, pos = self.index.search(queries, fetch_k, params=self._params(faiss, fetch_k, bitmap, use))
        out = []
        for row_s, row_p in zip(scores, pos):
            hits = [(int(self.labels[p]), float(s)) for p, s in zip(row_p, row_s) if p >= 0]
            out.append([(i, s) for i, s in hits if i not in excluded])
        if rescore and fetch is not None:
            out = self._rerank(queries, out, fetch)
        return [hits[:k] for hits in out]

    def _params(self, faiss, fetch_k: int, bitmap: np.ndarray | None, use: dict):
        sel = None
        if bitmap is not None:
            sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))  # n = bytes
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(int(use.get("ef_search", 64)), fetch_k), sel=sel)
        if self.kind == "ivfpq":
            return faiss.SearchParametersIVF(nprobe=int(use.get("nprobe", 32)), sel=sel)
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    @staticmethod
    def _rerank(queries: np.ndarray, shortlists: list, fetch: Fetch) -> list[list[tuple[int, float]]]:
        wanted = sorted({i for hits in shortlists for i, _ in hits})
        ids, vecs = fetch(wanted)
        row = {int(i): n for n, i in enumerate(ids)}
        out: list[list[tuple[int, float]]] = []
        for q, hits in zip(queries, shortlists):
            cand = [i for i, _ in hits if i in row]
            if not cand:
                out.append([])
                continue
            scores = vecs[[row[i] for i in cand]] @ q
            order = np.argsort(-scores, kind="stable")
            out.append([(cand[j], float(scores[j])) for j in order])
        return out

    # --- persistence ---------------------------------------------------------------------------
    def write_to(self, sink) -> None:
        """Write the whole index as one ``.npz`` to ``sink`` (a file object, seekable or not: the
        members are written in order, so the caller can hash them as they go), also recording its
        size in ``info['bytes']``. FAISS writes the index straight into the zip member: no copy of
        the file is held. An index whose inverted lists are on disk (:mod:`.ondisk`) writes their
        layout only; the lists file is written and sealed beside it."""
        faiss = _faiss()
        size = [0]

        def count(chunk) -> int:
            size[0] += len(chunk)
            return len(chunk)

        faiss.write_index(self.index, faiss.PyCallbackIOWriter(count))
        self.info["bytes"] = int(size[0] + self.labels.nbytes + self.alive.nbytes + self.info.get("lists_bytes", 0))
        meta = np.frombuffer(json.dumps({"plan": self.plan.to_dict(), "info": self.info}).encode(), np.uint8)
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("faiss.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, {"descr": "|u1", "fortran_order": False,
                                                              "shape": (size[0],)})
                faiss.write_index(self.index, faiss.PyCallbackIOWriter(lambda chunk: member.write(chunk)))
            for name, array in (("labels", self.labels), ("alive", self.alive), ("meta", meta)):
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)

    def to_bytes(self) -> memoryview:
        """The file :meth:`write_to` writes, in memory (tests, small indexes)."""
        buf = io.BytesIO()
        self.write_to(buf)
        return buf.getbuffer()

    @classmethod
    def from_bytes(cls, data: bytes) -> AnnIndex:
        """Raises ValueError on anything malformed (callers rebuild from the database)."""
        return cls.read_from(io.BytesIO(data))

    @classmethod
    def read_from(cls, fh) -> AnnIndex:
        """The index in the ``.npz`` file object ``fh`` (seekable), read member by member in chunks:
        FAISS reads its index from the file through a small buffer, not from a copy of its bytes.
        Lists on disk are left unmapped (FAISS never opens the path it recorded): the caller maps
        them with :func:`.ondisk.attach`. Raises ValueError on anything malformed (callers rebuild
        from the database)."""
        faiss = _faiss()
        try:
            with zipfile.ZipFile(fh) as zf:
                meta = json.loads(_read_npy(zf, "meta").tobytes())
                labels, alive = _read_npy(zf, "labels").astype(np.int64), _read_npy(zf, "alive").astype(bool)
                disk = meta["plan"]["params"].get("lists") == "disk"
                io_flags = faiss.IO_FLAG_SKIP_IVF_DATA if disk else 0
                with zf.open("faiss.npy") as member:
                    version = np.lib.format.read_magic(member)
                    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise ValueError(f"npy version {version}")
                    shape, _, dtype = read_header(member)
                    if dtype != np.uint8 or len(shape) != 1:
                        raise ValueError("faiss member is not a byte array")
                    index = faiss.read_index(faiss.PyCallbackIOReader(member.read), io_flags)
            p = meta["plan"]
            plan = IndexPlan(p["kind"], int(p["dim"]), p["factory"], p["params"], p["search"], p["est_bytes"],
                             p["reason"])
        except Exception as exc:  # any malformed file (zip, JSON, FAISS) is a cache miss
            raise ValueError(f"damaged index file: {exc}") from exc
        if index.d != plan.dim or index.ntotal != len(labels) or len(alive) != len(labels):
            raise ValueError("index file is inconsistent")
        return cls(plan, index, labels, alive, meta["info"])


def _read_npy(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(f"{name}.npy") as member:
        return np.lib.format.read_array(member, allow_pickle=False)
