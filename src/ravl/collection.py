"""A collection: a folder holding the SQLite database and FAISS index caches, plus the encoder
that made its vectors. Search across modalities lives here; ingest lives in :mod:`ravl.ingest`."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from . import __version__
from .encoders.base import Encoder, load_encoder
from .errors import CollectionNotFoundError, ConfigError, EncoderMismatchError, ItemNotFoundError
from .store import vectors
from .store.ann import AnnIndex
from .store.db import DB_NAME, Database, ItemRow
from .store.index_plan import KINDS as INDEX_KINDS
from .store.index_plan import choose_index, parse_size, split_budget

Target = Literal["images", "captions"]
TARGETS = ("images", "captions")
MAX_K = 1000
INDEX_NAMES = ("images", "features", "captions")


@dataclass(frozen=True)
class ImageHit:
    id: int
    uri: str
    score: float
    captions: tuple[str, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["captions"] = list(self.captions)
        return d


@dataclass(frozen=True)
class CaptionHit:
    id: int
    caption: str
    image_id: int
    uri: str
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def check_k(k: int) -> int:
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise ConfigError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    return k


def check_search_params(ef_search: int | None = None, nprobe: int | None = None) -> dict:
    """Validated per-query index knobs (None = the default tuned at build)."""
    for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65536):
            raise ConfigError(f"{name} must be an integer between 1 and 65536, got {value!r}")
    return {"ef_search": ef_search, "nprobe": nprobe}


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
        # name -> (index, seq, generation, config, collection id) it covers
        self._indexes: dict[str, tuple[AnnIndex, int, int, str, str]] = {}
        #: how each index was last brought up to date: 'cached', 'caught-up' or 'rebuilt'
        self.index_updates: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def encoder(self) -> Encoder:
        """The collection's encoder, loaded on first use and checked against the stored fingerprint."""
        with self._lock:
            if self._encoder is None:
                self._encoder = load_encoder(self.encoder_spec)
            _check_fingerprint(self.path, self.fingerprint, self._encoder)
            return self._encoder

    # --- facts --------------------------------------------------------------------------------
    def info(self) -> dict:
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        meta = self.db.get_meta()
        return {"path": str(self.path), **self.db.counts(), "encoder": self.encoder_spec,
                "fingerprint": self.fingerprint, "dim": self.dim, "feature_dim": self.feature_dim,
                "created_at": meta.get("created_at"), "ravl_version": meta.get("ravl_version"),
                "generation": self.db.generation(), "size_bytes": size,
                "index": self.index_config(), "indexes": self.index_facts()}

    def get_item(self, item_id: int) -> ItemRow:
        row = self.db.items([item_id]).get(item_id)
        if row is None:
            raise ItemNotFoundError(f"no item with id {item_id} in {self.path}; list ids with 'ravl search'")
        return row

    def delete(self, item_ids: Sequence[int]) -> int:
        return self.db.delete_items(list(item_ids))

    # --- indexes ------------------------------------------------------------------------------
    def index_config(self) -> dict:
        """The requested index kind ('auto', 'flat', 'hnsw', 'ivfpq') and memory budget (bytes or None)."""
        meta = self.db.get_meta()
        budget = meta.get("index_memory_budget") or None
        return {"kind": meta.get("index_kind", "auto"), "memory_budget": int(budget) if budget else None}

    def index_facts(self) -> dict[str, dict]:
        """What each index cache file says about itself (kind, parameters, build time, size, recall)."""
        out = {}
        for name in INDEX_NAMES:
            meta = vectors.read_sidecar(self.path / "index", name)
            if meta and isinstance(meta.get("info"), dict):
                info = meta["info"]
                out[name] = {k: info.get(k) for k in ("kind", "factory", "count", "search", "recall_at_10",
                                                      "build_seconds", "bytes", "built_at", "over_budget")
                             if info.get(k) is not None}
                out[name]["generation"] = meta.get("generation")
        return out

    def set_index_config(self, kind: str = "auto", memory_budget: int | str | None = None) -> None:
        """Record the index kind and budget for this collection; checked against its current size (a
        ConfigError says what would fit). Indexes rebuild to match on next use (:meth:`refresh_indexes`)."""
        if kind not in INDEX_KINDS:
            raise ConfigError(f"unknown index type {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
        budget = parse_size(memory_budget)
        shares = self._budget_shares(budget)
        for name in INDEX_NAMES:
            n, dim = self._size(name)
            choose_index(n, dim, kind, shares[name])
        with self.db.transaction() as c:
            self.db.set_meta({"index_kind": kind, "index_memory_budget": budget or ""}, c)

    def _size(self, name: str) -> tuple[int, int]:
        counts = self.db.counts()
        if name == "captions":
            return counts["captions"], self.dim
        return counts["images"], self.feature_dim if name == "features" else self.dim

    def _budget_shares(self, budget: int | None) -> dict[str, int | None]:
        return split_budget(budget, {name: max(1, n) * d for name, (n, d) in
                                     ((name, self._size(name)) for name in INDEX_NAMES)})

    def _source(self, name: str, config: dict) -> vectors.Source:
        db = self.db
        if name == "captions":
            target, dim, fetch_all, fetch_ids = "caption", self.dim, db.caption_vectors, db.caption_vectors
        else:
            which = "feat" if name == "features" else "emb"
            target, dim = "item", self.feature_dim if name == "features" else self.dim
            fetch_all = lambda: db.item_vectors(which=which)  # noqa: E731
            fetch_ids = lambda ids: db.item_vectors(list(ids), which=which)  # noqa: E731
        share = self._budget_shares(config["memory_budget"])[name]

        def plan(n: int):
            try:
                return choose_index(n, dim, config["kind"], share)
            except ConfigError as exc:  # grew past the budget: the smallest index, and say so in info
                smallest = choose_index(n, dim, "ivfpq")
                smallest = choose_index(n, dim, "ivfpq", max(share or 0, smallest.est_bytes))
                return type(smallest)(**{**smallest.__dict__, "reason": f"over budget: {exc}"})

        return vectors.Source(target, dim, fetch_all, fetch_ids, lambda: self._size(name)[0], plan)

    def _index(self, name: str) -> AnnIndex:
        with self._lock:
            with self.db.snapshot():
                meta = self.db.get_meta()
                config = self.index_config()
                state = vectors.DbState(meta.get("collection_id", ""), int(meta.get("generation", 0)),
                                        self.db.change_seq(), self.db.changes_pruned_through(),
                                        f"{config['kind']}|{config['memory_budget'] or ''}")
                held = self._indexes.get(name)
                if held and held[1:] == (state.seq, state.generation, state.config, state.collection_id):
                    return held[0]
                loaded = held[:3] if held and held[3:] == (state.config, state.collection_id) else None
                index, how = vectors.current(self.db, self.path / "index", name, state, self._source(name, config),
                                             loaded, save=not self.db.readonly)
            if index.plan.reason.startswith("over budget"):
                index.info["over_budget"] = index.plan.reason
            self._indexes[name] = (index, state.seq, state.generation, state.config, state.collection_id)
            self.index_updates[name] = how
            return index

    def refresh_indexes(self) -> dict[str, str]:
        """Bring every index cache file up to date (called at the end of ingest); returns how each
        was updated ('cached', 'caught-up', 'rebuilt'). Forgets change-log rows all caches cover."""
        for name in INDEX_NAMES:
            self._index(name)
        if not self.db.readonly:
            covered = [held[1] for held in self._indexes.values()]
            if len(covered) == len(INDEX_NAMES) and min(covered) > self.db.changes_pruned_through():
                self.db.prune_changes(min(covered))
        return dict(self.index_updates)

    def reindex(self, kind: str = "auto", memory_budget: int | str | None = None) -> dict[str, dict]:
        """Rebuild every index as ``kind`` within ``memory_budget``; returns :meth:`index_facts`."""
        self.set_index_config(kind, memory_budget)
        self._indexes.clear()
        for name in INDEX_NAMES:
            (self.path / "index" / f"{name}.json").unlink(missing_ok=True)
        self.refresh_indexes()
        return self.index_facts()

    # --- search -------------------------------------------------------------------------------
    def search_vectors(self, queries: np.ndarray, *, index: str, k: int, exclude_items: Iterable[int] = (),
                       ef_search: int | None = None,
                       nprobe: int | None = None) -> list[list[ImageHit] | list[CaptionHit]]:
        """Search the ``images``, ``features`` or ``captions`` index with raw query vectors.
        ``ef_search`` (HNSW) and ``nprobe`` (IVF-PQ) override the tuned defaults for this query."""
        check_k(k)
        knobs = check_search_params(ef_search, nprobe)
        excluded = list(exclude_items)
        if index == "captions":
            excl = [c for ids in self.db.caption_ids_for_items(excluded).values() for c in ids]
            raw = self._index("captions").search(queries, k, excl, fetch=self.db.caption_vectors, **knobs)
            rows = self.db.caption_rows(sorted({i for hits in raw for i, _ in hits}))
            return [[CaptionHit(cid, rows[cid][0], rows[cid][1], rows[cid][2], score) for cid, score in hits
                     if cid in rows] for hits in raw]
        which = "feat" if index == "features" else "emb"
        raw = self._index(index).search(queries, k, excluded, **knobs,
                                        fetch=lambda ids: self.db.item_vectors(list(ids), which=which))
        items = self.db.items(sorted({i for hits in raw for i, _ in hits}))
        return [[ImageHit(i, items[i].uri, score, items[i].captions) for i, score in hits if i in items]
                for hits in raw]

    def search_text(self, texts: Sequence[str], *, target: Target = "images", k: int = 10, **knobs):
        """Text -> images (shared space) or text -> captions (``knobs``: ef_search, nprobe)."""
        check_target(target)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ConfigError("a text query must be a non-empty string")
        queries = self.encoder.encode_texts(list(texts))
        return self.search_vectors(queries, index=target, k=k, **knobs)

    def search_image(self, images: Sequence[Image.Image], *, target: Target = "images", k: int = 10,
                     exclude_items: Iterable[int] = (), **knobs):
        """Image -> similar images (image features) or image -> captions (shared space)."""
        check_target(target)
        vecs = self.encoder.embed_images([im.convert("RGB") for im in images])
        if target == "images":
            return self.search_vectors(vecs.features, index="features", k=k, exclude_items=exclude_items, **knobs)
        return self.search_vectors(vecs.embedding, index="captions", k=k, exclude_items=exclude_items, **knobs)

    def search_item(self, item_id: int, *, target: Target = "images", k: int = 10, include_self: bool = False,
                    **knobs):
        """Search with a stored item's own vectors (no image decoding or model call)."""
        check_target(target)
        self.get_item(item_id)
        which = "feat" if target == "images" else "emb"
        _, vecs = self.db.item_vectors([item_id], which=which)
        exclude = () if include_self else (item_id,)
        index = "features" if target == "images" else "captions"
        return self.search_vectors(vecs, index=index, k=k, exclude_items=exclude, **knobs)[0]


def _check_fingerprint(path: Path, stored: str, encoder: Encoder) -> None:
    if encoder.fingerprint != stored:
        raise EncoderMismatchError(
            f"collection {path} was built with encoder {stored!r}, but {encoder.fingerprint!r} is loaded; "
            "re-index into a new --collection folder to use this encoder"
        )


def open_collection(path: str | Path, *, encoder: str | Encoder | None = None, create: bool = False,
                    readonly: bool = False) -> Collection:
    """Open the collection in folder ``path``.

    ``encoder`` (a spec or an :class:`Encoder`) is used to create a new collection; for an existing
    one it must match what the collection was built with. ``create=True`` makes the folder and
    database when missing.
    """
    path = Path(path).expanduser().resolve()
    db_path = path / DB_NAME
    if not db_path.exists():
        if not create:
            raise CollectionNotFoundError(
                f"no collection at {path}; build one with 'ravl index SOURCE --collection {path}'")
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--collection {path} is a file; give a folder path")
        path.mkdir(parents=True, exist_ok=True)
        enc = encoder if isinstance(encoder, Encoder) else load_encoder(encoder or "default")
        db = Database(db_path)
        if "encoder_spec" not in db.get_meta():
            with db.transaction() as c:
                db.set_meta({"encoder_spec": enc.spec, "encoder_fingerprint": enc.fingerprint, "dim": enc.dim,
                             "feature_dim": enc.feature_dim, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "ravl_version": __version__, "generation": 0}, c)
        return Collection(path, db, encoder=enc)
    db = Database(db_path, readonly=readonly)
    meta = db.get_meta()
    if "encoder_spec" not in meta:
        db.close()
        raise CollectionNotFoundError(f"{db_path} holds no ravl collection metadata; delete it and re-index")
    enc_obj = None
    if isinstance(encoder, Encoder):
        enc_obj = encoder
    elif encoder is not None and encoder.strip() != meta["encoder_spec"]:
        db.close()
        raise EncoderMismatchError(
            f"collection {path} was built with encoder {meta['encoder_spec']!r}, not {encoder!r}; omit --encoder "
            "to use the collection's own, or index into a new --collection folder")
    coll = Collection(path, db, encoder=enc_obj)
    if enc_obj is not None:
        _check_fingerprint(path, coll.fingerprint, enc_obj)
    return coll
