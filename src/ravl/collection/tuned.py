"""A collection's tuned bridge (``ravl tune``): stored in the collection, verified by its sha256 on
every read, applied to image embeddings on read (the store keeps the base vectors)."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.base import Encoder, ImageVectors
from ..encoders.bridge import Bridge, TunedEncoder
from ..errors import BridgeError
from ..store import bridges as bridge_files
from ..store import bulk
from ..store.db import Database


class TunedBridge:
    """Mixed into :class:`~ravl.collection.core.Collection`."""

    path: Path
    fingerprint: str
    dim: int
    feature_dim: int
    _db: Database
    _lock: threading.Lock
    _bridge: tuple[int, tuple[Bridge, str] | None] | None
    _tuned: TunedEncoder | None

    @property
    def base_encoder(self) -> Encoder:  # defined by Collection
        raise NotImplementedError

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

    def bridge(self) -> tuple[Bridge, str] | None:
        """(bridge, sha256) of the stored tuned bridge, verified, or None; re-read when the store changes."""
        generation = self._db.generation()
        cached = self._bridge
        if cached is not None and cached[0] == generation:
            return cached[1]
        meta = self._db.get_meta()
        loaded = None
        if meta.get("bridge_sha256"):
            data = bridge_files.read_file(self.path, meta.get("bridge_file", ""), meta["bridge_sha256"])
            bridge = Bridge.from_bytes(data)
            if bridge.info.get("base_fingerprint") != self.fingerprint or bridge.out_dim != self.dim \
                    or bridge.in_dim != self.feature_dim:
                raise BridgeError(f"the tuned bridge stored in {self.path} was trained for another encoder; run "
                                  f"'ravl tune --collection {self.path} --reset'")
            loaded = (bridge, meta["bridge_sha256"])
        self._bridge = (generation, loaded)
        return loaded

    def tuned_info(self) -> dict[str, Any] | None:
        """What ``ravl info`` shows of the tuned bridge (None without one)."""
        tuned = self.bridge()
        if tuned is None:
            return None
        bridge, sha = tuned
        return {"method": bridge.method, "weight": bridge.weight, "sha256": sha,
                **{k: bridge.info.get(k) for k in ("trained_at", "data_sha256", "pairs", "figures")}}

    def store_bridge(self, bridge: Bridge | None) -> str | None:
        """Make ``bridge`` the collection's tuned bridge (None: back to the base encoder); one
        transaction switches it, so readers see the old or the new bridge. Returns its sha256."""
        if bridge is None:
            self._db.set_bridge(None, None)
            bridge_files.remove_others(self.path, None)
            return None
        name, sha = bridge_files.write_file(self.path, bridge.to_bytes())
        self._db.set_bridge(name, sha)
        bridge_files.remove_others(self.path, name)
        return sha

    def reset_bridge(self) -> bool:
        """Back to the base encoder (a damaged bridge file is not read); True when one was in use."""
        had = bool(self._db.get_meta().get("bridge_sha256"))
        self.store_bridge(None)
        return had

    def training_pairs(self) -> dict:
        """The stored vectors a bridge learns from: per caption (not OCR) its owner item, text and
        vector, and per item its base embedding, features and content hash."""
        owners, texts, text_vecs = bulk.training_pairs(self._db)
        item_ids, emb = self._db.item_vectors(which="emb")
        _, feat = self._db.item_vectors(which="feat")
        hashes = bulk.item_hashes(self._db)
        return {"owners": owners, "texts": texts, "text_vecs": text_vecs, "item_ids": item_ids,
                "embeddings": emb, "features": feat, "sha256": [hashes[int(i)] for i in item_ids]}

    def item_embeddings(self, item_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, shared-space vectors) of stored items, through the tuned bridge when there is one."""
        ids, emb = self._db.item_vectors(item_ids, which="emb")
        tuned = self.bridge()
        if tuned is None or not len(ids):
            return ids, emb
        ids_f, feat = self._db.item_vectors(ids.tolist() if item_ids is None else item_ids, which="feat")
        order = {int(i): n for n, i in enumerate(ids_f)}
        feat = feat[[order[int(i)] for i in ids]]
        return ids, tuned[0].apply(emb, feat)

    def bridged(self, vecs: ImageVectors) -> ImageVectors:
        """The base encoder's ``vecs`` as this collection sees them (tuned bridge applied, if any)."""
        tuned = self.bridge()
        if tuned is None or not len(vecs.embedding):
            return vecs
        return ImageVectors(tuned[0].apply(vecs.embedding, vecs.features), vecs.features)
