"""``sdcpp:MODEL``: stable-diffusion.cpp through ``stable-diffusion-cpp-python`` (GGUF or
safetensors checkpoints, CPU or GPU builds), for machines without torch-sized memory.

Optional extra ``ravl[sdcpp]``: the package compiles stable-diffusion.cpp from source (like
llama-cpp-python), so it is not part of ``all`` and is not installed or tested in CI. Modes
``text`` and ``init`` (``init_image`` + ``strength``); options ``threads`` (default: half the
CPUs), ``sampler`` (e.g. ``euler_a``), ``vae`` (a separate VAE file).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ...errors import ConfigError, GenerationError, MissingDependencyError, ModelNotAvailableError
from ...specs import Spec
from ..http import number_option
from .base import GeneratedImage, ImageGenerator, ImageParams, fit

OPTIONS = ("threads", "sampler", "vae")
DEFAULT_STEPS = 20
DEFAULT_CFG = 7.0


class SdcppImageGenerator(ImageGenerator):
    modes = ("text", "init")
    mode_notes = {"reference": "stable-diffusion.cpp has no IP-Adapter; use --mode init, or a diffusers: pipeline "
                               "with ?ip_adapter="}
    seeded = True
    default_size = (512, 512)

    def __init__(self, spec: Spec, model: Any, sampler: str | None) -> None:
        self.spec = str(spec)
        self.model = model
        self.sampler = sampler
        self._lock = threading.Lock()

    def generate(self, prompt: str, *, mode: str = "text", params: ImageParams = ImageParams(),
                 init_image: Image.Image | None = None,
                 references: Sequence[Image.Image] = ()) -> GeneratedImage:
        self.check_mode(mode)
        params = params.check().with_seed()
        width, height = params.size_or(self.default_size)
        steps = params.steps or DEFAULT_STEPS
        cfg = DEFAULT_CFG if params.guidance is None else float(params.guidance)
        kwargs: dict[str, Any] = {"prompt": prompt, "negative_prompt": params.negative_prompt, "width": width,
                                  "height": height, "cfg_scale": cfg, "sample_steps": steps, "seed": params.seed}
        if self.sampler:
            kwargs["sample_method"] = self.sampler
        if mode == "init":
            if init_image is None:
                raise ConfigError("mode 'init' needs an init image (the best reference)")
            kwargs.update(init_image=fit(init_image, width, height), strength=float(params.strength))
        with self._lock:
            try:
                images = self.model.generate_image(**kwargs)
            except (ValueError, RuntimeError, TypeError) as exc:
                raise GenerationError(f"{self.spec!r}: stable-diffusion.cpp failed ({' '.join(str(exc).split())[:300]})") from exc
        if not images:
            raise GenerationError(f"{self.spec!r}: stable-diffusion.cpp returned no image")
        return GeneratedImage(image=images[0].convert("RGB"), seed=params.seed, steps=steps, guidance=cfg,
                              extra={"engine": "stable-diffusion.cpp"})


def create(spec: Spec) -> SdcppImageGenerator:
    if not spec.name:
        raise ConfigError("the sdcpp image generator needs a model file: 'sdcpp:/models/sd-v1-5.q8_0.gguf'")
    unknown = sorted(set(spec.opts) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} in {str(spec)!r}; known: {', '.join(OPTIONS)}")
    path = Path(spec.name).expanduser()
    if not path.is_file():
        raise ModelNotAvailableError(f"{str(spec)!r}: no model file at {path}; give a local .gguf/.safetensors/.ckpt "
                                     "checkpoint (stable-diffusion.cpp does not download)")
    try:
        from stable_diffusion_cpp import StableDiffusion
    except ImportError:
        raise MissingDependencyError(f"{str(spec)!r} needs stable-diffusion-cpp-python: pip install 'ravl[sdcpp]' "
                                     "(it compiles stable-diffusion.cpp from source)") from None
    kwargs: dict[str, Any] = {"model_path": str(path), "verbose": False}
    if spec.opts.get("threads"):
        kwargs["n_threads"] = number_option(spec, "threads", int, 1, 1)
    if spec.opts.get("vae"):
        kwargs["vae_path"] = str(Path(spec.opts["vae"]).expanduser())
    try:
        model = StableDiffusion(**kwargs)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelNotAvailableError(f"{str(spec)!r}: stable-diffusion.cpp could not load {path} "
                                     f"({' '.join(str(exc).split())[:300]})") from exc
    return SdcppImageGenerator(spec, model, spec.opts.get("sampler") or None)
