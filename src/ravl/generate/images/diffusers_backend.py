"""``diffusers:PATH_OR_REPO``: Stable Diffusion 1.x/2.x/XL, SD-Turbo and friends through
diffusers' AutoPipelineForText2Image (``text``), AutoPipelineForImage2Image built with
``from_pipe`` on the same weights (``init``), and an IP-Adapter (``reference``).

Options (``diffusers:/models/sd-turbo?device=cuda&dtype=float16``):

* ``device`` — ``cpu`` (default), ``cuda``, ``cuda:N``, ``mps`` or ``auto``;
* ``dtype`` — ``float32`` (default on cpu), ``float16`` (default elsewhere) or ``bfloat16``;
* ``ip_adapter`` — an IP-Adapter weights file (``.safetensors``/``.bin``) with its CLIP vision
  tower in an ``image_encoder/`` folder beside it (the layout of h94/IP-Adapter's ``models/``);
* ``ip_adapter_scale`` — how strongly the reference images steer the result (default 0.6);
* ``download=1`` — allow fetching a Hub repo id (off by default: ravl never downloads unasked);
* ``threads`` — torch CPU threads (default ``$RAVL_THREADS``, else torch's own choice).

Seeds go through a CPU ``torch.Generator``, so a seed gives the same image on every run and
device (diffusers' advice for reproducibility).
"""
from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ...config import env_int
from ...errors import ConfigError, GenerationError, MissingDependencyError, ModelNotAvailableError
from ...progress import Progress
from ...specs import Option, Spec, declare, parse_options
from ..hf_backend import torch_device
from .base import GeneratedImage, ImageGenerator, ImageParams, fit

