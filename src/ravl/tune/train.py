"""Training a bridge in torch (frozen towers, stored vectors only): symmetric InfoNCE with a learned
temperature, in-batch pairs that share a caption or an image masked out of the negatives, the best
epoch kept by validation recall. The result is plain numpy tensors for :class:`Bridge`."""
from __future__ import annotations

import math

import numpy as np

from ..encoders.base import l2_normalize
from ..encoders.bridge import Bridge
from ..progress import Progress
from .data import Pairs, mean_recall, recall


def _modules(method: str, in_dim: int, out_dim: int, residual: bool, conse_init: dict | None):
    import torch
    from torch import nn

    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.W = nn.Parameter(torch.zeros(in_dim, out_dim) if residual
                                  else torch.randn(in_dim, out_dim) / math.sqrt(in_dim))
            self.b = nn.Parameter(torch.zeros(out_dim))

        def forward(self, x):
            return x @ self.W + self.b

    class MLP(nn.Module):
        def __init__(self, hidden: int):
            super().__init__()
            self.W1 = nn.Parameter(torch.randn(in_dim, hidden) * math.sqrt(2.0 / in_dim))
            self.b1 = nn.Parameter(torch.zeros(hidden))
            self.W2 = nn.Parameter(torch.zeros(hidden, out_dim) if residual
                                   else torch.randn(hidden, out_dim) / math.sqrt(hidden))
            self.b2 = nn.Parameter(torch.zeros(out_dim))

        def forward(self, x):
            return torch.relu(x @ self.W1 + self.b1) @ self.W2 + self.b2

    class Conse(nn.Module):
        def __init__(self, init: dict):
            super().__init__()
            self.register_buffer("Wc", torch.from_numpy(init["Wc"]))
            self.register_buffer("bc", torch.from_numpy(init["bc"]))
            self.register_buffer("temperature", torch.tensor([init["temperature"]], dtype=torch.float32))
            self.register_buffer("topk", torch.tensor([init["topk"]], dtype=torch.int64))
            self.log_scale = nn.Parameter(torch.tensor(math.log(init["scale"]), dtype=torch.float32))
            self.C = nn.Parameter(torch.from_numpy(init["C"]).clone())

        def forward(self, x):
            logits = (x @ self.Wc * self.log_scale.exp() + self.bc) / self.temperature
            p = torch.softmax(logits, dim=1)
            k = int(self.topk[0])
            cut = torch.topk(p, k, dim=1).values[:, -1:]
            return torch.where(p >= cut, p, torch.zeros_like(p)) @ self.C

    if method == "linear":
        return Linear()
    if method == "mlp":
        return MLP(hidden=min(1024, 2 * max(in_dim, out_dim)))
    assert conse_init is not None, "the conse method needs its starting point"
    return Conse(conse_init)


def _tensors(method: str, model) -> dict[str, np.ndarray]:
    if method == "conse":
        return {"Wc": model.Wc.numpy(), "bc": model.bc.numpy(), "C": model.C.detach().numpy().copy(),
                "scale": np.array([float(model.log_scale.detach().exp())], np.float32),
                "temperature": model.temperature.numpy().copy(), "topk": model.topk.numpy().copy()}
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def auto_epochs(n_train: int, batch: int) -> int:
    steps = max(1, math.ceil(n_train / batch))
    return int(min(200, max(10, math.ceil(1500 / steps))))


def batch_size_for(n_train: int) -> int:
    return int(min(256, max(16, n_train // 8)))


def train_bridge(pairs: Pairs, train: np.ndarray, val: np.ndarray, *, method: str, residual: bool,
                 epochs: int | None = None, seed: int = 0, conse_init: dict | None = None,
                 progress: Progress | None = None) -> tuple[Bridge, dict]:
    """Fit a bridge on the ``train`` pairs; returns the best epoch's bridge (weight 0: the bridge
    alone) and a history with the validation figures per epoch."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    feats = torch.from_numpy(np.array(pairs.features, np.float32))
    texts = torch.from_numpy(np.array(pairs.text_vecs, np.float32))
    tr_img, tr_txt = pairs.image[train], pairs.text[train]
    in_dim, out_dim = feats.shape[1], texts.shape[1]
    model = _modules(method, in_dim, out_dim, residual, conse_init)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    opt = torch.optim.AdamW([*model.parameters(), logit_scale], lr=1e-3 if method != "conse" else 3e-3,
                            weight_decay=1e-4)
    batch = batch_size_for(len(tr_img))
    epochs = epochs or auto_epochs(len(tr_img), batch)
    steps_per_epoch = max(1, math.ceil(len(tr_img) / batch))
    total, done = epochs * steps_per_epoch, 0
    info = {"method": method, "in_dim": in_dim, "out_dim": out_dim, "residual": residual}

    def bridge_now() -> Bridge:
        return Bridge(method, 0.0, residual, _tensors(method, model), dict(info))

    best, best_score, history = bridge_now(), -1.0, []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(tr_img))
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            if len(idx) < 2:
                continue
            img_b, txt_b = torch.from_numpy(tr_img[idx]), torch.from_numpy(tr_txt[idx])
            x = feats[img_b]
            y = model(x)
            if residual:
                y = y + x
            y = F.normalize(y, dim=1)
            logits = logit_scale.exp().clamp(max=100.0) * (y @ texts[txt_b].T)
            same = (img_b[:, None] == img_b[None, :]) | (txt_b[:, None] == txt_b[None, :])
            same.fill_diagonal_(False)
            logits = logits.masked_fill(same, float("-inf"))
            target = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if progress:
                progress(done, total)
        model.eval()
        with torch.no_grad():
            candidate = bridge_now()
            vecs = candidate.project(pairs.features)
        figures = recall(vecs, pairs.text_vecs, pairs.image[val], pairs.text[val])
        score = mean_recall(figures)
        history.append({"epoch": epoch + 1, "loss": round(float(loss.detach()), 4), "val_mean_recall": round(score, 2)})
        if score > best_score:
            best, best_score = candidate, score
    if progress:
        progress(total, total)
    best.info["epochs"] = epochs
    best.info["best_epoch"] = max(history, key=lambda h: h["val_mean_recall"])["epoch"] if history else 0
    best.info["temperature"] = round(float(1.0 / logit_scale.detach().exp().clamp(max=100.0)), 5)
    return best, {"history": history, "batch_size": batch, "steps": total}


def choose_weight(bridge: Bridge, pairs: Pairs, val: np.ndarray, grid: int = 20) -> tuple[float, dict | None]:
    """The fusion weight w in [0, 1] (share of the base embedding) with the best validation recall."""
    tuned = bridge.project(pairs.features)
    base = l2_normalize(pairs.embeddings)
    best_w, best_fig, best_score = 1.0, None, -1.0
    for w in np.linspace(1.0, 0.0, grid + 1):  # from the base down: ties keep more of the base
        fused = l2_normalize(w * base + (1 - w) * tuned)
        fig = recall(fused, pairs.text_vecs, pairs.image[val], pairs.text[val])
        score = mean_recall(fig)
        if score > best_score + 1e-9:
            best_w, best_fig, best_score = float(round(w, 4)), fig, score
    return best_w, best_fig
