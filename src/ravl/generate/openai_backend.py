"""``openai:<model>``: any OpenAI-compatible chat-completions server (Ollama, vLLM, llama.cpp's
server, LM Studio, hosted APIs), over the standard library's HTTP client.

Options (``openai:llama3.2?base_url=http://localhost:11434/v1&timeout=120``):

* ``base_url`` — the API root ending in ``/v1`` (default ``$OPENAI_BASE_URL``, else
  ``https://api.openai.com/v1``);
* ``api_key_env`` — the environment variable holding the API key (default ``OPENAI_API_KEY``;
  when it is unset no key is sent, which local servers accept);
* ``timeout`` — seconds to wait for the server to answer, and between streamed chunks (default 60);
* ``retries`` — further attempts after a 429, a 5xx or a refused/dropped connection (default 2),
  waiting ``backoff`` seconds (default 0.5), doubling each time, or what ``Retry-After`` asks;
  a timeout is not retried, since a slow model would only be asked again;
* ``vision=1`` — the model can see images: the image is sent as a data-URL content part.
"""
from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

from PIL import Image

from ..errors import ConfigError, GenerationError
from ..specs import Option, Spec, declare, parse_options
from .base import GenerationParams, Generator, OnText
from .http import OPENAI_BASE_URL, HttpClient, openai_endpoint, retry_options, server_message

OPTIONS = (
    Option("base_url", str, None, "API root ending in /v1 (default $OPENAI_BASE_URL, else https://api.openai.com/v1)"),
    Option("api_key_env", str, "OPENAI_API_KEY", "environment variable holding the API key (unset: no key is sent)"),
    *retry_options(60.0, "an answer, and between streamed chunks"),
    Option("vision", bool, False, "the model can see images: send the image as a data-URL content part"),
)
DEFAULT_BASE_URL = OPENAI_BASE_URL
#: longest side of an image sent to a vision model; larger ones are downscaled first
MAX_IMAGE_SIDE = 1024



