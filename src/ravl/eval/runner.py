"""Benchmark runners: cross-modal retrieval over a collection, plus what every runner shares
(input checks, dataset and configuration hashes, the per-item result cache).

Retrieval follows the CLIP benchmark protocol (see :mod:`ravl.eval.recall`) on the vectors the
collection already stores, so no model runs: the similarity matrix is caption embeddings @ image
embeddings.T. Captioning lives in :mod:`ravl.eval.captioning`, zero-shot classification in
:mod:`ravl.eval.zeroshot`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError


def ravl_version() -> str:
    from .. import __version__

    return __version__


def parse_ks(text: str | Iterable[int]) -> tuple[int, ...]:
    """'1,5,10' (or an iterable of ints) -> (1, 5, 10); a ConfigError names the expected form."""
    try:
        parts = [p for p in text.replace(" ", "").split(",") if p] if isinstance(text, str) else list(text)
        ks = tuple(sorted({int(p) for p in parts}))
    except (TypeError, ValueError):
        ks = ()
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k must be positive integers separated by commas, e.g. 1,5,10; got {text!r}")
    return ks


def config_hash(config: Mapping) -> str:
    """A short stable hash of a JSON-able configuration (keys sorted)."""
    blob = json.dumps(config, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def dataset_hash(entries: Iterable[tuple[str, Sequence[str]]]) -> str:
    """Hash of (image content sha256, captions) pairs, independent of order and file paths."""
    h = hashlib.sha256()
    for sha, captions in sorted((s, tuple(sorted(c))) for s, c in entries):
        h.update(sha.encode("ascii", "replace") + b"\0" + "\x1f".join(captions).encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_records(records: Sequence, source: str, *, need_captions: bool = True) -> None:
    """Refuse an evaluation set with no images, images missing from disk, or images without captions."""
    if not records:
        raise InputError(f"{source} lists no images; check the path and --split")
    missing = [r for r in records if not Path(r.path).is_file()]
    if missing:
        raise InputError(f"{len(missing)} of {len(records)} images of {source} are missing from disk "
                         f"(e.g. {missing[0].path}); fix the paths or pass --images-root DIR")
    if need_captions:
        empty = [r for r in records if not r.captions]
        if empty:
            raise InputError(f"{len(empty)} of {len(records)} images of {source} have no (non-empty) captions "
                             f"(e.g. {empty[0].path}); references are needed: add captions or drop those images")


# --- per-item result cache ------------------------------------------------------------------------
class ResultCache:
    """Per-item results appended to a JSONL file, one line per item, keyed by (config hash, key).

    Lines of other configurations are kept but ignored, so one file serves several runs. A line
    cut short by an interrupted run is skipped; the item is simply computed again.
    """

    def __init__(self, path: Path | str, config_id: str):
        self.path = Path(path)
        self.config_id = config_id
        self._rows: dict[str, Any] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and row.get("config") == config_id and isinstance(row.get("key"), str):
                    self._rows[row["key"]] = row.get("value")

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def get(self, key: str):
        return self._rows.get(key)

    def put(self, key: str, value) -> None:
        """Store and append immediately (flushed), so an interrupted run keeps every finished item."""
        self._rows[key] = value
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"config": self.config_id, "key": key, "value": value}, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise InputError(f"cannot write the result cache {self.path} ({exc}); choose a writable --out folder") from exc


# --- retrieval --------------------------------------------------------------------------------
@dataclass
class RetrievalRun:
    """Recall@K figures plus the facts that go into the report's configuration."""

    scores: object  # RetrievalScores
    n_images: int
    n_captions: int
    dataset_hash: str
    split: str | None = None
    details: dict = field(default_factory=dict)


def evaluate_retrieval(collection, *, ks: Iterable[int] = (1, 5, 10), split: str | None = None,
                       uris: Iterable[str] | None = None, ties: str = "pessimistic") -> RetrievalRun:
    """Text->image and image->text Recall@K over a collection's stored vectors.

    ``split`` keeps items whose metadata ``split`` matches (Karpathy files record it); ``uris``
    keeps only those images (e.g. the records of one dataset). Every caption of a kept image is a
    text query; every kept image is a candidate.
    """
    from .recall import retrieval_scores

    ks = parse_ks(ks)
    item_ids, image_vecs = collection.item_embeddings()
    if not len(item_ids):
        raise InputError(f"collection {collection.path} holds no images; index a captioned dataset first")
    rows = collection.items(item_ids.tolist())
    keep = np.ones(len(item_ids), dtype=bool)
    if split is not None:
        splits = sorted({str(r.metadata.get("split")) for r in rows.values() if r.metadata.get("split")})
        if split not in splits:
            have = ", ".join(splits) if splits else "none (the collection records no splits)"
            raise InputError(f"unknown split {split!r} in collection {collection.path}; splits there: {have}")
        keep &= np.array([rows[int(i)].metadata.get("split") == split for i in item_ids])
    if uris is not None:
        wanted = set(uris)
        keep &= np.array([rows[int(i)].uri in wanted for i in item_ids])
        found = int(keep.sum())
        if found < len(wanted):
            raise InputError(f"{len(wanted) - found} images of the dataset are not in collection {collection.path} "
                             "(they were skipped while indexing: unreadable or missing files); fix or drop them")
    item_ids, image_vecs = item_ids[keep], image_vecs[keep]
    column = {int(i): n for n, i in enumerate(item_ids)}
    cap_ids, cap_vecs = collection.caption_vectors()
    cap_rows = collection.caption_rows(cap_ids.tolist())
    owners = np.array([column.get(cap_rows[int(c)][1], -1) if int(c) in cap_rows else -1 for c in cap_ids],
                      dtype=np.int64)
    used = owners >= 0
    if not used.any():
        raise InputError(f"the {len(item_ids)} images evaluated in {collection.path} have no captions; "
                         "retrieval needs captioned images (sidecar .txt, manifest captions, COCO annotations)")
    cap_vecs, owners = cap_vecs[used], owners[used]
    if cap_vecs.shape[1] != image_vecs.shape[1]:
        raise InputError(f"caption vectors ({cap_vecs.shape[1]}-d) and image vectors ({image_vecs.shape[1]}-d) "
                         "differ in size; the collection is damaged: re-index it into a new folder")
    similarity = cap_vecs.astype(np.float32) @ image_vecs.astype(np.float32).T
    scores = retrieval_scores(similarity, owners.tolist(), ks=ks, ties=ties)
    ds = dataset_hash((rows[int(i)].sha256, rows[int(i)].captions) for i in item_ids)
    return RetrievalRun(scores=scores, n_images=len(item_ids), n_captions=int(len(owners)), dataset_hash=ds,
                        split=split, details={"chance_R@1_text_to_image": 1.0 / len(item_ids)})


def retrieval_config(collection, run: RetrievalRun, ks: Sequence[int], *, data: Sequence[str] = (),
                     ties: str = "pessimistic") -> dict:
    """The report configuration of a retrieval run."""
    return {"task": "retrieval", "encoder": collection.encoder_spec, "encoder_fingerprint": collection.active_fingerprint,
            "k": list(ks), "split": run.split, "data": list(data), "collection": str(collection.path),
            "dataset_hash": run.dataset_hash, "n_images": run.n_images, "n_captions": run.n_captions,
            "ties": ties, "protocol": "CLIP benchmark (t2i: own image relevant; i2t: any own caption)",
            "ravl_version": ravl_version()}
