"""How long `ravl tune` takes for N synthetic pairs (no model: random stored vectors with a hidden
linear relation), the training and validation steps exactly as `tune_collection` runs them.

    .venv/bin/python benchmarks/tune_speed.py [--pairs 100000] [--method linear]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ravl.encoders.base import l2_normalize
from ravl.tune.data import SELECT_PAIRS, Pairs, caption_groups, recall, split, subsample
from ravl.tune.train import choose_weight, train_bridge


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--method", default="linear")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.pairs
    feats = l2_normalize(np.abs(rng.normal(size=(n, 1280))).astype(np.float32))
    hidden = rng.normal(size=(1280, 384)).astype(np.float32)
    texts = l2_normalize(feats @ hidden + 0.5 * rng.normal(size=(n, 384)).astype(np.float32))
    base = l2_normalize(texts + 2.0 * rng.normal(size=(n, 384)).astype(np.float32))
    pairs = Pairs(np.arange(n), np.arange(n), feats, base, texts, [str(i) for i in range(n)], "synthetic")
    t0 = time.perf_counter()
    train, val = split(pairs, 0.1)
    select = subsample(val, caption_groups(pairs), SELECT_PAIRS)
    t1 = time.perf_counter()
    bridge, run = train_bridge(pairs, train, select, method=args.method, residual=False, epochs=args.epochs)
    t2 = time.perf_counter()
    w, _ = choose_weight(bridge, pairs, select)
    bridge.weight = w
    fig = recall(bridge.apply(base, feats), texts, pairs.image[val], pairs.text[val])
    t3 = time.perf_counter()
    print(f"pairs {n}: split {t1 - t0:.1f}s, train {t2 - t1:.1f}s ({run['steps']} steps, batch {run['batch_size']}), "
          f"weight + full validation {t3 - t2:.1f}s, total {t3 - t0:.1f}s; w={w} t2i R@1 {fig['text_to_image_R@1']}")


if __name__ == "__main__":
    main()