def image_data_url(image: Image.Image, max_side: int = MAX_IMAGE_SIDE) -> str:
    """The image as a ``data:image/jpeg;base64,...`` URL, downscaled to ``max_side`` at most."""
    img = image.convert("RGB")
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIGenerator(Generator):
    """Chat completions from an OpenAI-compatible server; can stream to a callback."""

    is_language_model = True
    supports_streaming = True

    def __init__(self, spec: Spec, *, base_url: str, api_key_env: str, timeout: float, retries: int,
                 backoff: float, vision: bool) -> None:
        self.spec = str(spec)
        self.model = spec.name
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.supports_images = vision
        # Loopback servers are reached directly even when an HTTP proxy is configured.
        self.http = HttpClient(self.spec, timeout=timeout, retries=retries, backoff=backoff, api_key_env=api_key_env,
                               hint=self._hint, start_hint="is the server running and is base_url right? "
                                                           "(e.g. start it with 'ollama serve')",
                               timeout_hint="raise it with ?timeout=SECONDS or ask for fewer --max-tokens")

    def __repr__(self) -> str:
        return f"OpenAIGenerator({self.spec!r})"

    # --- request --------------------------------------------------------------------------------
    def messages(self, prompt: str, image: Image.Image | None = None) -> list[dict]:
        """The chat messages sent for ``prompt`` (and the image, for a vision model)."""
        if image is None or not self.supports_images:
            return [{"role": "user", "content": prompt}]
        return [{"role": "user", "content": [{"type": "text", "text": prompt},
                                             {"type": "image_url", "image_url": {"url": image_data_url(image)}}]}]

    def payload(self, prompt: str, params: GenerationParams, image: Image.Image | None = None,
                stream: bool = False) -> dict:
        """The JSON body: model, messages and the generation parameters passed through."""
        if params.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, not {params.max_tokens}")
        if params.temperature < 0:
            raise ConfigError(f"temperature must be 0 (greedy) or positive, not {params.temperature}")
        body: dict[str, Any] = {"model": self.model, "messages": self.messages(prompt, image),
                                "max_tokens": int(params.max_tokens), "temperature": float(params.temperature)}
        if params.seed is not None:
            body["seed"] = int(params.seed)
        if stream:
            body["stream"] = True
        return body

    def _hint(self, code: int) -> str:
        if code in (401, 403):
            return f"set a valid API key in ${self.api_key_env} (or name another variable with ?api_key_env=NAME)"
        if code == 404:
            return (f"check the model name {self.model!r} and that base_url {self.base_url!r} is the API root "
                    "(often ending in /v1)")
        return "check the model name and the generation parameters"

    def _open(self, body: dict) -> Any:
        """POST ``body``, retrying 429/5xx and refused or dropped connections with backoff."""
        headers = self.http.headers(accept="application/json, text/event-stream")
        return self.http.post(self.url, json.dumps(body).encode("utf-8"), headers)

    def _timeout_error(self) -> GenerationError:
        return self.http.timeout_error(self.url)

    def _read_json(self, response: Any) -> dict:
        return self.http.read_json(response, self.url)

    def _content(self, data: Any, *, delta: bool) -> str:
        try:
            choice = data["choices"][0] if data.get("choices") else {}
            part = choice.get("delta" if delta else "message") or {}
            return part.get("content") or ""
        except (AttributeError, KeyError, TypeError, IndexError):
            raise GenerationError(f"{self.spec!r}: unexpected answer from {self.url}: {str(data)[:200]}") from None

    def _events(self, response: Any) -> Iterator[dict]:
        """Parse a server-sent-events stream into its JSON ``data:`` payloads."""
        with response:
            while True:
                try:
                    raw = response.readline()
                except TimeoutError:
                    raise self._timeout_error() from None
                except (ConnectionError, OSError) as exc:
                    raise GenerationError(f"{self.spec!r}: the stream from {self.url} broke ({exc})") from None
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                value = line[5:].strip()
                if value == "[DONE]":
                    return
                try:
                    event = json.loads(value)
                except ValueError:
                    raise GenerationError(f"{self.spec!r}: bad stream event from {self.url}: {value[:120]!r}") from None
                if isinstance(event, dict) and event.get("error"):
                    raise GenerationError(f"{self.spec!r}: the server at {self.url} failed mid-stream "
                                          f"({server_message(json.dumps(event).encode())})")
                yield event

    # --- the contract ----------------------------------------------------------------------------
    def execute(self, prompt: str, *, params: GenerationParams, image: Image.Image | None,
                on_text: OnText | None) -> str:
        """Ask the server for a chat completion; with ``on_text`` the answer is streamed to it
        chunk by chunk as it arrives, and the whole answer is still returned."""
        body = self.payload(prompt, params, image, stream=on_text is not None)
        response = self._open(body)
        streamed = "text/event-stream" in (response.headers.get("Content-Type") or "")
        if on_text is None or not streamed:  # a server may ignore "stream" and answer at once
            text = self._content(self._read_json(response), delta=False).strip()
            if on_text is not None and text:
                on_text(text)
            return text
        pieces: list[str] = []
        for event in self._events(response):
            piece = self._content(event, delta=True)
            if piece:
                pieces.append(piece)
                on_text(piece)
        return "".join(pieces).strip()


@declare(*OPTIONS)
def create(spec: Spec) -> OpenAIGenerator:
    """Any OpenAI-compatible chat-completions server (Ollama, vLLM, llama.cpp server, hosted APIs)."""
    if not spec.name:
        raise ConfigError("the openai generator needs a model name: e.g. "
                          "'openai:llama3.2?base_url=http://localhost:11434/v1' or 'openai:gpt-4o-mini'")
    opts = parse_options(spec, OPTIONS)
    base_url, api_key_env = openai_endpoint(spec, opts, "http://localhost:11434/v1")
    return OpenAIGenerator(spec, base_url=base_url, api_key_env=api_key_env, timeout=opts["timeout"],
                           retries=opts["retries"], backoff=opts["backoff"], vision=opts["vision"])
