"""``hf:<repo-id-or-local-path>``: a transformers causal language model, or a vision-language
model (the ``AutoModelForImageTextToText`` family: LLaVA, Idefics, PaliGemma, Qwen2-VL, ...) that
also looks at the image, run in-process. Which one is decided by the checkpoint's config.

Options (``hf:/models/tiny?dtype=float32&device=cpu``):

* ``chat=0`` — do not wrap the prompt in the tokenizer's chat template (used by default when
  the tokenizer has one);
* ``dtype`` — ``float32`` (default on CPU), ``bfloat16``, ``float16`` or ``auto`` (the
  checkpoint's own, default on CUDA);
* ``device`` — ``cpu`` (default), ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA when available);
* ``download=1`` — allow fetching a repo id from the Hugging Face Hub; by default ravl only
  uses models already on disk (a local folder or the Hugging Face cache).

The model and tokenizer (or processor) load once, when the generator is created. Both kinds can
stream new text to an ``on_text`` callback as it is generated.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import ConfigError, GenerationError, MissingDependencyError, ModelNotAvailableError
from ..specs import Option, Spec, declare, parse_options
from .base import GenerationParams, Generator, OnText

_DTYPES = ("auto", "float32", "float16", "bfloat16")
OPTIONS = (
    Option("chat", bool, True, "wrap the prompt in the model's chat template when it has one"),
    Option("dtype", str, None, "weights dtype (default float32 on cpu, auto elsewhere)", choices=_DTYPES),
    Option("device", str, "cpu", "torch device: cpu, cuda, cuda:N, mps or auto"),
    Option("download", bool, False, "allow downloading a Hub repo id (ravl is offline by default)"),
)


def _imports() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"the 'hf' generator needs torch and transformers ({exc.name} is missing); "
            "install them with: pip install 'ravl[hf]' (use -c constraints.txt in a ravl checkout)"
        ) from exc
    return torch, transformers


def torch_device(torch: Any, spec: Spec, device: str | None = None) -> str:
    """The torch device ``device`` (default: the spec's ``?device=``) names; shared by the text and image backends."""
    device = device or spec.opts.get("device") or "cpu"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{str(spec)!r} asks for device={device} but CUDA is not available; use device=cpu")
    if device != "cpu" and not device.startswith(("cuda", "mps", "xpu")):
        raise ConfigError(f"unknown device {device!r} in {str(spec)!r}; use cpu, cuda, cuda:N, mps or auto")
    return device


def _dtype(torch: Any, name: str | None, device: str) -> Any:
    name = name or ("float32" if device == "cpu" else "auto")
    return "auto" if name == "auto" else getattr(torch, name)


@contextmanager
def _quiet_progress(transformers: Any) -> Iterator[None]:
    """Hide transformers' "Loading weights" bars: the library never writes to the terminal."""
    logging = transformers.utils.logging
    was_enabled = logging.is_progress_bar_enabled()
    if was_enabled:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def _not_available(spec: Spec, source: str, exc: Exception, download: bool) -> ModelNotAvailableError:
    detail = " ".join(str(exc).split())[:300]  # one line, as the CLI prints it
    if Path(source).expanduser().exists():
        return ModelNotAvailableError(
            f"{str(spec)!r}: {source!r} is not a loadable language model folder ({detail}); "
            "point it at a folder written by save_pretrained (config.json, weights and tokenizer files)"
        )
    if download:
        return ModelNotAvailableError(
            f"{str(spec)!r}: model {source!r} could not be loaded or downloaded ({detail}); check the repo id "
            "and the network (HF_HUB_OFFLINE must be unset), or use a local folder 'hf:/path/to/model'"
        )
    return ModelNotAvailableError(
        f"{str(spec)!r}: model {source!r} is not on this machine and ravl does not download by "
        "default; use a local folder such as 'hf:/path/to/model' (written by save_pretrained or "
        f"'hf download {source} --local-dir DIR'), or allow the download with 'hf:{source}?download=1'"
    )


def _check(params: GenerationParams) -> None:
    if params.max_tokens < 1:
        raise ConfigError(f"max_tokens must be at least 1, not {params.max_tokens}")
    if params.temperature < 0:
        raise ConfigError(f"temperature must be 0 (greedy) or positive, not {params.temperature}")


def _first(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def _sampling(params: GenerationParams, model: Any, tokenizer: Any) -> dict[str, Any]:
    """``generate`` keyword arguments: greedy at temperature 0, sampling otherwise."""
    kwargs: dict[str, Any] = {"max_new_tokens": int(params.max_tokens)}
    if params.temperature == 0:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=float(params.temperature))
    if params.stop:
        kwargs["stopping_criteria"] = _stop_after_text(tokenizer, params.stop)
    gen_config = model.generation_config
    if gen_config.pad_token_id is None and getattr(tokenizer, "pad_token_id", None) is None:
        kwargs["pad_token_id"] = _first(gen_config.eos_token_id)
    return kwargs


def _stop_after_text(tokenizer: Any, stop: tuple[str, ...]) -> Any:
    """Stop once the new text, leading whitespace aside, contains a stop string (so a caption that
    starts with a blank line is not cut to nothing, as ``stop_strings`` would)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __init__(self) -> None:
            self.start: int | None = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            if self.start is None:  # the first call comes after one new token
                self.start = input_ids.shape[1] - 1
            text = tokenizer.decode(input_ids[0, self.start:], skip_special_tokens=True).lstrip()
            done = any(s and s in text for s in stop)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Stop()])


def _streamer(tokenizer: Any, on_text: Callable[[str], None] | None) -> Any:
    """A transformers streamer that hands each finished piece of new text to ``on_text``."""
    if on_text is None:
        return None
    from transformers import TextStreamer

    callback = on_text

    class _Callback(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                callback(text)

    return _Callback(tokenizer, skip_prompt=True, skip_special_tokens=True)


def _run_generate(gen: Any, inputs: dict, kwargs: dict, params: GenerationParams) -> Any:
    """``model.generate`` under the lock; a seed drives sampling without touching the global RNG."""
    import torch

    with gen._lock:
        try:
            if params.seed is not None and params.temperature != 0:
                devices = [torch.device(gen.device).index or 0] if gen.device.startswith("cuda") else []
                with torch.random.fork_rng(devices=devices):  # repeatable, global RNG untouched
                    torch.manual_seed(int(params.seed))
                    return gen.model.generate(**inputs, **kwargs)
            return gen.model.generate(**inputs, **kwargs)
        except (RuntimeError, ValueError, IndexError) as exc:
            detail = " ".join(str(exc).split())[:300]
            raise GenerationError(
                f"{gen.spec!r} failed to generate ({detail}); try a shorter prompt or fewer max_tokens"
            ) from exc


class HFCausalLMGenerator(Generator):
    """A transformers ``AutoModelForCausalLM`` with its tokenizer; text in, new text out."""

    supports_images = False
    supports_streaming = True
    is_language_model = True

    def __init__(self, spec: Spec, model: Any, tokenizer: Any, *, use_chat: bool, device: str) -> None:
        self.spec = str(spec)
        self.model = model
        self.tokenizer = tokenizer
        self.use_chat = use_chat
        self.device = device
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HFCausalLMGenerator({self.spec!r})"

    def render_prompt(self, prompt: str) -> str:
        """The text the model actually sees: ``prompt`` in the chat template, or as given."""
        if not self.use_chat:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    @property
    def context_tokens(self) -> int | None:
        """How many tokens (prompt + answer) the model can attend to, from its config."""
        value = getattr(self.model.config, "max_position_embeddings", None)
        return int(value) if value else None

    def count_tokens(self, prompt: str) -> int:
        """Tokens the model sees for ``prompt`` (chat template included)."""
        return int(self._encode(prompt)["input_ids"].shape[1])

    def _encode(self, prompt: str) -> Any:
        if self.use_chat:  # the template already holds any BOS/special tokens it wants
            return self.tokenizer(self.render_prompt(prompt), return_tensors="pt", add_special_tokens=False)
        return self.tokenizer(prompt, return_tensors="pt")

    def execute(self, prompt: str, *, params: GenerationParams, image: Image.Image | None,
                on_text: OnText | None) -> str:
        """Continue ``prompt`` (wrapped in the chat template when used); returns only the new text."""
        _check(params)
        encoded = self._encode(prompt)
        # Only what every causal LM accepts (a BERT-style tokenizer also returns token_type_ids).
        inputs = {key: encoded[key].to(self.device) for key in ("input_ids", "attention_mask") if key in encoded}
        kwargs = _sampling(params, self.model, self.tokenizer)
        kwargs["streamer"] = _streamer(self.tokenizer, on_text)
        n_in = inputs["input_ids"].shape[1]
        limit = self.context_tokens
        if limit and n_in >= limit:
            raise GenerationError(f"{self.spec!r}: the prompt is {n_in} tokens, more than the model's context of "
                                  f"{limit}; shorten the question or the template")
        if limit and n_in + kwargs["max_new_tokens"] > limit:
            kwargs["max_new_tokens"] = limit - n_in  # the answer gets what room is left
        output = _run_generate(self, inputs, kwargs, params)
        return _cut(self.tokenizer.decode(output[0, n_in:], skip_special_tokens=True), params.stop)


def _cut(text: str, stop: tuple[str, ...]) -> str:
    """``text`` (leading whitespace aside) up to the first stop string."""
    text = text.lstrip()
    for s in stop:
        if s and s in text:
            text = text[: text.index(s)]
    return text.strip()


class HFVisionGenerator(Generator):
    """A transformers ``AutoModelForImageTextToText`` with its processor: the image and the
    prompt in, new text out. Without an image it answers from the prompt alone."""

    supports_images = True
    supports_streaming = True
    is_language_model = True

    def __init__(self, spec: Spec, model: Any, processor: Any, *, use_chat: bool, device: str) -> None:
        self.spec = str(spec)
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.use_chat = use_chat
        self.device = device
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HFVisionGenerator({self.spec!r})"

    def render_prompt(self, prompt: str, with_image: bool = True) -> str:
        """The text the processor sees: the chat template with an image slot, or the processor's
        image token, a newline and ``prompt``."""
        if self.use_chat:
            content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
            return self.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                      add_generation_prompt=True)
        if not with_image:
            return prompt
        token = getattr(self.processor, "image_token", None)
        if not token:
            raise ConfigError(f"{self.spec!r}: the processor has neither a chat template nor an image token; "
                              "add a chat template to the model folder")
        return f"{token}\n{prompt}"

    def build_inputs(self, prompt: str, image: Image.Image | None) -> dict:
        """Processor outputs on the model's device (pixel values in the model's dtype)."""
        import inspect

        text = self.render_prompt(prompt, with_image=image is not None)
        images = None if image is None else [image.convert("RGB")]
        try:
            encoded = self.processor(text=[text], images=images, return_tensors="pt")
        except (ValueError, TypeError, KeyError) as exc:
            detail = " ".join(str(exc).split())[:300]
            raise GenerationError(f"{self.spec!r}: the processor could not prepare the input ({detail})") from exc
        accepted = inspect.signature(self.model.forward).parameters
        inputs = {}
        for key, value in encoded.items():
            if key == "token_type_ids" and key not in accepted:
                continue
            if hasattr(value, "to"):
                value = value.to(self.device, dtype=self.model.dtype) if value.is_floating_point() else value.to(self.device)
            inputs[key] = value
        return inputs

    def execute(self, prompt: str, *, params: GenerationParams, image: Image.Image | None,
                on_text: OnText | None) -> str:
        """Answer ``prompt`` looking at ``image`` (when given); returns only the new text."""
        _check(params)
        inputs = self.build_inputs(prompt, image)
        kwargs = _sampling(params, self.model, self.tokenizer)
        kwargs["streamer"] = _streamer(self.tokenizer, on_text)
        n_in = inputs["input_ids"].shape[1]
        output = _run_generate(self, inputs, kwargs, params)
        return self.tokenizer.decode(output[0, n_in:], skip_special_tokens=True).strip()


def _is_vision(transformers: Any, source: str, local_only: bool) -> bool:
    """True when the checkpoint's config belongs to the image-text-to-text family."""
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError, KeyError):
        return False  # the model load below reports the problem
    return type(config) in transformers.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING


