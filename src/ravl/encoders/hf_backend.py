"""``hf:`` encoders: transformers CLIP and SigLIP models from a local folder or a Hub repo id.

Spec forms::

    hf:/models/clip-vit-base-patch32            a folder written by save_pretrained (absolute or relative)
    hf:openai/clip-vit-base-patch32             a Hub repo id, loaded from the local cache when offline
    hf:google/siglip-base-patch16-224?revision=main

Runtime options that do not change the vectors: ``?device=cuda`` and ``?batch_size=64``.
The folder needs ``config.json`` and the weights, tokenizer files and ``preprocessor_config.json``.
With ``HF_HUB_OFFLINE=1`` nothing is downloaded; a repo that is not cached raises
:class:`~ravl.errors.ModelNotAvailableError` saying how to fetch a local copy.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError, MissingDependencyError, ModelNotAvailableError, RavlError
from ..specs import Option, Spec, declare
from .base import ImageVectors, l2_normalize
from .clip_common import RUNTIME, TowerEncoder, fingerprint_of, offline, offline_reason, runtime_options, short_message

SUPPORTED = ("clip", "siglip")
# weights whose absence would silently leave a tower randomly initialised
_TOWER_PREFIXES = ("text_model.", "vision_model.", "text_projection", "visual_projection")


def _features(out) -> Any:
    """transformers 4.x returns a tensor from get_*_features; 5.x a ModelOutput whose
    ``pooler_output`` holds the projected vectors."""
    return out if hasattr(out, "ndim") else out.pooler_output


class HFClipEncoder(TowerEncoder):
    """A transformers CLIPModel or SiglipModel; features == embeddings."""

    def __init__(self, spec: str, model, tokenizer, image_processor, *, device: str = "cpu",
                 batch_size: int = 32, fingerprint: str | None = None):
        super().__init__(spec, model, tokenizer, device=device, batch_size=batch_size, fingerprint=fingerprint)
        self.image_processor = image_processor
        self.model_type = model.config.model_type
        text_cfg = model.config.text_config
        self.max_length = int(getattr(text_cfg, "max_position_embeddings", 0) or 64)
        tok_max = getattr(tokenizer, "model_max_length", None)
        if self.model_type == "clip" and isinstance(tok_max, int) and 0 < tok_max < self.max_length:
            self.max_length = tok_max
        self.image_size_hint = self._image_size(image_processor, model.config.vision_config)
        self._measure_dim()

    @staticmethod
    def _image_size(processor, vision_cfg) -> int:
        size = getattr(processor, "size", None) or {}
        if isinstance(size, dict) and size.get("shortest_edge"):
            return int(size["shortest_edge"])
        if isinstance(size, dict) and size.get("height"):
            return int(max(size["height"], size.get("width", 0)))
        return int(getattr(vision_cfg, "image_size", 224))

    def preprocess(self, image: Image.Image) -> np.ndarray:
        out = self.image_processor(images=image if image.mode == "RGB" else image.convert("RGB"),
                                   return_tensors="np")
        return np.ascontiguousarray(out["pixel_values"][0], dtype=np.float32)

    def embed_pixels(self, pixels: np.ndarray) -> ImageVectors:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).to(self.device)
            emb = l2_normalize(_features(self.model.get_image_features(pixel_values=x)).float().cpu().numpy())
        return ImageVectors(emb, emb)

    def _encode_text_batch(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        # SigLIP was trained on text padded to the full length, pooling the last position, with
        # no attention mask; CLIP pools the EOS token, so padding to the longest text is enough.
        siglip = self.model_type == "siglip"
        enc = self.tokenizer(list(texts), padding="max_length" if siglip else True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        inputs = {"input_ids": enc["input_ids"].to(self.device)}
        if not siglip and "attention_mask" in enc:
            inputs["attention_mask"] = enc["attention_mask"].to(self.device)
        with torch.inference_mode():
            return l2_normalize(_features(self.model.get_text_features(**inputs)).float().cpu().numpy())

    def describe(self) -> dict:
        return {**super().describe(), "model_type": self.model_type}


def _source(spec: Spec) -> tuple[str, bool]:
    """(folder or repo id, is_local). A name is a local path when it exists or looks like one."""
    name = spec.name
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{spec} names a file; hf: needs the folder save_pretrained wrote "
                              "(config.json, weights, tokenizer and preprocessor files)")
        return str(path.resolve()), True
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        raise ModelNotAvailableError(f"model folder {path.resolve()} named by {spec} does not exist")
    return name, False


def _not_cached(spec: Spec, repo: str) -> ModelNotAvailableError:
    why = f"downloads are off ({offline_reason()})" if offline() else "the download failed"
    return ModelNotAvailableError(
        f"{spec} is not in the local Hugging Face cache and {why}; on a "
        f"connected machine run `hf download {repo} --local-dir DIR` (older: huggingface-cli download), "
        f"copy DIR here and use hf:/path/to/DIR"
    )


@contextmanager
def _no_progress_bars():
    """Hide transformers' "Loading weights" bar (library code stays quiet); restores both the
    transformers and huggingface_hub settings afterwards."""
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as tf_logging

    tf_on, hub_off = tf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if tf_on:
            tf_logging.enable_progress_bar()
        if not hub_off:
            hub_utils.enable_progress_bars()


def _load(source: str, local: bool, spec: Spec, revision: str | None):
    try:
        import torch
        import transformers
        from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError(f"hf: encoders need torch and transformers ({exc}); "
                                     "install them with pip install 'ravl[hf]'") from exc
    common: dict[str, Any] = {"local_files_only": local or offline()}
    if revision and not local:
        common["revision"] = revision
    if local and not (Path(source) / "config.json").is_file():
        raise ModelNotAvailableError(f"{source} (from {spec}) holds no config.json; "
                                     "point hf: at a folder written by save_pretrained")
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except OSError as exc:
        if local:
            raise ConfigError(f"cannot read the model config in {source}: {short_message(exc)}") from exc
        raise _not_cached(spec, source) from exc
    if config.model_type not in SUPPORTED:
        raise ConfigError(f"{spec} is a {config.model_type!r} model; hf: encoders support "
                          f"model types {', '.join(SUPPORTED)}")
    cls = transformers.CLIPModel if config.model_type == "clip" else transformers.SiglipModel
    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    # keep download progress visible when fetching from the Hub; hide the local loading bar
    quiet = _no_progress_bars() if common["local_files_only"] else nullcontext()
    try:
        with quiet:
            model, info = cls.from_pretrained(source, config=config, output_loading_info=True,
                                              **{dtype_kw: torch.float32}, **common)
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        processor = AutoImageProcessor.from_pretrained(source, **common)
    except OSError as exc:
        if local:
            raise ModelNotAvailableError(f"{source} (from {spec}) is incomplete: {short_message(exc)}") from exc
        raise _not_cached(spec, source) from exc
    missing = [k for k in info.get("missing_keys", []) if k.startswith(_TOWER_PREFIXES)]
    if missing:
        raise ConfigError(f"weights in {source} do not fit a {config.model_type} model: "
                          f"{len(missing)} tensors missing (e.g. {missing[0]})")
    return model, tokenizer, processor


OPTIONS = (*RUNTIME, Option("revision", str, None, "Hub revision (branch, tag or commit) of a repo id"))


@declare(*OPTIONS, requires=("transformers", "torch"), install="pip install 'ravl[hf]'")
def create(spec: Spec) -> HFClipEncoder:
    """Hugging Face CLIP / SigLIP models: a local folder or a cached Hub repo id."""
    opts = runtime_options(spec, OPTIONS)
    source, local = _source(spec)
    revision = spec.opts.get("revision")
    if local and revision:
        raise ConfigError(f"revision= applies to Hub repo ids, not to the local folder in {spec}")
    full = Spec(spec.family, source, spec.options)
    try:
        model, tokenizer, processor = _load(source, local, full, revision)
        model = model.to(opts["device"])
    except RavlError:
        raise
    except Exception as exc:  # anything else transformers raises while building the model
        raise ConfigError(f"cannot load {full}: {short_message(exc)}") from exc
    return HFClipEncoder(str(full), model, tokenizer, processor, device=opts["device"],
                         batch_size=opts["batch_size"], fingerprint=fingerprint_of(full))
