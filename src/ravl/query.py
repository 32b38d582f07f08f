"""Batch queries: many text and image queries against one collection with one model load,
results in input order as plain dicts (the CLI's and the server's JSON)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .collection import Collection, Target, check_k, check_target
from .errors import InputError
from .hits import check_search_params
from .hybrid import Fusion
from .images import load_image
from .inputs import parse_json, read_text


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


def run_queries(collection: Collection, queries: Sequence[dict], *, target: Target = "images",
                k: int = 10, mode: str = "auto", fusion: Fusion = Fusion(), ef_search: int | None = None,
                nprobe: int | None = None) -> list[dict]:
    """``[{"query": q, "results": [...]}, ...]`` in input order; texts and images each batched."""
    check_target(target)
    check_k(k)
    check_search_params(ef_search, nprobe)
    queries = [_check_query(q, f"query {i + 1}") for i, q in enumerate(queries)]
    results: list[list] = [[] for _ in queries]
    text_pos = [i for i, q in enumerate(queries) if "text" in q]
    image_pos = [i for i, q in enumerate(queries) if "image" in q]
    if text_pos:
        hits = collection.search_text([queries[i]["text"] for i in text_pos], target=target, k=k, mode=mode,
                                      fusion=fusion, ef_search=ef_search, nprobe=nprobe)
        for i, h in zip(text_pos, hits):
            results[i] = h
    if image_pos:
        images = [load_image(queries[i]["image"]).image for i in image_pos]
        hits = collection.search_image(images, target=target, k=k, ef_search=ef_search, nprobe=nprobe)
        for i, h in zip(image_pos, hits):
            results[i] = h
    return [{"query": q, "results": [h.to_dict() for h in r]} for q, r in zip(queries, results)]
