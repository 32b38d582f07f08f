"""Retrieval-augmented captioning benchmark: caption every image of an evaluation set with the
collection as the datastore, then score against the references (:func:`score_captions`).

``leave_one_out=True`` is the standard way to score retrieval-based captioning on one dataset:
every evaluated image must be in the collection, and it (plus any stored copy with identical
content) is excluded from its own retrieval, so its own captions can never be returned.
Without it, evaluation images must *not* be in the collection (that would leak the references).

Generated captions are cached per item (see :class:`~ravl.eval.runner.ResultCache`), so an
interrupted run resumes where it stopped.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..progress import Progress
from .runner import ResultCache, check_records, config_hash, dataset_hash, file_sha256, ravl_version

CACHE_NAME = "caption-cache.jsonl"


@dataclass
class CaptionRun:
    """Scores, every generated caption, and where each came from (cache or computed now)."""

    scores: object  # CaptionScores
    captions: dict[str, dict]  # uri -> {"caption", "method", "neighbours", "error"}
    references: dict[str, list[str]]
    config: dict
    cache_hits: int = 0
    computed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n_errors(self) -> int:
        return sum(1 for row in self.captions.values() if row.get("error"))


def caption_config(collection, *, generator_spec: str, k: int, leave_one_out: bool, params=None,
                   template: str | None = None, data: Sequence[str] = (), split: str | None = None,
                   ds_hash: str = "", backend: str = "auto") -> dict:
    """The report configuration of a captioning run (the cache key uses the generation part)."""
    return {"task": "captioning", "encoder": collection.encoder_spec, "encoder_fingerprint": collection.active_fingerprint,
            "generator": generator_spec, "k": k, "leave_one_out": leave_one_out,
            "params": dict(vars(params)) if params is not None else {}, "template": template,
            "collection": str(collection.path), "collection_generation": collection.generation(),
            "data": list(data), "split": split, "dataset_hash": ds_hash, "metrics_backend": backend,
            "ravl_version": ravl_version()}


def _generation_key(config: dict) -> str:
    """Only what changes a generated caption (not the metrics backend or paths)."""
    keys = ("encoder_fingerprint", "generator", "k", "leave_one_out", "params", "template", "collection_generation",
            "ravl_version")
    return config_hash({k: config.get(k) for k in keys})


def evaluate_captioning(collection, records: Sequence, *, generator=None, k: int = 5, leave_one_out: bool = False,
                        params=None, template: str | None = None, backend: str = "auto",
                        cache_dir: Path | str | None = None, data: Sequence[str] = (), split: str | None = None,
                        progress: Progress | None = None) -> CaptionRun:
    """Caption ``records`` (from :func:`~ravl.ingest.sources.read_sources`) and score them.

    ``generator`` is a spec or a Generator (default: consensus). With ``cache_dir`` every generated
    caption is appended to ``cache_dir/caption-cache.jsonl`` as soon as it exists; a re-run with
    the same configuration reuses them. ``progress(done, total)`` is called after each image.
    """
    from ..collection import check_k
    from ..generate.base import GenerationParams, load_generator
    from ..images import load_image
    from ..rag import caption_image
    from .scoring import score_captions

    t0 = time.perf_counter()
    check_k(k)
    source = ", ".join(map(str, data)) or "the evaluation set"
    check_records(records, source)
    gen = load_generator(generator or "consensus")
    params = params or GenerationParams()
    _ = collection.encoder  # load now: a collection built with another encoder fails here, before any work
    states = collection.file_states()  # uri -> (id, size, mtime_ns, sha256)
    by_sha: dict[str, list[int]] = {}
    for item_id, _size, _mtime, sha in states.values():
        by_sha.setdefault(sha, []).append(item_id)
    shas = {r.uri: file_sha256(Path(r.path)) for r in records}
    if leave_one_out:
        absent = [r.uri for r in records if r.uri not in states and shas[r.uri] not in by_sha]
        if absent:
            raise InputError(f"--leave-one-out needs every evaluated image in the collection, but {len(absent)} are "
                             f"not (e.g. {absent[0]}); index them first: ravl index SOURCE --collection "
                             f"{collection.path}")
    else:
        leaked = [r.uri for r in records if r.uri in states or shas[r.uri] in by_sha]
        if leaked:
            raise InputError(f"{len(leaked)} evaluation images are also in collection {collection.path} (e.g. "
                             f"{leaked[0]}), so their own captions would be retrieved; pass --leave-one-out or "
                             "evaluate a split that is not indexed")
    ds_hash = dataset_hash((shas[r.uri], r.captions) for r in records)
    config = caption_config(collection, generator_spec=gen.spec, k=k, leave_one_out=leave_one_out, params=params,
                            template=template, data=data, split=split, ds_hash=ds_hash, backend=backend)
    cache = ResultCache(Path(cache_dir) / CACHE_NAME, _generation_key(config)) if cache_dir else None
    captions: dict[str, dict] = {}
    hits = computed = 0
    timings = {"generate": 0.0}
    for done, rec in enumerate(records, 1):
        row = cache.get(rec.uri) if cache is not None else None
        if isinstance(row, dict) and isinstance(row.get("caption"), str):
            hits += 1
        else:
            t = time.perf_counter()
            exclude: set[int] = set()
            if leave_one_out:
                own = states.get(rec.uri)
                exclude.update(by_sha.get(shas[rec.uri], []))
                if own:
                    exclude.add(own[0])
            image = load_image(rec.path, min_side=collection.encoder.image_size_hint).image
            result = caption_image(collection, image, k=k, generator=gen, params=params, exclude_items=sorted(exclude),
                                   template=template, name=rec.uri)
            row = {"caption": result.caption, "method": result.method,
                   "neighbours": [n.id for n in result.neighbours], "error": result.error}
            timings["generate"] += time.perf_counter() - t
            computed += 1
            if cache is not None:
                cache.put(rec.uri, row)
        captions[rec.uri] = row
        if progress:
            progress(done, len(records))
    references = {r.uri: list(r.captions) for r in records}
    t = time.perf_counter()
    scores = score_captions(references, {u: row["caption"] for u, row in captions.items()}, backend=backend)
    timings["score"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    config["metrics_backend"] = scores.backend
    config["tokenizer"] = scores.tokenizer
    return CaptionRun(scores=scores, captions=captions, references=references, config=config, cache_hits=hits,
                      computed=computed, seconds={k2: round(v, 3) for k2, v in timings.items()})


def caption_extra(run: CaptionRun, cache_path: Path | None, n_examples: int = 5) -> dict:
    """What goes into the report beside the scores: cache use, errors, a few examples."""
    errors = [{"image": u, "error": row["error"]} for u, row in run.captions.items() if row.get("error")]
    examples = [{"image": u, "caption": row["caption"], "references": run.references[u]}
                for u, row in list(run.captions.items())[:n_examples]]
    return {"cache": {"file": str(cache_path) if cache_path else None, "hits": run.cache_hits,
                      "computed": run.computed},
            "generator_errors": {"count": len(errors), "first": errors[:5]},
            "examples": examples, "seconds": run.seconds}
