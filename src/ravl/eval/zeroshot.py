"""Zero-shot image classification from class-name prompts, the standard sanity benchmark for an
image-text encoder.

The data is a folder per class (``root/tabby_cat/*.jpg``; the class name is the folder name with
``_`` and ``-`` read as spaces). Each class becomes one text prompt, ``"a photo of a {}."`` by
default (CLIP's basic template); an image is classified by cosine similarity between its
shared-space embedding and the prompt embeddings. Reported: top-1 and top-5 accuracy over all
images, mean per-class top-1, and per-class figures.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError
from ..progress import Progress
from .runner import dataset_hash, ravl_version

DEFAULT_TEMPLATE = "a photo of a {}."


def class_name(folder: str) -> str:
    return " ".join(folder.replace("_", " ").replace("-", " ").split())


def read_class_folders(root: Path | str) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image path, class index)]) from a folder-per-class tree; errors name the fix."""
    from ..ingest.sources import IMAGE_EXTENSIONS

    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; zero-shot needs a folder holding one sub-folder of images per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes, items, empty = [], [], []
    for folder in folders:
        images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            empty.append(folder.name)
            continue
        classes.append(class_name(folder.name))
        items += [(p, len(classes) - 1) for p in images]
    if len(classes) < 2:
        raise InputError(f"{root} has {len(classes)} class folder(s) with images; zero-shot needs at least two "
                         "sub-folders of images, one per class (e.g. cat/, dog/)")
    if len(set(classes)) != len(classes):
        raise InputError(f"{root}: two folders map to the same class name; rename one of them")
    if empty:
        raise InputError(f"{root}: class folder(s) {', '.join(empty[:5])} hold no images; add images or remove them")
    return classes, items


@dataclass
class ZeroShotRun:
    classes: list[str]
    top1: float
    top5: float
    mean_per_class_top1: float
    per_class: dict[str, dict]
    n_images: int
    dataset_hash: str
    predictions: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "mean_per_class_top1": self.mean_per_class_top1,
                "n_images": self.n_images, "n_classes": len(self.classes),
                "chance_top1": 1.0 / len(self.classes), "chance_top5": min(5, len(self.classes)) / len(self.classes),
                "per_class": self.per_class, "predictions": self.predictions, "seconds": self.seconds}


def evaluate_zeroshot(encoder, root: Path | str, *, template: str = DEFAULT_TEMPLATE, batch_size: int = 16,
                      progress: Progress | None = None) -> ZeroShotRun:
    """Classify every image under ``root`` (folder per class) with ``encoder``'s class prompts."""
    from ..images import load_image

    if "{}" not in template and "{class}" not in template:
        raise ConfigError(f"--template must contain {{}} (or {{class}}) for the class name, got {template!r}")
    t0 = time.perf_counter()
    classes, items = read_class_folders(root)
    prompts = [template.replace("{class}", "{}").format(c) for c in classes]
    text = np.asarray(encoder.encode_texts(prompts), dtype=np.float32)
    t_text = time.perf_counter() - t0
    image_vecs, shas = [], []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        loaded = [load_image(path, min_side=encoder.image_size_hint) for path, _ in chunk]
        shas += [im.sha256 for im in loaded]
        image_vecs.append(np.asarray(encoder.encode_images([im.image for im in loaded]), dtype=np.float32))
        if progress:
            progress(start + len(chunk), len(items))
    sims = np.concatenate(image_vecs) @ text.T
    labels = np.array([c for _, c in items])
    order = np.argsort(-sims, axis=1, kind="stable")
    rank = np.argmax(order == labels[:, None], axis=1) + 1  # 1-based rank of the true class
    per_class = {}
    for idx, name in enumerate(classes):
        mask = labels == idx
        per_class[name] = {"n": int(mask.sum()), "top1": float(np.mean(rank[mask] <= 1)),
                           "top5": float(np.mean(rank[mask] <= 5))}
    predictions = [{"image": str(path), "label": classes[c], "predicted": classes[int(order[i, 0])],
                    "rank": int(rank[i])} for i, (path, c) in enumerate(items)]
    ds = dataset_hash((sha, (classes[c],)) for sha, (_, c) in zip(shas, items))
    return ZeroShotRun(classes=classes, top1=float(np.mean(rank <= 1)), top5=float(np.mean(rank <= 5)),
                       mean_per_class_top1=float(np.mean([v["top1"] for v in per_class.values()])),
                       per_class=per_class, n_images=len(items), dataset_hash=ds, predictions=predictions,
                       seconds={"text": round(t_text, 3), "total": round(time.perf_counter() - t0, 3)})


def zeroshot_config(encoder, run: ZeroShotRun, root, template: str) -> dict:
    return {"task": "zeroshot", "encoder": encoder.spec, "encoder_fingerprint": encoder.fingerprint,
            "template": template, "data": str(Path(root).expanduser().resolve()), "classes": run.classes,
            "k": [1, 5], "dataset_hash": run.dataset_hash, "n_images": run.n_images, "ravl_version": ravl_version()}


def render_zeroshot_markdown(report: Mapping) -> str:
    """A Markdown section for the zero-shot figures kept in ``report['extra']['zeroshot']``."""
    z = (report.get("extra") or {}).get("zeroshot")
    if not z:
        return ""
    lines = ["## Zero-shot classification (accuracy, %)", "",
             f"{z['n_images']} images, {z['n_classes']} classes; chance top-1 {100 * z['chance_top1']:.1f}, "
             f"top-5 {100 * z['chance_top5']:.1f}.", "",
             "| top-1 | top-5 | mean per-class top-1 |", "|---:|---:|---:|",
             f"| {100 * z['top1']:.1f} | {100 * z['top5']:.1f} | {100 * z['mean_per_class_top1']:.1f} |", "",
             "| class | images | top-1 | top-5 |", "|---|---:|---:|---:|"]
    for name, row in z["per_class"].items():
        lines.append(f"| {name} | {row['n']} | {100 * row['top1']:.1f} | {100 * row['top5']:.1f} |")
    return "\n".join(lines) + "\n"


def zeroshot_rows(a: Mapping, b: Mapping) -> list:
    """Comparison rows (in %) for zero-shot figures, which :func:`compare_reports` does not know."""
    from .report import ComparisonRow

    za, zb = (a.get("extra") or {}).get("zeroshot") or {}, (b.get("extra") or {}).get("zeroshot") or {}
    rows = []
    for key in ("top1", "top5", "mean_per_class_top1"):
        va, vb = za.get(key), zb.get(key)
        if va is None and vb is None:
            continue
        va = None if va is None else round(100.0 * va, 6)
        vb = None if vb is None else round(100.0 * vb, 6)
        delta = vb - va if va is not None and vb is not None else None
        rows.append(ComparisonRow(name=f"zeroshot.{key} (%)", a=va, b=vb, delta=delta, changed=va != vb))
    return rows