DTYPES = ("float32", "float16", "bfloat16")
OPTIONS = (
    Option("device", str, "cpu", "torch device: cpu, cuda, cuda:N, mps or auto"),
    Option("dtype", str, None, "weights dtype (default float32 on cpu, float16 elsewhere)", choices=DTYPES),
    Option("ip_adapter", str, None, "IP-Adapter weights file: reference images steer the image (--mode reference)"),
    Option("ip_adapter_scale", float, 0.6, "how strongly the reference images steer", minimum=0),
    Option("download", bool, False, "allow downloading a Hub repo id (ravl is offline by default)"),
    Option("threads", int, None, "torch CPU threads (default $RAVL_THREADS, else torch's)", minimum=1),
)
DEFAULT_STEPS = 20


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DiffusersImageGenerator(ImageGenerator):
    seeded = True
    supports_progress = True

    def __init__(self, spec: Spec, pipe: Any, *, torch: Any, device: str, ip_adapter: str | None,
                 ip_scale: float) -> None:
        self.spec = str(spec)
        self.t2i = pipe
        self._torch = torch
        self.device = device
        self.ip_adapter = ip_adapter
        self.ip_scale = ip_scale
        self._i2i: Any = None
        self._lock = threading.Lock()
        self.modes = ("text", "init", "reference") if ip_adapter else ("text", "init")
        self.mode_notes = {} if ip_adapter else {
            "reference": "no IP-Adapter is loaded; add ?ip_adapter=/path/to/ip-adapter_sd15.safetensors (with "
                         "its image_encoder/ folder beside it), or use --mode init"}
        scale = getattr(pipe, "vae_scale_factor", 8)
        sample = getattr(getattr(pipe.unet, "config", None), "sample_size", 64)
        sample = sample[0] if isinstance(sample, (list, tuple)) else sample
        side = int(sample) * int(scale)
        self.default_size = (side, side)
        self.pipeline_class = type(pipe).__name__

    def __repr__(self) -> str:
        return f"DiffusersImageGenerator({self.spec!r})"

    @property
    def i2i(self) -> Any:
        if self._i2i is None:
            from diffusers import AutoPipelineForImage2Image

            self._i2i = AutoPipelineForImage2Image.from_pipe(self.t2i)  # same weights, no second copy
            self._i2i.set_progress_bar_config(disable=True)
        return self._i2i

    def execute(self, prompt: str, *, mode: str = "text", params: ImageParams = ImageParams(),
                init_image: Image.Image | None = None, references: Sequence[Image.Image] = (),
                progress: Progress | None = None) -> GeneratedImage:
        self.check_mode(mode)
        params = params.check().with_seed()
        width, height = params.size_or(self.default_size)
        steps = params.steps or DEFAULT_STEPS
        kwargs: dict[str, Any] = {"prompt": prompt, "num_inference_steps": steps, "width": width, "height": height,
                                  "generator": self._torch.Generator("cpu").manual_seed(params.seed)}
        if params.negative_prompt:
            kwargs["negative_prompt"] = params.negative_prompt
        if params.guidance is not None:
            kwargs["guidance_scale"] = float(params.guidance)
        pipe = self.t2i
        if mode == "init":
            if init_image is None:
                raise ConfigError("mode 'init' needs an init image (the best reference)")
            pipe = self.i2i
            kwargs.pop("width"), kwargs.pop("height")
            kwargs.update(image=fit(init_image, width, height), strength=float(params.strength))
            if round(steps * params.strength) < 1:
                raise ConfigError(f"steps {steps} x strength {params.strength} leaves no denoising step; "
                                  "raise --steps or --strength")
        if self.ip_adapter:
            # with an IP-Adapter loaded the UNet always expects image embeddings: other modes get a
            # blank image at scale 0, which adds exactly nothing to the attention output
            refs = [fit(r, 224, 224) for r in references] if mode == "reference" else [Image.new("RGB", (224, 224))]
            if not refs:
                raise ConfigError("mode 'reference' needs at least one reference image")
            kwargs["ip_adapter_image"] = [refs]
            pipe.set_ip_adapter_scale(self.ip_scale if mode == "reference" else 0.0)
        if progress is not None:
            total = max(1, int(steps * params.strength) if mode == "init" else steps)

            def on_step(pipeline, step, timestep, tensors):
                progress(min(step + 1, total), total)
                return tensors

            kwargs["callback_on_step_end"] = on_step
        with self._lock:
            try:
                with self._torch.inference_mode():
                    out = pipe(**kwargs)
            except (ValueError, RuntimeError, TypeError) as exc:
                raise GenerationError(f"{self.spec!r}: the pipeline failed ({_one_line(exc)})") from exc
        image = out.images[0]
        extra: dict[str, Any] = {"pipeline": type(pipe).__name__}
        flagged = getattr(out, "nsfw_content_detected", None)
        if flagged and any(flagged):
            extra["nsfw_content_detected"] = True
        return GeneratedImage(image=image.convert("RGB"), seed=params.seed, steps=steps,
                              guidance=params.guidance if params.guidance is not None
                              else float(getattr(pipe, "guidance_scale", 7.5)), extra=extra)




def _not_available(spec: Spec, source: str, exc: Exception, download: bool) -> ModelNotAvailableError:
    detail = _one_line(exc)
    if Path(source).expanduser().exists():
        return ModelNotAvailableError(
            f"{str(spec)!r}: {source!r} is not a loadable diffusers pipeline folder ({detail}); point it at a "
            "folder written by pipe.save_pretrained (model_index.json plus unet/, vae/, text_encoder/, tokenizer/, "
            "scheduler/)")
    if download:
        return ModelNotAvailableError(
            f"{str(spec)!r}: pipeline {source!r} could not be loaded or downloaded ({detail}); check the repo id "
            "and the network (HF_HUB_OFFLINE must be unset), or use a local folder 'diffusers:/path/to/pipeline'")
    return ModelNotAvailableError(
        f"{str(spec)!r}: pipeline {source!r} is not on this machine and ravl does not download by default; "
        f"fetch it on a connected machine with 'hf download {source} --local-dir DIR' and use "
        f"'diffusers:/path/to/DIR', or allow the download with 'diffusers:{source}?download=1'")


