"""A collection: a folder holding the SQLite database and FAISS index caches, plus the encoder
that made its vectors. Search across modalities lives here; ingest lives in :mod:`ravl.ingest`."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from . import __version__
from .encoders.base import Encoder, ImageVectors, load_encoder
from .encoders.bridge import Bridge, TunedEncoder
from .errors import CollectionError, CollectionNotFoundError, ConfigError, EncoderMismatchError, ItemNotFoundError
from .fsutil import WriterLock
from .hybrid import Fusion, check_mode, fts_query, rrf
from .store import bridges as bridge_files
from .store.db import DB_NAME, Database, ItemRow, sqlite_errors, translating_sqlite_errors
from .store.vectors import VectorIndex, load_or_build

Target = Literal["images", "captions"]
TARGETS = ("images", "captions")
MAX_K = 1000


@dataclass(frozen=True)
class ImageHit:
    id: int
    uri: str
    score: float
    captions: tuple[str, ...]
    found_by: dict | None = None  # text search: {signal: rank} for the rankings that found it

    def to_dict(self) -> dict:
        d = asdict(self)
        d["captions"] = list(self.captions)
        if self.found_by is None:
            del d["found_by"]
        return d


@dataclass(frozen=True)
class CaptionHit:
    id: int
    caption: str
    image_id: int
    uri: str
    score: float
    found_by: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.found_by is None:
            del d["found_by"]
        return d


def check_k(k: int) -> int:
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise ConfigError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    return k


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return target


class Collection:
    """Open with :func:`open_collection`."""

    def __init__(self, path: Path, db: Database, *, encoder: Encoder | None = None):
        self.path = path
        self.db = db
        meta = db.get_meta()
        self.encoder_spec = meta["encoder_spec"]
        self.fingerprint = meta["encoder_fingerprint"]
        self.dim = int(meta["dim"])
        self.feature_dim = int(meta["feature_dim"])
        self._encoder = encoder
        self._indexes: dict[str, tuple[int, VectorIndex]] = {}
        self._bridge: tuple[int, tuple[Bridge, str] | None] | None = None  # (generation, (bridge, sha))
        self._tuned: TunedEncoder | None = None
        self._lock = threading.Lock()
        self._writer_lock: WriterLock | None = None  # held while opened with create=True

    # --- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        self.db.close()
        lock, self._writer_lock = getattr(self, "_writer_lock", None), None
        if lock:
            lock.release()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def base_encoder(self) -> Encoder:
        """The encoder the collection was built with (no tuned bridge): what ingest stores."""
        with self._lock:
            if self._encoder is None:
                self._encoder = load_encoder(self.encoder_spec)
            _check_fingerprint(self.path, self.fingerprint, self._encoder)
            return self._encoder

    @property
    def encoder(self) -> Encoder:
        """The collection's encoder, loaded on first use and checked against the stored fingerprint;
        when ``ravl tune`` stored a bridge, image embeddings go through it (texts do not change)."""
        base = self.base_encoder
        tuned = self.bridge()
        if tuned is None:
            return base
        bridge, sha = tuned
        with self._lock:
            if self._tuned is None or self._tuned.inner is not base or self._tuned.bridge_sha256 != sha:
                self._tuned = TunedEncoder(base, bridge, sha)
            return self._tuned

    @property
    def active_fingerprint(self) -> str:
        """The stored encoder fingerprint, plus the tuned bridge's when one is in use."""
        tuned = self.bridge()
        return self.fingerprint if tuned is None else f"{self.fingerprint}+tuned-{tuned[0].method}-{tuned[1][:12]}"

    # --- tuned bridge -------------------------------------------------------------------------
    def bridge(self) -> tuple[Bridge, str] | None:
        """(bridge, sha256) of the stored tuned bridge, verified, or None; re-read when the store changes."""
        generation = self.db.generation()
        cached = self._bridge
        if cached is not None and cached[0] == generation:
            return cached[1]
        meta = self.db.get_meta()
        loaded = None
        if meta.get("bridge_sha256"):
            data = bridge_files.read_file(self.path, meta.get("bridge_file", ""), meta["bridge_sha256"])
            bridge = Bridge.from_bytes(data)
            if bridge.info.get("base_fingerprint") != self.fingerprint or bridge.out_dim != self.dim \
                    or bridge.in_dim != self.feature_dim:
                from .errors import BridgeError

                raise BridgeError(f"the tuned bridge stored in {self.path} was trained for another encoder; run "
                                  f"'ravl tune --collection {self.path} --reset'")
            loaded = (bridge, meta["bridge_sha256"])
        self._bridge = (generation, loaded)
        return loaded

    def store_bridge(self, bridge: Bridge | None) -> str | None:
        """Make ``bridge`` the collection's tuned bridge (None: back to the base encoder); one
        transaction switches it, so readers see the old or the new bridge. Returns its sha256."""
        if bridge is None:
            self.db.set_bridge(None, None)
            bridge_files.remove_others(self.path, None)
            return None
        name, sha = bridge_files.write_file(self.path, bridge.to_bytes())
        self.db.set_bridge(name, sha)
        bridge_files.remove_others(self.path, name)
        return sha

    def reset_bridge(self) -> bool:
        """Back to the base encoder (a damaged bridge file is not read); True when one was in use."""
        had = bool(self.db.get_meta().get("bridge_sha256"))
        self.store_bridge(None)
        return had

    def training_pairs(self) -> dict:
        """The stored vectors a bridge learns from: per caption (not OCR) its owner item, text and
        vector, and per item its base embedding, features and content hash."""
        owners, texts, text_vecs = self.db.training_pairs()
        item_ids, emb = self.db.item_vectors(which="emb")
        ids_f, feat = self.db.item_vectors(which="feat")
        hashes = self.db.item_hashes()
        return {"owners": owners, "texts": texts, "text_vecs": text_vecs, "item_ids": item_ids,
                "embeddings": emb, "features": feat, "sha256": [hashes[int(i)] for i in item_ids]}

    def item_embeddings(self, item_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, shared-space vectors) of stored items, through the tuned bridge when there is one."""
        ids, emb = self.db.item_vectors(item_ids, which="emb")
        tuned = self.bridge()
        if tuned is None or not len(ids):
            return ids, emb
        ids_f, feat = self.db.item_vectors(ids.tolist() if item_ids is None else item_ids, which="feat")
        order = {int(i): n for n, i in enumerate(ids_f)}
        feat = feat[[order[int(i)] for i in ids]]
        return ids, tuned[0].apply(emb, feat)

    def embed_images(self, images: Sequence[Image.Image]) -> ImageVectors:
        """Images -> vectors as this collection sees them (tuned bridge applied)."""
        return self.encoder.embed_images([im.convert("RGB") for im in images])

    # --- facts --------------------------------------------------------------------------------
    @translating_sqlite_errors
    def info(self) -> dict:
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        meta = self.db.get_meta()
        out: dict[str, Any] = {"path": str(self.path), **self.db.counts(), "encoder": self.encoder_spec,
               "fingerprint": self.fingerprint, "dim": self.dim, "feature_dim": self.feature_dim,
               "created_at": meta.get("created_at"), "ravl_version": meta.get("ravl_version"),
               "generation": self.db.generation(), "size_bytes": size, "tuned": None}
        tuned = self.bridge()
        if tuned is not None:
            bridge, sha = tuned
            out["fingerprint"] = self.active_fingerprint
            out["tuned"] = {"method": bridge.method, "weight": bridge.weight, "sha256": sha,
                            **{k: bridge.info.get(k) for k in ("trained_at", "data_sha256", "pairs", "figures")}}
        return out

    @translating_sqlite_errors
    def get_item(self, item_id: int) -> ItemRow:
        row = self.db.items([item_id]).get(item_id) if _valid_id(item_id) else None
        if row is None:
            raise ItemNotFoundError(f"no item with id {item_id} in {self.path}; list ids with 'ravl search'")
        return row

    @translating_sqlite_errors
    def delete(self, item_ids: Sequence[int]) -> int:
        return self.db.delete_items([i for i in item_ids if _valid_id(i)])

    # --- indexes ------------------------------------------------------------------------------
    def _index(self, name: str) -> VectorIndex:
        generation = self.db.generation()
        with self._lock:
            cached = self._indexes.get(name)
            if cached and cached[0] == generation:
                return cached[1]
            if name == "captions":
                fetch: Callable[[], tuple[np.ndarray, np.ndarray]]
                fetch, dim = self.db.caption_vectors, self.dim
            elif name == "features":
                fetch, dim = (lambda: self.db.item_vectors(which="feat")), self.feature_dim
            else:
                fetch, dim = self.item_embeddings, self.dim  # through the tuned bridge, if any
            with self.db.snapshot():  # the binding and a rebuild see the same database state
                binding = {**self.db.index_binding(name), "dim": dim}
                if name == "images":
                    binding["bridge"] = self.db.get_meta().get("bridge_sha256")
                index = load_or_build(self.path / "index", name, binding, dim, fetch)
            built_at = binding["generation"]
            assert isinstance(built_at, int)
            self._indexes[name] = (built_at, index)
            return index

    @translating_sqlite_errors
    def refresh_indexes(self) -> None:
        """Bring every index cache file up to date (called at the end of ingest)."""
        for name in ("images", "features", "captions"):
            self._index(name)

    # --- search -------------------------------------------------------------------------------
    @translating_sqlite_errors
    def search_vectors(self, queries: np.ndarray, *, index: str, k: int,
                       exclude_items: Iterable[int] = ()) -> list[list[ImageHit] | list[CaptionHit]]:
        """Search the ``images``, ``features`` or ``captions`` index with raw query vectors."""
        check_k(k)
        excluded = list(exclude_items)
        if index == "captions":
            excl = [c for ids in self.db.caption_ids_for_items(excluded).values() for c in ids]
            raw = self._index("captions").search(queries, k, excl)
            rows = self.db.caption_rows(sorted({i for hits in raw for i, _ in hits}))
            return [[CaptionHit(cid, rows[cid][0], rows[cid][1], rows[cid][2], score) for cid, score in hits
                     if cid in rows] for hits in raw]
        raw = self._index(index).search(queries, k, excluded)
        items = self.db.items(sorted({i for hits in raw for i, _ in hits}))
        return [[ImageHit(i, items[i].uri, score, items[i].captions) for i, score in hits if i in items]
                for hits in raw]

    def search_text(self, texts: Sequence[str], *, target: Target = "images", k: int = 10, mode: str = "auto",
                    fusion: Fusion = Fusion()):
        """Text -> images or captions by ``mode``: ``vector`` (shared space), ``keyword`` (BM25 over
        captions, sidecar and OCR text), ``hybrid`` (both, reciprocal rank fusion) or ``auto``
        (hybrid when the collection holds text, else vector). Each hit's ``found_by`` gives the rank
        each signal gave it."""
        check_target(target)
        check_k(k)
        check_mode(mode)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ConfigError("a text query must be a non-empty string")
        for t in texts:
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError("a text query holds bytes that are not UTF-8; pass UTF-8 text") from None
        has_text = self.db.counts()["captions"] > 0
        if mode == "auto":
            mode = "hybrid" if has_text and self.db.has_keyword_index() else "vector"
        if mode != "vector" and not self.db.has_keyword_index():
            raise ConfigError(f"collection {self.path} predates keyword search; run 'ravl index' on it once (any "
                              "source) to build its keyword index, or use --mode vector")
        depth = k if mode == "vector" else min(MAX_K, max(50, 3 * k))
        vector: list[Any] = [[] for _ in texts]
        if mode != "keyword":
            vector = self.search_vectors(self.encoder.encode_texts(list(texts)), index=target, k=depth)
        if mode == "vector":
            return [[replace(h, found_by={"vector": r}) for r, h in enumerate(hits, 1)] for hits in vector]
        out = []
        for text, vhits in zip(texts, vector):
            keyword = self._keyword_hits(text, target, depth)
            if mode == "keyword":
                out.append([replace(h, found_by={"keyword": r}) for r, h in enumerate(keyword[:k], 1)])
                continue
            by_id = {h.id: h for h in keyword} | {h.id: h for h in vhits}
            fused = rrf({"vector": [h.id for h in vhits], "keyword": [h.id for h in keyword]},
                        {"vector": fusion.vector_weight, "keyword": fusion.keyword_weight}, fusion.rrf_k)
            out.append([replace(by_id[i], score=round(score, 6), found_by=found) for i, score, found in fused[:k]])
        return out

    def _keyword_hits(self, text: str, target: str, depth: int) -> list:
        match = fts_query(text)
        if match is None:
            return []
        rows = self.db.keyword_search(match, depth if target == "captions" else depth * 4)
        if target == "captions":
            cap = self.db.caption_rows([cid for cid, _, _ in rows])
            return [CaptionHit(cid, cap[cid][0], cap[cid][1], cap[cid][2], score) for cid, _, score in rows if cid in cap]
        best: dict[int, float] = {}
        for _, item_id, score in rows:
            best.setdefault(item_id, score)
        ids = list(best)[:depth]
        items = self.db.items(ids)
        return [ImageHit(i, items[i].uri, best[i], items[i].captions) for i in ids if i in items]

    def search_image(self, images: Sequence[Image.Image], *, target: Target = "images", k: int = 10,
                     exclude_items: Iterable[int] = ()):
        """Image -> similar images (image features) or image -> captions (shared space)."""
        check_target(target)
        vecs = self.encoder.embed_images([im.convert("RGB") for im in images])
        if target == "images":
            return self.search_vectors(vecs.features, index="features", k=k, exclude_items=exclude_items)
        return self.search_vectors(vecs.embedding, index="captions", k=k, exclude_items=exclude_items)

    @translating_sqlite_errors
    def search_item(self, item_id: int, *, target: Target = "images", k: int = 10, include_self: bool = False):
        """Search with a stored item's own vectors (no image decoding or model call)."""
        check_target(target)
        self.get_item(item_id)
        if target == "images":
            _, vecs = self.db.item_vectors([item_id], which="feat")
        else:
            _, vecs = self.item_embeddings([item_id])
        exclude = () if include_self else (item_id,)
        index = "features" if target == "images" else "captions"
        return self.search_vectors(vecs, index=index, k=k, exclude_items=exclude)[0]


