"""Training data for ``ravl tune``: the collection's image–caption pairs, split by caption group,
and the retrieval figures (R@K both directions) a bridge is judged by."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

#: fewest captioned pairs / validation images that make a tuned bridge worth judging
MIN_PAIRS = 100
MIN_VAL_IMAGES = 10
#: validation pairs used to pick the epoch and the fusion weight (all of them are reported)
SELECT_PAIRS = 3000
KS = (1, 5, 10)
_CHUNK = 1024


@dataclass
class Pairs:
    """Pairs over unique texts: ``image[i]`` (row into features/embeddings) goes with ``text[i]``
    (row into text_vecs). Texts are deduplicated, so two images sharing a caption share its row."""
    image: np.ndarray  # (p,) int
    text: np.ndarray  # (p,) int
    features: np.ndarray  # (n_images, in_dim)
    embeddings: np.ndarray  # (n_images, dim) base shared-space vectors
    text_vecs: np.ndarray  # (n_texts, dim)
    texts: list[str]
    data_sha256: str


def normalise_text(text: str) -> str:
    return " ".join(text.lower().split())


def build_pairs(stored: dict) -> Pairs:
    """Deduplicate texts (case and spacing folded) and index pairs by row."""
    row_of_item = {int(i): n for n, i in enumerate(stored["item_ids"])}
    text_row: dict[str, int] = {}
    texts: list[str] = []
    vec_rows: list[int] = []
    image, text, seen = [], [], set()
    for k, (owner, raw) in enumerate(zip(stored["owners"], stored["texts"])):
        if int(owner) not in row_of_item:
            continue
        key = normalise_text(raw)
        if not key:
            continue
        if key not in text_row:
            text_row[key] = len(texts)
            texts.append(raw)
            vec_rows.append(k)
        pair = (row_of_item[int(owner)], text_row[key])
        if pair not in seen:
            seen.add(pair)
            image.append(pair[0])
            text.append(pair[1])
    h = hashlib.sha256()
    for sha, key in sorted((stored["sha256"][i], normalise_text(texts[t])) for i, t in zip(image, text)):
        h.update(f"{sha}\t{key}\n".encode())
    text_vecs = stored["text_vecs"][vec_rows] if vec_rows else np.zeros((0, stored["embeddings"].shape[1]), np.float32)
    return Pairs(np.asarray(image, np.int64), np.asarray(text, np.int64), stored["features"], stored["embeddings"],
                 text_vecs, texts, h.hexdigest())


def caption_groups(pairs: Pairs) -> np.ndarray:
    """A group id per pair: images joined by a shared caption form one group (union-find), so a
    split by group never puts one caption, or one image, on both sides."""
    n_img = len(pairs.features)
    parent = list(range(n_img + len(pairs.texts)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, t in zip(pairs.image.tolist(), pairs.text.tolist()):
        ra, rb = find(i), find(n_img + t)
        if ra != rb:
            parent[ra] = rb
    return np.array([find(i) for i in pairs.image.tolist()], dtype=np.int64)


def split(pairs: Pairs, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, val) over pairs; groups are shuffled with ``seed`` and whole groups
    go to validation until it holds ``val_fraction`` of the pairs."""
    groups = caption_groups(pairs)
    ids, counts = np.unique(groups, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(ids))
    want = val_fraction * len(groups)
    chosen, total = [], 0
    for j in order:
        if total >= want:
            break
        chosen.append(ids[j])
        total += counts[j]
    val = np.isin(groups, np.asarray(chosen, dtype=np.int64))
    return ~val, val


def subsample(mask: np.ndarray, groups: np.ndarray, most: int, seed: int = 0) -> np.ndarray:
    """At most ``most`` pairs of ``mask``, whole groups at a time (for the per-epoch and weight
    choices; the reported figures use the whole split)."""
    if mask.sum() <= most:
        return mask
    ids = np.unique(groups[mask])
    order = np.random.default_rng(seed + 1).permutation(len(ids))
    keep, total = [], 0
    counts = dict(zip(*np.unique(groups[mask], return_counts=True)))
    for j in order:
        if total >= most:
            break
        keep.append(ids[j])
        total += counts[ids[j]]
    return mask & np.isin(groups, np.asarray(keep, dtype=np.int64))


def recall(image_vecs: np.ndarray, text_vecs: np.ndarray, image: np.ndarray, text: np.ndarray,
           ks=KS) -> dict[str, float]:
    """R@K (percent) text->image and image->text among the images and texts these pairs use.

    A query hits when any of its true partners ranks in the top K (ties counted against it)."""
    imgs, img_col = np.unique(image, return_inverse=True)
    txts, txt_row = np.unique(text, return_inverse=True)
    tv, iv = np.asarray(text_vecs[txts], np.float32), np.asarray(image_vecs[imgs], np.float32)
    partners_of_text: list[list[int]] = [[] for _ in txts]
    partners_of_image: list[list[int]] = [[] for _ in imgs]
    for t, i in zip(txt_row.tolist(), img_col.tolist()):
        partners_of_text[t].append(i)
        partners_of_image[i].append(t)
    out = {}
    for name, queries, cands, partners in (("text_to_image", tv, iv, partners_of_text),
                                           ("image_to_text", iv, tv, partners_of_image)):
        ranks = np.empty(len(queries), np.int64)
        for start in range(0, len(queries), _CHUNK):
            s = queries[start:start + _CHUNK] @ cands.T
            pos = np.zeros(s.shape, dtype=bool)
            for r, ps in enumerate(partners[start:start + _CHUNK]):
                pos[r, ps] = True
            best = np.where(pos, s, -np.inf).max(axis=1, keepdims=True)
            ranks[start:start + len(s)] = (np.where(pos, -np.inf, s) >= best).sum(axis=1)
        for k in ks:
            out[f"{name}_R@{k}"] = round(float((ranks < k).mean() * 100.0), 2)
    return out


def mean_recall(figures: dict[str, float]) -> float:
    return float(np.mean([v for k, v in figures.items() if "_R@" in k]))
