"""A collection: a folder holding the SQLite database and FAISS index caches, plus the encoder
that made its vectors. Search across modalities lives here; ingest lives in :mod:`ravl.ingest`."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from . import __version__
from .encoders.base import Encoder, load_encoder
from .errors import CollectionNotFoundError, ConfigError, EncoderMismatchError, ItemNotFoundError
from .store.db import DB_NAME, OCR_SOURCE, Database, ItemRow, NewItem
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


@dataclass(frozen=True)
class CaptionSet:
    """Captions of some items, aligned: caption ids, their item ids, texts and (n, dim) vectors."""

    ids: list[int]
    item_ids: list[int]
    texts: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


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
        self._db = db  # private: everything outside store/ goes through the methods below
        meta = db.get_meta()
        self.encoder_spec = meta["encoder_spec"]
        self.fingerprint = meta["encoder_fingerprint"]
        self.dim = int(meta["dim"])
        self.feature_dim = int(meta["feature_dim"])
        self._encoder = encoder
        self._indexes: dict[str, tuple[int, VectorIndex]] = {}
        self._lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

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
        meta = self._db.get_meta()
        return {"path": str(self.path), **self._db.counts(), "encoder": self.encoder_spec,
                "fingerprint": self.fingerprint, "dim": self.dim, "feature_dim": self.feature_dim,
                "created_at": meta.get("created_at"), "ravl_version": meta.get("ravl_version"),
                "generation": self._db.generation(), "size_bytes": size}

    def get_item(self, item_id: int) -> ItemRow:
        row = self._db.items([item_id]).get(item_id)
        if row is None:
            raise ItemNotFoundError(f"no item with id {item_id} in {self.path}; list ids with 'ravl search'")
        return row

    def delete(self, item_ids: Sequence[int]) -> int:
        return self._db.delete_items(list(item_ids))

    # --- store access: the one door (the SQL lives in store/) ---------------------------------
    def counts(self) -> dict[str, int]:
        """``{"images": n, "captions": m}``."""
        return self._db.counts()

    def generation(self) -> int:
        """Bumped by every write; caches keyed on it are valid while it is unchanged."""
        return self._db.generation()

    def file_states(self) -> dict[str, tuple[int, int, int, str]]:
        """uri -> (item id, size, mtime_ns, sha256) of every item."""
        return self._db.file_states()

    def item_by_uri(self, uri: str) -> ItemRow | None:
        return self._db.item_by_uri(uri)

    def items(self, item_ids: Sequence[int]) -> dict[int, ItemRow]:
        """item id -> row (uri, hashes, size, metadata, captions) for the ids that exist."""
        return self._db.items(item_ids)

    def item_metadata(self, item_ids: Iterable[int] | None = None) -> list[tuple[int, str, dict]]:
        """(id, uri, metadata) of every item, or of ``item_ids``, by id."""
        return self._db.item_metadata(item_ids)

    def captions_by_item(self, item_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
        """item id -> caption texts (all items when ``item_ids`` is None)."""
        return self._db.captions_by_item(item_ids)

    def caption_rows(self, caption_ids: Sequence[int]) -> dict[int, tuple[str, int, str]]:
        """caption id -> (text, item id, item uri)."""
        return self._db.caption_rows(caption_ids)

    def item_vectors(self, item_ids: Sequence[int] | None = None, which: str = "emb") -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of items' shared-space embeddings (``emb``) or image features (``feat``)."""
        return self._db.item_vectors(item_ids, which)

    def caption_vectors(self, caption_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of captions (all when ``caption_ids`` is None)."""
        return self._db.caption_vectors(caption_ids)

    def add_batch(self, new_items: Sequence[NewItem], touched: Sequence[tuple[int, int, int]] = (),
                  extra_captions: Sequence[tuple[int, str, np.ndarray, str]] = ()) -> list[int]:
        """Write one ingest batch in one transaction (see :meth:`Database.write_batch`); the ids of
        ``new_items``."""
        return self._db.write_batch(new_items, touched, extra_captions)

    def replace_captions(self, source: str, batch: Sequence[tuple[int, Sequence[tuple[str, np.ndarray]], dict]]) -> int:
        """Replace the captions of one ``source`` (e.g. ``'ocr'``) and the metadata of some items in
        one transaction; returns how many captions were added."""
        return self._db.replace_captions(source, batch)

    # --- indexes ------------------------------------------------------------------------------
    def _index(self, name: str) -> VectorIndex:
        generation = self._db.generation()
        with self._lock:
            cached = self._indexes.get(name)
            if cached and cached[0] == generation:
                return cached[1]
            if name == "captions":
                fetch: Callable[[], tuple[np.ndarray, np.ndarray]]
                fetch, dim = self._db.caption_vectors, self.dim
            elif name == "features":
                fetch, dim = (lambda: self._db.item_vectors(which="feat")), self.feature_dim
            else:
                fetch, dim = (lambda: self._db.item_vectors(which="emb")), self.dim
            with self._db.snapshot():  # the binding and a rebuild see the same database state
                binding = {**self._db.index_binding(name), "dim": dim}
                index = load_or_build(self.path / "index", name, binding, dim, fetch)
            built_at = binding["generation"]
            assert isinstance(built_at, int)
            self._indexes[name] = (built_at, index)
            return index

    def index_binding(self, name: str) -> dict:
        """What the ``name`` index cache must be sealed to now (collection id, generation, count, dim)."""
        dim = self.feature_dim if name == "features" else self.dim
        with self._db.snapshot():
            return {**self._db.index_binding(name), "dim": dim}

    def refresh_indexes(self) -> None:
        """Bring every index cache file up to date (called at the end of ingest)."""
        for name in ("images", "features", "captions"):
            self._index(name)

    # --- captions -----------------------------------------------------------------------------
    def scene_captions(self, item_ids: Sequence[int]) -> CaptionSet:
        """The captions of ``item_ids`` (in that order, then by caption id) that describe the scene:
        text that ``ravl index --ocr`` read from an image is left out."""
        cap_ids = self._db.caption_ids_for_items(list(item_ids), exclude_source=OCR_SOURCE)
        pairs = [(cid, item) for item in item_ids for cid in cap_ids.get(item, [])]
        if not pairs:
            return CaptionSet([], [], [], np.zeros((0, self.dim), np.float32))
        ids, vecs = self._db.caption_vectors([cid for cid, _ in pairs])
        by_id = dict(zip(ids.tolist(), vecs))
        rows = self._db.caption_rows([cid for cid, _ in pairs])
        return CaptionSet([cid for cid, _ in pairs], [item for _, item in pairs], [rows[cid][0] for cid, _ in pairs],
                          np.stack([by_id[cid] for cid, _ in pairs]))

    # --- search -------------------------------------------------------------------------------
    def search_vectors(self, queries: np.ndarray, *, index: str, k: int,
                       exclude_items: Iterable[int] = ()) -> list[list[ImageHit] | list[CaptionHit]]:
        """Search the ``images``, ``features`` or ``captions`` index with raw query vectors."""
        check_k(k)
        excluded = list(exclude_items)
        if index == "captions":
            excl = [c for ids in self._db.caption_ids_for_items(excluded).values() for c in ids]
            raw = self._index("captions").search(queries, k, excl)
            rows = self._db.caption_rows(sorted({i for hits in raw for i, _ in hits}))
            return [[CaptionHit(cid, rows[cid][0], rows[cid][1], rows[cid][2], score) for cid, score in hits
                     if cid in rows] for hits in raw]
        raw = self._index(index).search(queries, k, excluded)
        items = self._db.items(sorted({i for hits in raw for i, _ in hits}))
        return [[ImageHit(i, items[i].uri, score, items[i].captions) for i, score in hits if i in items]
                for hits in raw]

    def search_text(self, texts: Sequence[str], *, target: Target = "images", k: int = 10):
        """Text -> images (shared space) or text -> captions."""
        check_target(target)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ConfigError("a text query must be a non-empty string")
        queries = self.encoder.encode_texts(list(texts))
        return self.search_vectors(queries, index=target, k=k)

    def search_image(self, images: Sequence[Image.Image], *, target: Target = "images", k: int = 10,
                     exclude_items: Iterable[int] = ()):
        """Image -> similar images (image features) or image -> captions (shared space)."""
        check_target(target)
        vecs = self.encoder.embed_images([im.convert("RGB") for im in images])
        if target == "images":
            return self.search_vectors(vecs.features, index="features", k=k, exclude_items=exclude_items)
        return self.search_vectors(vecs.embedding, index="captions", k=k, exclude_items=exclude_items)

    def search_item(self, item_id: int, *, target: Target = "images", k: int = 10, include_self: bool = False):
        """Search with a stored item's own vectors (no image decoding or model call)."""
        check_target(target)
        self.get_item(item_id)
        which = "feat" if target == "images" else "emb"
        _, vecs = self._db.item_vectors([item_id], which=which)
        exclude = () if include_self else (item_id,)
        index = "features" if target == "images" else "captions"
        return self.search_vectors(vecs, index=index, k=k, exclude_items=exclude)[0]


def _same_vectors(a: str, b: str) -> bool:
    """True when specs ``a`` and ``b`` differ only in options their family declares runtime-only."""
    from . import registry
    from .errors import RavlError
    from .specs import fingerprint_spec, parse_spec

    try:
        pa, pb = parse_spec(a), parse_spec(b)
        if pa.family != pb.family:
            return False
        options = registry.declaration(registry.factory_for("encoders", pa)).options
    except (RavlError, ImportError, AttributeError):
        return False
    return bool(options) and fingerprint_spec(pa, options) == fingerprint_spec(pb, options)


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
    elif encoder is not None and encoder.strip() != meta["encoder_spec"] and _same_vectors(encoder, meta["encoder_spec"]):
        enc_obj = load_encoder(encoder)  # differs only in runtime options (device, threads, ...)
    elif encoder is not None and encoder.strip() != meta["encoder_spec"]:
        db.close()
        raise EncoderMismatchError(
            f"collection {path} was built with encoder {meta['encoder_spec']!r}, not {encoder!r}; omit --encoder "
            "to use the collection's own, or index into a new --collection folder")
    coll = Collection(path, db, encoder=enc_obj)
    if enc_obj is not None:
        _check_fingerprint(path, coll.fingerprint, enc_obj)
    return coll
