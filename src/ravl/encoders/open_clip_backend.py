"""``open_clip:`` encoders: any open_clip model, from a pretrained tag, a weights file or a folder.

Spec forms::

    open_clip:ViT-B-32/laion2b_s34b_b79k        architecture + pretrained tag (open_clip's table)
    open_clip:ViT-B-32//models/vit-b-32.pt       architecture + weights file (.pt/.pth/.bin/.safetensors)
    open_clip:local-dir:/models/my-clip          folder with open_clip_config.json + weights
    open_clip:hf-hub:timm/ViT-B-16-SigLIP        Hugging Face Hub repo in open_clip's format

Runtime options that do not change the vectors: ``?device=cuda`` and ``?batch_size=64``.

Tags are resolved from the local cache first, so a cached model loads without any network
access. When weights are missing and downloads are off (``HF_HUB_OFFLINE=1``) or fail, a
:class:`~ravl.errors.ModelNotAvailableError` says how to point at a local copy instead.
"""
from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError, MissingDependencyError, ModelNotAvailableError, RavlError
from ..specs import Spec, declare
from .base import ImageVectors, l2_normalize
from .clip_common import RUNTIME, TowerEncoder, fingerprint_of, offline, offline_reason, runtime_options, short_message

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".npz")
LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"


def _import_open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise MissingDependencyError(
            f"open_clip encoders need open_clip_torch and torchvision ({exc}); install them with "
            "pip install 'ravl[clip]'"
        ) from exc
    return open_clip


@contextmanager
def quiet_root_logging():
    """open_clip logs through the root logger, whose module-level calls install a stderr handler
    (``logging.basicConfig``) when none exists. A temporary NullHandler stops that side effect."""
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    if guard:
        root.addHandler(guard)
    try:
        yield
    finally:
        if guard:
            root.removeHandler(guard)