@declare(*OPTIONS, requires=("torch", "transformers"), install="pip install 'ravl[hf]'")
def create(spec: Spec) -> HFCausalLMGenerator | HFVisionGenerator:
    """A transformers causal LM or vision-language model from a local folder (or a cached repo id)."""
    if not spec.name:
        raise ConfigError("the hf generator needs a model: 'hf:/path/to/model' or 'hf:Qwen/Qwen2.5-0.5B-Instruct'")
    opts = parse_options(spec, OPTIONS)
    torch, transformers = _imports()
    use_chat, download = opts["chat"], opts["download"]
    device = torch_device(torch, spec, opts["device"])
    dtype = _dtype(torch, opts["dtype"], device)
    local = Path(spec.name).expanduser()
    source = str(local) if local.exists() else spec.name
    local_only = local.exists() or not download
    if local.is_dir() and not (local / "config.json").is_file():
        raise _not_available(spec, source, FileNotFoundError(f"no config.json in {source}"), download)
    vision = _is_vision(transformers, source, local_only)
    try:
        with _quiet_progress(transformers):
            if vision:
                tokenizer = transformers.AutoProcessor.from_pretrained(source, local_files_only=local_only)
                model = transformers.AutoModelForImageTextToText.from_pretrained(
                    source, dtype=dtype, local_files_only=local_only)
            else:
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local_only)
                model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError, KeyError) as exc:
        raise _not_available(spec, source, exc, download) from exc
    model.to(device)
    model.eval()
    use_chat = use_chat and bool(getattr(tokenizer, "chat_template", None))
    if vision:
        return HFVisionGenerator(spec, model, tokenizer, use_chat=use_chat, device=device)
    return HFCausalLMGenerator(spec, model, tokenizer, use_chat=use_chat, device=device)
