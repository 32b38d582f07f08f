"""The search job every front door shares: a :class:`~ravl.request.SearchRequest` (or a JSONL file
of queries) against one collection with one model load, answered as plain dicts (the CLI's and
the server's JSON): the query, the hits, and whether any hit is a good match."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..collection import Collection
from ..errors import InputError
from ..images import load_image
from ..inputs import parse_json, read_text
from ..request import SearchRequest, Term, parse_query
from ..scores import GOOD_MATCH


def read_queries(path: str | Path) -> list[dict]:
    """A JSONL file of ``{"text": ...}`` or ``{"image": path}`` lines; relative image paths resolve
    against the file's folder and are returned absolute."""
    path = Path(path)
    lines = read_text(path, "queries file", error=InputError).splitlines()
    queries = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        q = parse_json(line, f"{path}:{n}", error=InputError)
        queries.append(_check_query(q, f"{path}:{n}", path.parent))
    if not queries:
        raise InputError(f"{path}: no queries; write one JSON object per line, e.g. {{\"text\": \"a red car\"}}")
    return queries


def _check_query(q, where: str, base: Path | None = None) -> dict:
    if not isinstance(q, dict) or (("text" in q) == ("image" in q)):
        raise InputError(f"{where}: each query needs exactly one of \"text\" or \"image\"")
    key = "text" if "text" in q else "image"
    if not isinstance(q[key], str) or not q[key].strip():
        raise InputError(f"{where}: \"{key}\" must be a non-empty string")
    if key == "image" and base is not None:
        p = Path(q["image"]).expanduser()
        return {"image": str(p if p.is_absolute() else (base / p).resolve())}
    return {key: q[key]}


def request_for(query: dict, options: SearchRequest) -> SearchRequest:
    """``options`` with the terms of one ``{"text": ...}`` / ``{"image": path}`` query."""
    q = _check_query(query, "query")
    terms = parse_query(q["text"]) if "text" in q else (Term("image", q["image"]),)
    return replace(options, terms=terms)


def answer(request: SearchRequest, hits: Sequence) -> dict:
    """The JSON answer: ``good_match`` is false when no hit reaches the good-match score."""
    best = max((h.score for h in hits), default=None)
    return {"query": request.describe(), "target": request.target, "results": [h.to_dict() for h in hits],
            "good_match": best is not None and best >= max(GOOD_MATCH, request.min_score),
            "best_score": best}


def search(collection: Collection, request: SearchRequest) -> dict:
    """One request; its image terms are files (the safe opener reads them)."""
    return run_requests(collection, [request])[0]


def run_requests(collection: Collection, requests: Sequence[SearchRequest]) -> list[dict]:
    """Answers in input order; plain texts are encoded in one batch, image files decoded once."""
    files = sorted({str(t.value) for r in requests for t in r.terms if t.kind == "image"})
    pictures = {}
    if files:
        vecs = collection.base_encoder.embed_images([load_image(f).image for f in files])
        pictures = {f: vecs.take(i) for i, f in enumerate(files)}
    texts = sorted({str(t.value) for r in requests if r.mode != "keyword" for t in r.texts})
    text_vectors = dict(zip(texts, collection.encoder.encode_texts(texts))) if texts else {}
    images = [[pictures[str(t.value)] for t in r.terms if t.kind == "image"] for r in requests]
    vectors = [collection.query_vector(r, text_vectors, imgs) for r, imgs in zip(requests, images)]
    hits = collection.search_batch(requests, vectors, images=images)
    return [answer(r, h) for r, h in zip(requests, hits)]


def run_queries(collection: Collection, queries: Sequence[dict], options: SearchRequest) -> list[dict]:
    """:func:`run_requests` for ``{"text"|"image": ...}`` queries sharing ``options``."""
    return run_requests(collection, [request_for(q, options) for q in queries])