def _load_ip_adapter(spec: Spec, pipe: Any, path: str) -> str:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelNotAvailableError(f"{str(spec)!r}: ip_adapter {path!r} is not a file; give the IP-Adapter "
                                     "weights (e.g. ip-adapter_sd15.safetensors) with image_encoder/ beside it")
    if not (file.parent / "image_encoder").is_dir() and getattr(pipe, "image_encoder", None) is None:
        raise ModelNotAvailableError(f"{str(spec)!r}: no image_encoder/ folder beside {file}; IP-Adapter needs "
                                     "its CLIP vision tower there (as in h94/IP-Adapter's models/ folder)")
    if not hasattr(pipe, "load_ip_adapter"):
        raise ConfigError(f"{str(spec)!r}: {type(pipe).__name__} does not support IP-Adapters")
    try:
        pipe.load_ip_adapter(str(file.parent), subfolder="", weight_name=file.name, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelNotAvailableError(f"{str(spec)!r}: cannot load the IP-Adapter {path!r} ({_one_line(exc)}); it "
                                     "must match the pipeline (SD 1.5 adapters for SD 1.5, SDXL ones for SDXL)") from exc
    return str(file.resolve())


@declare(*OPTIONS, requires=("diffusers", "torch", "transformers"), install="pip install 'ravl[diffusers]'")
def create(spec: Spec) -> DiffusersImageGenerator:
    """A diffusers Stable-Diffusion pipeline from a local folder (or the Hub cache)."""
    if not spec.name:
        raise ConfigError("the diffusers image generator needs a pipeline: 'diffusers:/path/to/pipeline' or "
                          "'diffusers:stabilityai/sd-turbo'")
    opts = parse_options(spec, OPTIONS)
    try:
        import diffusers
        import torch
        from diffusers import AutoPipelineForText2Image
    except ImportError as exc:
        raise MissingDependencyError(f"{str(spec)!r} needs diffusers: pip install 'ravl[diffusers]' ({exc})") from None
    threads = opts["threads"] or env_int("RAVL_THREADS", 0)
    if threads:
        torch.set_num_threads(max(1, threads))
    download = opts["download"]
    device = torch_device(torch, spec, opts["device"])
    dtype_name = opts["dtype"] or ("float32" if device == "cpu" else "float16")
    ip_scale = opts["ip_adapter_scale"]
    local = Path(spec.name).expanduser()
    source = str(local.resolve()) if local.exists() else spec.name
    if local.is_dir() and not (local / "model_index.json").is_file():
        raise _not_available(spec, source, FileNotFoundError(f"no model_index.json in {source}"), download)
    if local.is_file():
        raise ModelNotAvailableError(f"{str(spec)!r}: {source} is a single file; ravl loads diffusers pipeline "
                                     "folders (convert it with diffusers' from_single_file(...).save_pretrained(DIR))")
    import transformers

    bars = [m.utils.logging for m in (diffusers, transformers)]
    was_enabled = [b.is_progress_bar_enabled() for b in bars]
    verbosity = [b.get_verbosity() for b in bars]
    for b in bars:  # the library never writes to the terminal: no bars, only errors logged
        b.disable_progress_bar()
        b.set_verbosity_error()
    try:
        with warnings.catch_warnings():  # torch_dtype works on every diffusers release; newer ones also take dtype
            warnings.simplefilter("ignore", FutureWarning)
            try:
                pipe = AutoPipelineForText2Image.from_pretrained(
                    source, torch_dtype=getattr(torch, dtype_name), local_files_only=local.exists() or not download)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise _not_available(spec, source, exc, download) from exc
        pipe.set_progress_bar_config(disable=True)
        ip_adapter = _load_ip_adapter(spec, pipe, opts["ip_adapter"]) if opts["ip_adapter"] else None
    finally:
        for b, was, level in zip(bars, was_enabled, verbosity):
            b.set_verbosity(level)
            if was:
                b.enable_progress_bar()
    if device != "cpu":
        pipe.to(device)
    return DiffusersImageGenerator(spec, pipe, torch=torch, device=device, ip_adapter=ip_adapter, ip_scale=ip_scale)
