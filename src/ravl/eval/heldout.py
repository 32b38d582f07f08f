"""Held-out text queries: a JSONL file of ``{"query": text, "relevant": [image paths]}`` scored
through the search a user gets (every mode, calibrated scores, the collection's own fusion),
Recall@K per mode. The quality suite (benchmarks/quality.py) uses the same file format, so users
can run it on their own data: ``ravl eval retrieval -c DIR --queries FILE``."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import InputError
from ..inputs import parse_json, read_text
from .recall import ranking_scores

MODES = ("vector", "keyword", "hybrid", "auto")


def read_heldout(path: str | Path, images_root: str | Path | None = None) -> list[tuple[str, set[str]]]:
    """(query, relevant image paths) per line; relative paths resolve against ``images_root``
    (default: the file's folder)."""
    path = Path(path)
    root = Path(images_root).expanduser() if images_root else path.parent
    out = []
    for n, line in enumerate(read_text(path, "queries file", error=InputError).splitlines(), 1):
        if not line.strip():
            continue
        d = parse_json(line, f"{path}:{n}", error=InputError)
        query, relevant = (d.get("query"), d.get("relevant")) if isinstance(d, dict) else (None, None)
        if not isinstance(query, str) or not query.strip() or not isinstance(relevant, list) or not relevant \
                or not all(isinstance(r, str) and r for r in relevant):
            raise InputError(f'{path}:{n}: write {{"query": "a cat", "relevant": ["cats/tabby.jpg", ...]}} '
                             "(a non-empty query and a non-empty list of image paths)")
        out.append((query, {str(p if (p := Path(r).expanduser()).is_absolute() else (root / p).resolve())
                            for r in relevant}))
    if not out:
        raise InputError(f"{path}: no queries")
    return out


def evaluate_heldout(collection, queries: Sequence[tuple[str, set[str]]], *, ks: Iterable[int] = (1, 5, 10),
                     modes: Sequence[str] = MODES, depth: int = 100) -> dict:
    """mode -> text->image Recall@K (:class:`~ravl.eval.recall.DirectionScores` as a dict) and how
    often a top hit with score >= 0.5 was relevant; plus how many relevant paths the collection lacks."""
    uris = set(collection.file_states())
    missing = sorted({r for _, rel in queries for r in rel} - uris)
    if len(missing) == len({r for _, rel in queries for r in rel}):
        raise InputError(f"none of the relevant images is in collection {collection.path} (e.g. {missing[0]}); "
                         "give --images-root, the folder the relevant paths are relative to")
    texts = [q for q, _ in queries]
    out: dict = {"n_queries": len(queries), "relevant_missing": len(missing)}
    for mode in modes:
        hits = collection.search_text(texts, mode=mode, k=depth)
        rankings: dict = {n: [h.uri for h in row] for n, row in enumerate(hits)}
        relevant: dict = {n: rel for n, (_, rel) in enumerate(queries)}
        scores = ranking_scores(rankings, relevant, ks=ks,
                                name=f"text_to_image ({mode})", n_candidates=len(uris))
        confident = [(row[0].uri in rel) for row, (_, rel) in zip(hits, queries) if row and row[0].score >= 0.5]
        out[mode] = {**scores.to_dict(), "confident_top1": len(confident),
                     "confident_top1_right": round(sum(confident) / len(confident), 4) if confident else None}
    return out


def render_heldout(result: dict, ks: Sequence[int]) -> str:
    """A Markdown table: one row per mode."""
    lines = ["| mode | " + " | ".join(f"R@{k}" for k in ks) + " | top-1 right when score >= 0.5 |",
             "|---|" + "---|" * len(ks) + "---|"]
    for mode in MODES:
        if mode in result:
            r = result[mode]
            right = (f"{100 * r['confident_top1_right']:.1f}% of {r['confident_top1']}" if r["confident_top1"]
                     else "none")
            label = "default (auto)" if mode == "auto" else mode
            lines.append(f"| {label} | " + " | ".join(f"{100 * r['recall'][f'R@{k}']:.1f}" for k in ks) + f" | {right} |")
    return "\n".join(lines)
