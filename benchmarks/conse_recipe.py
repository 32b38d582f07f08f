"""Choose the ConSE recipe of the ``default`` encoder: text->image recall on the Tux Paint stamps.

Query: a stamp's English description; answer: its own image (any stamp with the identical
description counts, since identical queries cannot tell them apart; each distinct description is
one query). Letter/digit/chess/money/math stamps are left out. Recipes are compared on the SELECT
half (a stable hash of each stamp's path) and the chosen one is reported on the REPORT half.

    .venv/bin/python benchmarks/conse_recipe.py            # needs tuxpaint-stamps-default
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from PIL import Image

from ravl.encoders import conse
from ravl.encoders.default import TEXT_MODEL, DefaultEncoder
from ravl.ingest.tuxpaint import load_stamps, split_half

R = conse.ConseRecipe
CANDIDATES: dict[str, conse.ConseRecipe] = {
    "baseline: T=10, 'a photo of a {first lemma}'": conse.BASELINE,
    "baseline + temperature 2, T=20": conse.with_options(conse.BASELINE, topk=20, temperature=2.0),
    "all lemmas '{}', T=10": R(definition_weight=0.0, topk=10, temperature=1.0),
    "definition sentence only, T=20, temp 2": R(templates=(), definition_weight=1.0),
    "all lemmas '{}' + definition, T=10": R(topk=10, temperature=1.0),
    "all lemmas '{}' + definition, T=20, temp 2 (shipped)": conse.DEFAULT_RECIPE,
    "all lemmas '{}' + definition, T=10, temp 3": R(topk=10, temperature=3.0),
    "all lemmas '{}' + definition, T=50, temp 2": R(topk=50, temperature=2.0),
    "all lemmas '{}' + 'a cartoon {}' + definition, T=20, temp 2": R(templates=("{}", "a cartoon {}")),
}


def load_rgb(path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.copy()


def recall(query_vecs, queries, gallery_vecs, gallery_desc, ks=(1, 5, 10)) -> tuple[float, ...]:
    order = np.argsort(-(query_vecs @ gallery_vecs.T), axis=1)
    gallery_desc = np.asarray(gallery_desc)
    hits = np.zeros(len(ks))
    for qi, q in enumerate(queries):
        correct = gallery_desc[order[qi]] == q
        hits += [correct[:k].any() for k in ks]
    return tuple(100.0 * hits / len(queries))


def main() -> None:
    enc = DefaultEncoder()
    stamps = load_stamps()
    select, report = split_half(stamps)
    t0 = time.perf_counter()
    pixels = np.stack([enc.preprocess(load_rgb(s.image)) for s in stamps])
    logits = np.concatenate([enc.forward(pixels[i : i + 32])[0] for i in range(0, len(pixels), 32)])
    print(f"{len(stamps)} stamps ({len(select)} select / {len(report)} report), "
          f"{len({s.description for s in stamps})} distinct descriptions; CNN {time.perf_counter() - t0:.1f} s "
          f"({enc.runner.name})", file=sys.stderr)
    index = {s.relpath: i for i, s in enumerate(stamps)}
    halves = {"select": select, "report": report}

    def evaluate(recipe: conse.ConseRecipe, half: str) -> tuple[float, ...]:
        members = halves[half]
        rows = [index[s.relpath] for s in members]
        gallery = conse.bridge(logits[rows], matrices[recipe], recipe)
        queries = sorted({s.description for s in members})
        return recall(enc.encode_texts(queries), queries, gallery, [s.description for s in members])

    matrices: dict[conse.ConseRecipe, np.ndarray] = {}
    print("\nSELECT half: text->image Recall@1/5/10 (%), class-matrix build (or cache) time")
    for name, recipe in CANDIDATES.items():
        t0 = time.perf_counter()  # cached under RAVL_HOME/conse: a re-run only evaluates
        matrices[recipe] = conse.load_class_matrix(recipe, enc.encode_texts, TEXT_MODEL, enc.dim)
        build = time.perf_counter() - t0
        r1, r5, r10 = evaluate(recipe, "select")
        print(f"  {name:62s} {r1:5.1f} {r5:5.1f} {r10:5.1f}   class matrix {build:5.1f} s", flush=True)
    print("\nREPORT half: text->image Recall@1/5/10 (%)")
    for name, recipe in (("baseline", conse.BASELINE), ("shipped default", conse.DEFAULT_RECIPE)):
        r1, r5, r10 = evaluate(recipe, "report")
        print(f"  {name:62s} {r1:5.1f} {r5:5.1f} {r10:5.1f}")
    print(f"\nshipped recipe: {conse.recipe_dict(conse.DEFAULT_RECIPE)} "
          f"(hash {conse.DEFAULT_RECIPE.recipe_hash(TEXT_MODEL)})")


if __name__ == "__main__":
    main()
