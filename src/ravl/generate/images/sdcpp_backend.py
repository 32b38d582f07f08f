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
from ...specs import Option, Spec, declare, parse_options
from .base import GeneratedImage, ImageGenerator, ImageParams, Progress, fit

OPTIONS = (
    Option("threads", int, None, "CPU threads (default: stable-diffusion.cpp's)", minimum=1),
    Option("sampler", str, None, "sampling method name (default: stable-diffusion.cpp's)"),
    Option("vae", str, None, "path to a separate VAE file"),
)
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

    def execute(self, prompt: str, *, mode: str = "text", params: ImageParams = ImageParams(),
                init_image: Image.Image | None = None, references: Sequence[Image.Image] = (),
                progress: Progress | None = None) -> GeneratedImage:
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


@declare(*OPTIONS, requires=("stable_diffusion_cpp",), install="pip install 'ravl[sdcpp]'")
def create(spec: Spec) -> SdcppImageGenerator:
    """A Stable Diffusion checkpoint run in-process by stable-diffusion.cpp."""
    if not spec.name:
        raise ConfigError("the sdcpp image generator needs a model file: 'sdcpp:/models/sd-v1-5.q8_0.gguf'")
    opts = parse_options(spec, OPTIONS)
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
    if opts["threads"]:
        kwargs["n_threads"] = opts["threads"]
    if opts["vae"]:
        kwargs["vae_path"] = str(Path(opts["vae"]).expanduser())
    try:
        model = StableDiffusion(**kwargs)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelNotAvailableError(f"{str(spec)!r}: stable-diffusion.cpp could not load {path} "
                                     f"({' '.join(str(exc).split())[:300]})") from exc
    return SdcppImageGenerator(spec, model, opts["sampler"])
