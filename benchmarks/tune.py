"""What `ravl tune` and hybrid search buy on open emoji data (run `make data` first).

1. In domain: index the Noto (Google) emoji, captioned with their names and CLDR keywords, and run
   `ravl tune` (linear and mlp): base vs tuned R@1/5/10 on its held-out caption groups.
2. Across art styles: apply the bridge learned on Noto to the Twemoji images of the same emoji;
   queries are the emoji names; reported for all emoji and for those whose names were held out
   of tuning (the honest figure: those names were never trained on, in either style).
3. Hybrid vs vector: the Twemoji collection captioned with CLDR keywords only, queried by name.

    .venv/bin/python benchmarks/tune.py [--data .data/npm/node_modules] [--out benchmarks/out/tune]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from ravl.collection import open_collection
from ravl.ingest.emoji import read_emoji_datasource
from ravl.ingest.pipeline import index_sources
from ravl.tune import reset_tuning, tune_collection
from ravl.tune.data import build_pairs, normalise_text, split

KS = (1, 5, 10)


def t2i(query_vecs: np.ndarray, image_vecs: np.ndarray, truth: list[list[int]]) -> dict:
    """text->image R@K (percent); truth[q] = image rows that answer query q."""
    sim = query_vecs @ image_vecs.T
    ranks = []
    for q, rows in enumerate(truth):
        best = sim[q, rows].max()
        mask = np.ones(sim.shape[1], bool)
        mask[rows] = False
        ranks.append(int((sim[q, mask] >= best).sum()))
    ranks = np.array(ranks)
    return {f"R@{k}": round(float((ranks < k).mean() * 100), 1) for k in KS}


def build(path: Path, records, label: str) -> None:
    if (path / "ravl.sqlite").exists():
        return
    t = time.perf_counter()
    with open_collection(path, create=True) as coll:
        report = index_sources(coll, [], records=records)
    print(f"# indexed {label}: {report.added} images in {time.perf_counter() - t:.0f}s", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".data/npm/node_modules")
    ap.add_argument("--out", default="benchmarks/out/tune")
    ap.add_argument("--methods", default="linear,mlp")
    args = ap.parse_args()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    noto = read_emoji_datasource(data / "emoji-datasource-google")
    twem = read_emoji_datasource(data / "emoji-datasource-twitter")
    for r in twem:
        r.metadata["name"] = r.captions[0]
    twem_kw = [type(r)(r.path, r.captions[1:], dict(r.metadata)) for r in twem]
    build(out / "noto", noto, "Noto (names + keywords)")
    build(out / "twemoji-keywords", twem_kw, "Twemoji (keywords only)")
    results: dict = {"in_domain": {}, "transfer": {}, "hybrid": {}}

    a = open_collection(out / "noto")
    b = open_collection(out / "twemoji-keywords")
    enc = b.base_encoder
    # queries: Twemoji names; truth: every Twemoji image with that name
    items = b.items(b.item_vectors(which="emb")[0].tolist())
    ids = sorted(items)
    name_rows: dict[str, list[int]] = {}
    for row, i in enumerate(ids):
        name_rows.setdefault(normalise_text(items[i].metadata["name"]), []).append(row)
    names = sorted(name_rows)
    qvecs = enc.encode_texts(names)
    truth = [name_rows[n] for n in names]
    _, emb = b.item_vectors(ids, which="emb")
    _, feat = b.item_vectors(ids, which="feat")

    pairs = build_pairs(a.training_pairs())
    _, val = split(pairs, 0.1, 0)
    held_out = {normalise_text(pairs.texts[t]) for t in pairs.text[val]}
    held = [q for q, n in enumerate(names) if n in held_out]
    results["transfer"]["base"] = {"all": t2i(qvecs, emb, truth),
                                   "held_out": t2i(qvecs[held], emb, [truth[q] for q in held])}
    results["transfer"]["held_out_queries"] = len(held)
    for method in args.methods.split(","):
        t = time.perf_counter()
        report = tune_collection(a, method=method)
        secs = time.perf_counter() - t
        results["in_domain"][method] = {"kept": report.kept, "weight": report.weight, "base": report.base,
                                        "tuned": report.tuned, "tuned_alone": report.tuned_alone,
                                        "pairs": report.pairs, "seconds": round(secs, 1)}
        print(f"# {method}: kept={report.kept} w={report.weight} {secs:.0f}s", file=sys.stderr)
        if report.kept:
            bridge, _ = a.bridge()
            fused = bridge.apply(emb, feat)
            alone = bridge.project(feat)
            results["transfer"][method] = {
                "fused": {"all": t2i(qvecs, fused, truth), "held_out": t2i(qvecs[held], fused, [truth[q] for q in held])},
                "alone": {"all": t2i(qvecs, alone, truth), "held_out": t2i(qvecs[held], alone, [truth[q] for q in held])}}
        reset_tuning(a)

    for mode in ("vector", "keyword", "hybrid"):
        hits = b.search_text(names, mode=mode, k=10)
        row_of = {i: r for r, i in enumerate(ids)}
        ranks = []
        for q, hs in enumerate(hits):
            found = [n for n, h in enumerate(hs) if row_of[h.id] in truth[q]]
            ranks.append(found[0] if found else 99)
        ranks = np.array(ranks)
        results["hybrid"][mode] = {f"R@{k}": round(float((ranks < k).mean() * 100), 1) for k in KS}
    results["hybrid"]["queries"] = len(names)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
