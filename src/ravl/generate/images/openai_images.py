"""``openai-images:<model>``: OpenAI-compatible image endpoints (OpenAI's gpt-image-1 / DALL-E,
LocalAI, and other servers speaking the same API), over the shared HTTP client.

* ``text`` — ``POST {base_url}/images/generations`` with model, prompt, size and ``n=1``;
* ``init`` — ``POST {base_url}/images/edits`` (multipart) with the best reference as ``image``;
* ``reference`` — the same edit endpoint with every reference as ``image[]`` (gpt-image-1 takes
  several input images; DALL-E 2 takes one and refuses more).

Options, as for the text backend's ``openai:`` spec: ``base_url`` (default ``$OPENAI_BASE_URL``,
else ``https://api.openai.com/v1``), ``api_key_env`` (default ``OPENAI_API_KEY``), ``timeout``
(default 300 s: images are slow), ``retries`` (default 2) and ``backoff`` (default 0.5 s, doubling;
429 and 5xx are retried, honouring ``Retry-After``), plus ``quality`` passed through. These APIs
take no seed, steps or guidance: the provenance records them as not used (``seeded: false``).
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from PIL import Image

from ...errors import ConfigError, GenerationError
from ...specs import Option, Spec, declare, parse_options
from ..http import OPENAI_BASE_URL, HttpClient, multipart, openai_endpoint, retry_options
from .base import GeneratedImage, ImageGenerator, ImageParams, Progress, decode_generated, png_bytes

OPTIONS = (
    Option("base_url", str, None, "API root ending in /v1 (default $OPENAI_BASE_URL, else https://api.openai.com/v1)"),
    Option("api_key_env", str, "OPENAI_API_KEY", "environment variable holding the API key (unset: no key is sent)"),
    *retry_options(300.0, "an image"),
    Option("quality", str, None, "the API's quality setting, passed through (e.g. low, medium, high)"),
)
DEFAULT_BASE_URL = OPENAI_BASE_URL


def b64_image(value: Any, where: str) -> Image.Image:
    """Base64 text (optionally a data: URL) -> image, or a one-line GenerationError."""
    if not isinstance(value, str) or not value.strip():
        raise GenerationError(f"{where} sent no image data")
    text = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise GenerationError(f"{where} sent image data that is not base64") from None
    return decode_generated(data, where)


class OpenAIImagesGenerator(ImageGenerator):
    modes = ("text", "init", "reference")
    seeded = False
    default_size = (1024, 1024)

    def __init__(self, spec: Spec, *, base_url: str, api_key_env: str, timeout: float, retries: int,
                 backoff: float, quality: str | None) -> None:
        # written as users do: the parser reads openai-images and openai_images alike
        self.spec = str(spec).replace("openai_images:", "openai-images:", 1)
        self.model = spec.name
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.quality = quality
        self.http = HttpClient(self.spec, timeout=timeout, retries=retries, backoff=backoff, api_key_env=api_key_env,
                               hint=self._hint, start_hint="is the server running and is base_url right?",
                               timeout_hint="raise it with ?timeout=SECONDS")

    def __repr__(self) -> str:
        return f"OpenAIImagesGenerator({self.spec!r})"

    def _hint(self, code: int) -> str:
        if code in (401, 403):
            return f"set a valid API key in ${self.api_key_env} (or name another variable with ?api_key_env=NAME)"
        if code == 404:
            return (f"check the model name {self.model!r} and that base_url {self.base_url!r} is the API root "
                    "(often ending in /v1) of a server with image endpoints")
        return "check the model name, the size and that this model supports the mode"

    def _fields(self, prompt: str, width: int, height: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": 1, "size": f"{width}x{height}"}
        if not self.model.startswith("gpt-image"):  # gpt-image models always answer base64 and refuse the field
            body["response_format"] = "b64_json"
        if self.quality:
            body["quality"] = self.quality
        return body

    def _image_from(self, data: Any, url: str) -> Image.Image:
        where = f"{self.spec!r}: the server at {url}"
        try:
            item = data["data"][0]
        except (KeyError, IndexError, TypeError):
            raise GenerationError(f"{where} answered without an image (expected {{\"data\": [{{\"b64_json\": ...}}]}}, "
                                  f"got {str(data)[:160]!r})") from None
        if isinstance(item, dict) and item.get("b64_json"):
            return b64_image(item["b64_json"], where)
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            link = urljoin(url, item["url"])
            if urlsplit(link).scheme not in ("http", "https"):
                raise GenerationError(f"{where} answered with an image URL ravl cannot fetch: {link[:120]!r}")
            response = self._get(link)
            return decode_generated(self.http.read(response, link), f"{self.spec!r}: the image at {link}")
        raise GenerationError(f"{where} answered without b64_json or url in data[0]: {str(item)[:160]!r}")

    def _get(self, link: str) -> Any:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(link, headers={"User-Agent": "ravl"})
        try:
            return self.http.opener(link).open(request, timeout=self.http.timeout)
        except urllib.error.HTTPError as exc:
            raise GenerationError(f"{self.spec!r}: fetching the image at {link} failed ({exc.code})") from None
        except (urllib.error.URLError, OSError) as exc:
            raise GenerationError(f"{self.spec!r}: cannot fetch the image at {link} ({exc})") from None

    def execute(self, prompt: str, *, mode: str = "text", params: ImageParams = ImageParams(),
                init_image: Image.Image | None = None, references: Sequence[Image.Image] = (),
                progress: Progress | None = None) -> GeneratedImage:
        self.check_mode(mode)
        params.check()
        width, height = params.size_or(self.default_size)
        fields = self._fields(prompt, width, height)
        if mode == "text":
            url = self.base_url + "/images/generations"
            data = self.http.post_json(url, fields)
        else:
            images = [init_image] if mode == "init" else list(references)
            if not images or images[0] is None:
                raise ConfigError(f"mode {mode!r} needs at least one reference image")
            name = "image" if len(images) == 1 else "image[]"
            files = [(name, f"reference-{i}.png", png_bytes(img), "image/png") for i, img in enumerate(images)]
            url = self.base_url + "/images/edits"
            body, ctype = multipart({k: str(v) for k, v in fields.items()}, files)
            data = self.http.read_json(self.http.post(url, body, self.http.headers(content_type=ctype)), url)
        image = self._image_from(data, url)
        extra = {"endpoint": url.rsplit("/", 1)[-1], "not_used": [k for k, v in (
            ("seed", params.seed), ("steps", params.steps), ("guidance", params.guidance),
            ("strength", params.strength if mode == "init" else None)) if v is not None]}
        if isinstance(data, dict) and isinstance(data.get("data"), list) and isinstance(data["data"][0], dict):
            revised = data["data"][0].get("revised_prompt")
            if revised:
                extra["revised_prompt"] = str(revised)[:1000]
        return GeneratedImage(image=image, seed=None, steps=None, guidance=None, extra=extra)


@declare(*OPTIONS)
def create(spec: Spec) -> OpenAIImagesGenerator:
    """An OpenAI-compatible images API (/v1/images/generations and /edits)."""
    if not spec.name:
        raise ConfigError("the openai-images generator needs a model name: e.g. 'openai-images:gpt-image-1' or "
                          "'openai-images:sd-1.5?base_url=http://localhost:8080/v1'")
    opts = parse_options(spec, OPTIONS)
    base_url, api_key_env = openai_endpoint(spec, opts, "http://localhost:8080/v1")
    return OpenAIImagesGenerator(spec, base_url=base_url, api_key_env=api_key_env,
                                 timeout=opts["timeout"], retries=opts["retries"], backoff=opts["backoff"],
                                 quality=opts["quality"])