def _valid_id(item_id) -> bool:
    """Ids are SQLite integers: anything outside int64 (or not an int) names no item."""
    return isinstance(item_id, int) and not isinstance(item_id, bool) and 0 <= item_id < 2**63


def _check_fingerprint(path: Path, stored: str, encoder: Encoder) -> None:
    if encoder.fingerprint != stored:
        raise EncoderMismatchError(
            f"collection {path} was built with encoder {stored!r}, but {encoder.fingerprint!r} is loaded; "
            "re-index into a new --collection folder to use this encoder"
        )


LOCK_NAME = "ravl.lock"
log = logging.getLogger("ravl")


def _initial_meta(enc: Encoder) -> dict[str, object]:
    return {"encoder_spec": enc.spec, "encoder_fingerprint": enc.fingerprint, "dim": enc.dim,
            "feature_dim": enc.feature_dim, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "ravl_version": __version__, "generation": 0}


def open_collection(path: str | Path, *, encoder: str | Encoder | None = None, create: bool = False,
                    readonly: bool = False) -> Collection:
    """Open the collection in folder ``path``.

    ``encoder`` (a spec or an :class:`Encoder`) is used to create a new collection; for an existing
    one it must match what the collection was built with. ``create=True`` makes the folder and
    database when missing (schema and metadata in one transaction), finishes a collection whose
    creation was interrupted, and holds the collection's writer lock until :meth:`Collection.close`:
    a second process opening it with ``create=True`` waits (and logs that it waits).
    """
    path = Path(path).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--collection {path} is a file; give a folder path")
    lock = None
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = WriterLock(path / LOCK_NAME, on_wait=lambda: log.warning(
                "ravl: another process is writing to %s; waiting for it to finish (Ctrl-C to stop)", path))
        except OSError as exc:
            raise CollectionError(f"cannot write to collection folder {path} ({exc.strerror or exc}); "
                                  "choose a folder you can write to") from None
    try:
        coll = _open(path, encoder, create, readonly)
    except BaseException:
        if lock:
            lock.release()
        raise
    coll._writer_lock = lock
    return coll