class OpenClipEncoder(TowerEncoder):
    """An open_clip model with its own preprocessing and tokenizer; features == embeddings."""

    def __init__(self, spec: str, model, transform, tokenizer, *, device: str = "cpu",
                 batch_size: int = 32, fingerprint: str | None = None):
        super().__init__(spec, model, tokenizer, device=device, batch_size=batch_size, fingerprint=fingerprint)
        self.transform = transform
        size = (getattr(model.visual, "preprocess_cfg", None) or {}).get("size", 224)
        self.image_size_hint = int(max(size) if isinstance(size, (tuple, list)) else size)
        self._measure_dim()

    def preprocess(self, image: Image.Image) -> np.ndarray:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return np.ascontiguousarray(self.transform(rgb).numpy(), dtype=np.float32)

    def embed_pixels(self, pixels: np.ndarray) -> ImageVectors:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).to(self.device)
            emb = l2_normalize(self.model.encode_image(x).float().cpu().numpy())
        return ImageVectors(emb, emb)

    def _encode_text_batch(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            return l2_normalize(self.model.encode_text(tokens).float().cpu().numpy())


# --- resolving the spec ---------------------------------------------------------------------------
def _unknown_arch(open_clip, arch: str, spec: Spec) -> ConfigError:
    names = open_clip.list_models()
    close = difflib.get_close_matches(arch, names, n=5, cutoff=0.5)
    shown = close or [n for n in ("ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50", "ViT-B-16-SigLIP") if n in names]
    return ConfigError(
        f"unknown open_clip architecture {arch!r} in spec {spec}; valid names include {', '.join(shown)} "
        f"({len(names)} in all, see open_clip.list_models()); a custom architecture loads from "
        "open_clip:local-dir:<folder with open_clip_config.json>"
    )


def _hub_filenames(filename: str) -> list[str]:
    """The files open_clip would fetch for a hub weights name, safetensors first (as open_clip does)."""
    filename = filename or "open_clip_pytorch_model.bin"
    if filename == "open_clip_pytorch_model.bin":
        return ["open_clip_model.safetensors", filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def _cached_tag_weights(pcfg: dict) -> str | None:
    """The local file for a pretrained tag if it is already cached, else None (no network)."""
    if pcfg.get("file"):
        return pcfg["file"] if os.path.isfile(pcfg["file"]) else None
    hub = pcfg.get("hf_hub", "")
    if hub:  # open_clip prefers the hub over the URL whenever a tag has both
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        repo, filename = os.path.split(hub)
        for name in _hub_filenames(filename):
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return found
        return None
    url = pcfg.get("url", "")
    if url:
        path = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        return str(path) if path.is_file() else None
    return None


def _not_available(spec: Spec, what: str, arch: str | None = None) -> ModelNotAvailableError:
    example = f"open_clip:{arch}//path/to/weights.safetensors" if arch else "open_clip:<arch>//path/to/weights.pt"
    return ModelNotAvailableError(
        f"weights for {spec} are not available offline ({what}); download them on a connected "
        f"machine and point at the local copy: {example} or open_clip:local-dir:/path/to/folder"
    )


def _plan(open_clip, spec: Spec) -> tuple[str, dict[str, Any], str]:
    """Turn the spec into (canonical name, create_model_and_transforms kwargs, kind)."""
    name = spec.name
    if name.startswith(LOCAL_DIR):
        folder = Path(name[len(LOCAL_DIR):]).expanduser().resolve()
        if not folder.is_dir():
            raise ModelNotAvailableError(f"folder {folder} named by {spec} does not exist; "
                                         "give the folder that holds open_clip_config.json and the weights")
        has_weights = any(p.suffix in (".safetensors", ".bin", ".pth") for p in folder.iterdir())
        if not (folder / "open_clip_config.json").is_file() or not has_weights:
            raise ModelNotAvailableError(
                f"{folder} (from {spec}) is not an open_clip model folder: it needs open_clip_config.json "
                "and a weights file (e.g. open_clip_model.safetensors)")
        return f"{LOCAL_DIR}{folder}", {"model_name": f"{LOCAL_DIR}{folder}"}, "local"
    if name.startswith(HF_HUB):
        repo = name[len(HF_HUB):].strip("/")
        if offline():
            from huggingface_hub import try_to_load_from_cache

            if not isinstance(try_to_load_from_cache(repo, "open_clip_config.json"), str):
                raise _not_available(spec, f"Hugging Face repo {repo} is not cached and {offline_reason()}")
        return f"{HF_HUB}{repo}", {"model_name": f"{HF_HUB}{repo}"}, "remote"

    arch, _, weights = name.partition("/")
    arch = arch.strip()
    if arch not in open_clip.list_models():
        raise _unknown_arch(open_clip, arch, spec)
    tags = open_clip.list_pretrained_tags_by_model(arch)
    tag_hint = f"known tags for {arch}: {', '.join(tags[:8]) or 'none'}"
    if not weights.strip():
        raise ConfigError(f"spec {spec} names no weights: write open_clip:{arch}/<tag> or "
                          f"open_clip:{arch}/<path to weights file>; {tag_hint}")
    pcfg = open_clip.get_pretrained_cfg(arch, weights) if not os.path.isfile(weights) else {}
    if pcfg:
        tag = weights.lower().replace("-", "_")  # open_clip's own tag normalisation
        kwargs: dict[str, Any] = {"model_name": arch, "force_quick_gelu": bool(pcfg.get("quick_gelu"))}
        cached = _cached_tag_weights(pcfg)
        if cached:  # load the cached file directly, with the tag's preprocessing: no network at all
            kwargs.update(pretrained=cached, image_mean=pcfg.get("mean"), image_std=pcfg.get("std"),
                          image_interpolation=pcfg.get("interpolation"),
                          image_resize_mode=pcfg.get("resize_mode"))
            return f"{arch}/{tag}", kwargs, "local"
        if offline():
            raise _not_available(spec, f"not in the local cache and {offline_reason()}", arch)
        kwargs["pretrained"] = tag
        return f"{arch}/{tag}", kwargs, "remote"
    path = Path(weights).expanduser()
    if path.is_file():
        path = path.resolve()
        return f"{arch}/{path}", {"model_name": arch, "pretrained": str(path)}, "file"
    if "/" in weights or os.sep in weights or weights.startswith(("~", ".")) or weights.endswith(WEIGHT_SUFFIXES):
        raise ModelNotAvailableError(f"weights file {path.resolve()} named by {spec} does not exist")
    raise ConfigError(f"unknown pretrained tag {weights!r} in spec {spec}; {tag_hint} "
                      f"(or give a path to a weights file)")


@declare(*RUNTIME, requires=("open_clip", "torch", "torchvision"), install="pip install 'ravl[clip]'")
def create(spec: Spec) -> OpenClipEncoder:
    """OpenCLIP models: 'open_clip:ARCH/TAG', a weights file or a local-dir: folder."""
    opts = runtime_options(spec)
    open_clip = _import_open_clip()
    canonical, kwargs, kind = _plan(open_clip, spec)
    full = Spec(spec.family, canonical, spec.options)
    model_name = kwargs.pop("model_name")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        with quiet_root_logging():
            model, _, transform = open_clip.create_model_and_transforms(
                model_name, device=opts["device"], **kwargs)
            tokenizer = open_clip.get_tokenizer(model_name)
    except RavlError:
        raise
    except Exception as exc:  # open_clip raises bare RuntimeError/FileNotFoundError/ValueError
        if kind == "remote" or isinstance(exc, OSError):  # hub/cache misses are OSErrors
            raise _not_available(full, f"loading failed: {short_message(exc)}", model_name) from exc
        if kind == "file":
            raise ConfigError(f"the weights in {full} do not fit architecture {model_name}: "
                              f"{short_message(exc)}") from exc
        raise ConfigError(f"cannot load {full}: {short_message(exc)}") from exc
    return OpenClipEncoder(str(full), model, transform, tokenizer, device=opts["device"],
                           batch_size=opts["batch_size"], fingerprint=fingerprint_of(full))
