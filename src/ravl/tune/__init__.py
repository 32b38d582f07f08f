"""``ravl tune``: learn a bridge from a collection's own image–caption pairs (LiT/SmallCap style:
towers frozen, only a small map on the stored vectors is trained), judge it against the base on
held-out caption groups, and keep it only when it helps."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..encoders.base import l2_normalize
from ..encoders.bridge import METHODS, Bridge
from ..errors import ConfigError, TuneDataError
from ..extras import install_hint, require
from ..progress import Progress, stepped
from .data import MIN_PAIRS, MIN_VAL_IMAGES, SELECT_PAIRS, build_pairs, caption_groups, mean_recall, recall, split, subsample
from .train import choose_weight, train_bridge


@dataclass
class TuneReport:
    kept: bool
    method: str
    pairs: int
    train_pairs: int
    val_pairs: int
    val_images: int
    weight: float  # share of the base embedding in the fused vector (1.0: the base alone)
    base: dict  # validation R@1/5/10 both directions, base encoder
    tuned: dict  # the same with the fused bridge at ``weight``
    tuned_alone: dict  # the bridge with no base share
    data_sha256: str
    epochs: int
    best_epoch: int
    temperature: float
    bridge_sha256: str | None
    message: str
    seconds: dict = field(default_factory=dict)
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def check_options(method: str, val_fraction: float, epochs: int | None) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown tuning method {method!r}; choose one of: {', '.join(METHODS)}")
    if not 0.0 < val_fraction <= 0.5:
        raise ConfigError(f"--val-fraction must be above 0 and at most 0.5, got {val_fraction}")
    if epochs is not None and not 1 <= epochs <= 10000:
        raise ConfigError(f"--epochs must be between 1 and 10000, got {epochs}")
    require("ravl tune", ("torch",), install_hint("tune"))  # the extra's library, before any work starts


def conse_start(encoder, stored_features: np.ndarray, stored_embeddings: np.ndarray) -> dict:
    """The ``conse`` method's starting point: the CNN's classifier, the encoder's class matrix and
    recipe, and the feature scale that best reproduces the stored base embeddings."""
    if not hasattr(encoder, "class_matrix") or not hasattr(encoder, "recipe"):
        raise ConfigError(f"--method conse needs the 'default' encoder (ImageNet classes); this collection uses "
                          f"{encoder.spec!r}: use --method linear or mlp")
    import torch

    from ..encoders.effnet import weights_path

    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    init = {"Wc": state["_fc.weight"].numpy().T.astype(np.float32).copy(),
            "bc": state["_fc.bias"].numpy().astype(np.float32).copy(),
            "C": np.asarray(encoder.class_matrix, np.float32), "topk": int(encoder.recipe.topk),
            "temperature": float(encoder.recipe.temperature), "scale": 1.0}
    n = min(512, len(stored_features))
    probe = Bridge("conse", 0.0, False, {}, {})
    best = (-2.0, 1.0)
    for s in np.geomspace(0.5, 200.0, 40):
        probe.tensors = {**{k: init[k] for k in ("Wc", "bc", "C")}, "scale": np.array([s], np.float32),
                         "temperature": np.array([init["temperature"]], np.float32),
                         "topk": np.array([init["topk"]], np.int64)}
        agreement = float((probe.project(stored_features[:n]) * stored_embeddings[:n]).sum(axis=1).mean())
        best = max(best, (agreement, float(s)))
    init["scale"] = best[1]
    return init


def tune_collection(collection, *, method: str = "linear", val_fraction: float = 0.1, epochs: int | None = None,
                    seed: int = 0, progress: Progress | None = None) -> TuneReport:
    """Train, judge and (when it helps) store a bridge for ``collection``. Nothing is written until
    the end, so an interrupted run (Ctrl-C) leaves the collection as it was."""
    check_options(method, val_fraction, epochs)
    t0 = time.perf_counter()
    encoder = collection.base_encoder
    pairs = build_pairs(collection.training_pairs())
    n = len(pairs.image)
    if n < MIN_PAIRS:
        raise TuneDataError(f"collection {collection.path} holds {n} captioned image-caption pairs; tuning needs at "
                            f"least {MIN_PAIRS}: index more captioned images (sidecar .txt, manifest, COCO captions)")
    train, val = split(pairs, val_fraction, seed)
    val_images = len(np.unique(pairs.image[val]))
    if val_images < MIN_VAL_IMAGES or train.sum() < MIN_PAIRS // 2:
        raise TuneDataError(f"the {n} pairs of {collection.path} form too few separate caption groups to validate on "
                            f"({val_images} validation images, need {MIN_VAL_IMAGES}); index more captioned images "
                            "or raise --val-fraction")
    residual = pairs.features.shape[1] == pairs.embeddings.shape[1] and \
        bool(np.allclose(pairs.features[:64], pairs.embeddings[:64], atol=1e-5))
    if method == "conse" and residual:
        raise ConfigError("--method conse needs the 'default' encoder (ImageNet classes); use --method linear or mlp")
    init = conse_start(encoder, pairs.features, pairs.embeddings) if method == "conse" else None
    load_s = time.perf_counter() - t0
    select = subsample(val, caption_groups(pairs), SELECT_PAIRS, seed)
    bridge, run = train_bridge(pairs, train, select, method=method, residual=residual, epochs=epochs, seed=seed,
                               conse_init=init, progress=progress)
    train_s = time.perf_counter() - t0 - load_s
    base = recall(l2_normalize(pairs.embeddings), pairs.text_vecs, pairs.image[val], pairs.text[val])
    alone = recall(bridge.project(pairs.features), pairs.text_vecs, pairs.image[val], pairs.text[val])
    weight, _ = choose_weight(bridge, pairs, select)
    bridge.weight = weight
    fused = recall(bridge.apply(pairs.embeddings, pairs.features), pairs.text_vecs, pairs.image[val], pairs.text[val])
    kept = weight < 1.0 and mean_recall(fused) > mean_recall(base)
    bridge.info.update({"base_fingerprint": collection.fingerprint, "data_sha256": pairs.data_sha256,
                        "pairs": n, "val_fraction": val_fraction, "seed": seed,
                        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "figures": {"base": base, "tuned": fused, "tuned_alone": alone}})
    sha = None
    if kept:
        sha = collection.store_bridge(bridge)
        collection.refresh_indexes(lazy=True, progress=stepped(progress))  # the search calibration follows the new vectors
        message = (f"kept: validation mean recall {mean_recall(base):.1f} -> {mean_recall(fused):.1f}; "
                   "searches, captions, ask and serve now use the tuned bridge ('ravl tune --reset' undoes it)")
    else:
        message = (f"not kept: the tuned bridge did not beat the base encoder on the validation pairs "
                   f"(mean recall {mean_recall(base):.1f} vs {mean_recall(fused):.1f}); the collection is unchanged")
    return TuneReport(kept, method, n, int(train.sum()), int(val.sum()), int(val_images), weight, base, fused, alone,
                      pairs.data_sha256, bridge.info["epochs"], bridge.info["best_epoch"], bridge.info["temperature"],
                      sha, message, {"load": round(load_s, 3), "train": round(train_s, 3),
                                     "total": round(time.perf_counter() - t0, 3)}, run["history"])


def reset_tuning(collection) -> bool:
    """Return ``collection`` to its base encoder; True when a tuned bridge was removed."""
    removed = collection.reset_bridge()
    collection.refresh_indexes(lazy=True)
    return removed