def _open(path: Path, encoder: str | Encoder | None, create: bool, readonly: bool) -> Collection:
    db_path = path / DB_NAME
    enc_obj = encoder if isinstance(encoder, Encoder) else None
    initial = None
    if not db_path.exists():
        if not create:
            raise CollectionNotFoundError(
                f"no collection at {path}; build one with 'ravl index SOURCE --collection {path}'")
        enc_obj = enc_obj or load_encoder(str(encoder or "default"))
        initial = _initial_meta(enc_obj)
    db = Database(db_path, readonly=readonly and not create, initial_meta=initial)
    try:
        with sqlite_errors(db_path):
            meta = db.get_meta()
        if "encoder_spec" not in meta:  # creation interrupted (or made by an older ravl): finish it
            if not create:
                raise CollectionNotFoundError(
                    f"{path} holds an unfinished collection (its creation was interrupted); run 'ravl index "
                    f"SOURCE --collection {path}' to finish creating it")
            enc_obj = enc_obj or load_encoder(str(encoder or "default"))
            with db.transaction() as c:
                if "encoder_spec" not in dict(c.execute("SELECT key, value FROM meta").fetchall()):
                    db.set_meta(_initial_meta(enc_obj), c)
                meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
        if enc_obj is None and encoder is not None and str(encoder).strip() != meta["encoder_spec"]:
            raise EncoderMismatchError(
                f"collection {path} was built with encoder {meta['encoder_spec']!r}, not {encoder!r}; omit "
                "--encoder to use the collection's own, or index into a new --collection folder")
        coll = Collection(path, db, encoder=enc_obj)
        if enc_obj is not None:
            _check_fingerprint(path, coll.fingerprint, enc_obj)
        return coll
    except BaseException:
        db.close()
        raise
