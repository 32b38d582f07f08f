"""``a1111:URL``: an AUTOMATIC1111 / Forge web UI started with ``--api``
(``a1111:http://127.0.0.1:7860``), over the shared HTTP client.

* ``text`` — ``POST {URL}/sdapi/v1/txt2img``;
* ``init`` — ``POST {URL}/sdapi/v1/img2img`` with the best reference as ``init_images`` and
  ``denoising_strength`` = ``--strength``.

``reference`` is not offered: the API has no built-in image prompt (IP-Adapter there needs the
ControlNet extension's ``alwayson_scripts``). The seed the server reports in ``info`` is recorded.
Options: ``sampler`` (e.g. ``Euler a``), ``timeout`` (default 600 s), ``retries`` (default 2),
``backoff`` (default 0.5 s), ``api_key_env`` (a Bearer key for a server behind a proxy).
"""
from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from ...errors import ConfigError, GenerationError
from ...specs import Option, Spec, declare, parse_options
from ..http import HttpClient, retry_options
from .base import GeneratedImage, ImageGenerator, ImageParams, Progress, fit, png_bytes
from .openai_images import b64_image

OPTIONS = (
    Option("sampler", str, None, "sampler name as the web UI lists it (default: the UI's)"),
    *retry_options(600.0, "an image"),
    Option("api_key_env", str, None, "environment variable holding a bearer token (unset: none is sent)"),
)
DEFAULT_STEPS = 20
DEFAULT_CFG = 7.0


class A1111ImageGenerator(ImageGenerator):
    modes = ("text", "init")
    mode_notes = {"reference": "the AUTOMATIC1111 API has no built-in image prompt (IP-Adapter needs the ControlNet "
                               "extension); use --mode init, or a diffusers: pipeline with ?ip_adapter="}
    seeded = True
    default_size = (512, 512)

    def __init__(self, spec: Spec, *, url: str, sampler: str | None, timeout: float, retries: int,
                 backoff: float, api_key_env: str | None) -> None:
        self.spec = str(spec)
        self.url = url.rstrip("/")
        self.sampler = sampler
        self.http = HttpClient(self.spec, timeout=timeout, retries=retries, backoff=backoff, api_key_env=api_key_env,
                               hint=self._hint, start_hint="is the web UI running with --api, and is the URL right?",
                               timeout_hint="raise it with ?timeout=SECONDS or ask for fewer --steps")

    def __repr__(self) -> str:
        return f"A1111ImageGenerator({self.spec!r})"

    def _hint(self, code: int) -> str:
        if code == 404:
            return f"is {self.url} an AUTOMATIC1111/Forge web UI started with --api?"
        if code in (401, 403):
            return "the server wants credentials; give a Bearer key with ?api_key_env=VAR"
        if code == 422:
            return "the server refused the parameters (size, steps, sampler name)"
        return "check the server's console"

    def execute(self, prompt: str, *, mode: str = "text", params: ImageParams = ImageParams(),
                init_image: Image.Image | None = None, references: Sequence[Image.Image] = (),
                progress: Progress | None = None) -> GeneratedImage:
        self.check_mode(mode)
        params = params.check().with_seed()
        width, height = params.size_or(self.default_size)
        steps = params.steps or DEFAULT_STEPS
        cfg = DEFAULT_CFG if params.guidance is None else float(params.guidance)
        body: dict[str, Any] = {"prompt": prompt, "negative_prompt": params.negative_prompt, "steps": steps,
                                "cfg_scale": cfg, "width": width, "height": height, "seed": params.seed,
                                "batch_size": 1, "n_iter": 1, "send_images": True, "save_images": False}
        if self.sampler:
            body["sampler_name"] = self.sampler
        endpoint = "txt2img"
        if mode == "init":
            if init_image is None:
                raise ConfigError("mode 'init' needs an init image (the best reference)")
            endpoint = "img2img"
            body["init_images"] = [base64.b64encode(png_bytes(fit(init_image, width, height))).decode("ascii")]
            body["denoising_strength"] = float(params.strength)
        url = f"{self.url}/sdapi/v1/{endpoint}"
        data = self.http.post_json(url, body, what="an AUTOMATIC1111 web UI started with --api")
        where = f"{self.spec!r}: the server at {url}"
        images = data.get("images") if isinstance(data, dict) else None
        if not isinstance(images, list) or not images:
            raise GenerationError(f"{where} answered without images (expected {{\"images\": [base64 PNG]}}, got "
                                  f"{str(data)[:160]!r})")
        image = b64_image(images[0], where)
        seed, extra = params.seed, {"endpoint": endpoint}
        info = data.get("info")
        try:
            info = json.loads(info) if isinstance(info, str) else info
        except ValueError:
            info = None
        if isinstance(info, dict):
            if isinstance(info.get("seed"), int):
                seed = info["seed"]
            for key in ("sampler_name", "sd_model_name", "sd_model_hash"):
                if info.get(key):
                    extra[key] = info[key]
        return GeneratedImage(image=image, seed=seed, steps=steps, guidance=cfg, extra=extra)


@declare(*OPTIONS)
def create(spec: Spec) -> A1111ImageGenerator:
    """An AUTOMATIC1111 / Forge web UI server (its /sdapi/v1 API)."""
    url = spec.name
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{str(spec)!r} must name the web UI's URL, e.g. 'a1111:http://127.0.0.1:7860'")
    opts = parse_options(spec, OPTIONS)
    api_key_env = opts["api_key_env"]
    if api_key_env and not os.environ.get(api_key_env):
        raise ConfigError(f"{str(spec)!r} reads its API key from ${api_key_env}, which is not set; export it first")
    return A1111ImageGenerator(spec, url=url, sampler=opts["sampler"], timeout=opts["timeout"],
                               retries=opts["retries"], backoff=opts["backoff"], api_key_env=api_key_env)
