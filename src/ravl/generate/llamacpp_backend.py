"""``llamacpp:<path/to/model.gguf>``: a GGUF model run in-process by llama-cpp-python.

Install with ``pip install 'ravl[llamacpp]'``. Options
(``llamacpp:/models/qwen2.5-0.5b-instruct-q4_k_m.gguf?n_ctx=4096``):

* ``n_ctx`` — context length in tokens (default 4096);
* ``n_threads`` — CPU threads (default: llama.cpp's choice);
* ``n_gpu_layers`` — layers to offload to a GPU build (default 0, ``-1`` for all);
* ``chat=0`` — send the prompt as plain text instead of through the model's chat template;
* ``mmproj`` — a LLaVA-style vision projector GGUF; the model then also sees the image.

The model loads once, when the generator is created; a seed makes sampling repeatable.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import ConfigError, GenerationError, MissingDependencyError, ModelNotAvailableError
from ..specs import Option, Spec, declare, parse_options
from .base import GenerationParams, Generator, OnText

OPTIONS = (
    Option("n_ctx", int, 4096, "context length in tokens", minimum=1),
    Option("n_threads", int, None, "CPU threads (default: llama.cpp's choice)", minimum=1),
    Option("n_gpu_layers", int, 0, "layers to offload to a GPU"),
    Option("chat", bool, True, "use the model's chat template (0: plain completion)"),
    Option("mmproj", str, None, "vision projector (mmproj) GGUF file: the model can see images"),
)
INSTALL_HINT = "pip install 'ravl[llamacpp]'"


def _import() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError(
            f"the 'llamacpp' generator needs llama-cpp-python ({exc}); install it with: {INSTALL_HINT}"
        ) from exc
    return llama_cpp


class LlamaCppGenerator(Generator):
    """A llama-cpp-python ``Llama``; chat completion (or plain completion with ``chat=0``)."""

    is_language_model = True
    supports_streaming = True

    def __init__(self, spec: Spec, llama: Any, *, use_chat: bool, vision: bool) -> None:
        self.spec = str(spec)
        self.llama = llama
        self.use_chat = use_chat or vision
        self.supports_images = vision
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LlamaCppGenerator({self.spec!r})"

    def _messages(self, prompt: str, image: Image.Image | None) -> list[dict]:
        if image is None or not self.supports_images:
            return [{"role": "user", "content": prompt}]
        from .openai_backend import image_data_url

        return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_data_url(image)}},
                                             {"type": "text", "text": prompt}]}]

    def execute(self, prompt: str, *, params: GenerationParams, image: Image.Image | None,
                on_text: OnText | None) -> str:
        """Complete ``prompt``; with ``on_text`` each piece is passed on as it is produced."""
        if params.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, not {params.max_tokens}")
        if params.temperature < 0:
            raise ConfigError(f"temperature must be 0 (greedy) or positive, not {params.temperature}")
        kwargs: dict[str, Any] = {"max_tokens": int(params.max_tokens), "temperature": float(params.temperature),
                                  "stream": on_text is not None}
        if params.seed is not None:
            kwargs["seed"] = int(params.seed)
        pieces: list[str] = []
        with self._lock:
            try:
                if self.use_chat:
                    out = self.llama.create_chat_completion(messages=self._messages(prompt, image), **kwargs)
                else:
                    out = self.llama.create_completion(prompt, **kwargs)
                if on_text is None:
                    choice = out["choices"][0]
                    return (choice["message"]["content"] if self.use_chat else choice["text"] or "").strip()
                for chunk in out:
                    choice = chunk["choices"][0]
                    piece = (choice.get("delta", {}).get("content") if self.use_chat else choice.get("text")) or ""
                    if piece:
                        pieces.append(piece)
                        on_text(piece)
            except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as exc:
                detail = " ".join(str(exc).split())[:300]
                raise GenerationError(f"{self.spec!r} failed to generate ({detail}); try a shorter prompt, "
                                      "fewer --max-tokens or a larger ?n_ctx=") from exc
        return "".join(pieces).strip()


@declare(*OPTIONS, requires=("llama_cpp",), install=INSTALL_HINT)
def create(spec: Spec) -> LlamaCppGenerator:
    """A GGUF model file run by llama-cpp-python."""
    if not spec.name:
        raise ConfigError("the llamacpp generator needs a GGUF file: 'llamacpp:/path/to/model.gguf'")
    opts = parse_options(spec, OPTIONS)
    path = Path(spec.name).expanduser()
    if not path.is_file():
        raise ModelNotAvailableError(f"{str(spec)!r}: no GGUF file at {str(path)!r}; download one (e.g. "
                                     "'hf download Qwen/Qwen2.5-0.5B-Instruct-GGUF qwen2.5-0.5b-instruct-q4_k_m.gguf "
                                     "--local-dir DIR') and pass its path")
    mmproj = opts["mmproj"]
    if mmproj and not Path(mmproj).expanduser().is_file():
        raise ModelNotAvailableError(f"{str(spec)!r}: no vision projector file at {mmproj!r}")
    llama_cpp = _import()
    kwargs: dict[str, Any] = {"model_path": str(path), "n_ctx": opts["n_ctx"], "n_gpu_layers": opts["n_gpu_layers"],
                              "verbose": False}
    if opts["n_threads"]:
        kwargs["n_threads"] = opts["n_threads"]
    if mmproj:
        from llama_cpp.llama_chat_format import Llava15ChatHandler

        kwargs["chat_handler"] = Llava15ChatHandler(clip_model_path=str(Path(mmproj).expanduser()), verbose=False)
    try:
        llama = llama_cpp.Llama(**kwargs)
    except (ValueError, RuntimeError, OSError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ModelNotAvailableError(f"{str(spec)!r}: llama.cpp could not load {str(path)!r} ({detail}); "
                                     "is it a GGUF model file this llama-cpp-python version supports?") from exc
    return LlamaCppGenerator(spec, llama, use_chat=opts["chat"], vision=bool(mmproj))
