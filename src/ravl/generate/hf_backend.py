"""``hf:<repo-id-or-local-path>``: a transformers causal language model, run in-process.

Options (``hf:/models/tiny?dtype=float32&device=cpu``):

* ``chat=0`` — do not wrap the prompt in the tokenizer's chat template (used by default when
  the tokenizer has one);
* ``dtype`` — ``float32`` (default on CPU), ``bfloat16``, ``float16`` or ``auto`` (the
  checkpoint's own, default on CUDA);
* ``device`` — ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available);
* ``download=1`` — allow fetching a repo id from the Hugging Face Hub; by default ravl only
  uses models already on disk (a local folder or the Hugging Face cache).

The model and tokenizer load once, when the generator is created.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from PIL import Image

from ..errors import ConfigError, GenerationError, MissingDependencyError, ModelNotAvailableError
from ..specs import Spec
from .base import GenerationParams, Generator

_OPTIONS = ("chat", "dtype", "device", "download")
_DTYPES = ("auto", "float32", "float16", "bfloat16")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(spec: Spec, key: str, default: bool) -> bool:
    value = spec.opts.get(key)
    if value is None or value == "":
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"option {key}={value!r} in {str(spec)!r} must be 1 or 0")


def _imports() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"the 'hf' generator needs torch and transformers ({exc.name} is missing); "
            "install them with: pip install torch transformers (use -c constraints.txt in a ravl checkout)"
        ) from exc
    return torch, transformers


def _device(torch: Any, spec: Spec) -> str:
    device = spec.opts.get("device") or "cpu"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{str(spec)!r} asks for device={device} but CUDA is not available; use device=cpu")
    if device != "cpu" and not device.startswith(("cuda", "mps", "xpu")):
        raise ConfigError(f"unknown device {device!r} in {str(spec)!r}; use cpu, cuda, cuda:N or auto")
    return device


def _dtype(torch: Any, spec: Spec, device: str) -> Any:
    name = spec.opts.get("dtype") or ("float32" if device == "cpu" else "auto")
    if name not in _DTYPES:
        raise ConfigError(f"unknown dtype {name!r} in {str(spec)!r}; choose one of {', '.join(_DTYPES)}")
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
    exc = " ".join(str(exc).split())[:300]  # one line, as the CLI prints it
    if Path(source).expanduser().exists():
        return ModelNotAvailableError(
            f"{str(spec)!r}: {source!r} is not a loadable causal language model folder ({exc}); "
            "point it at a folder written by save_pretrained (config.json, weights and tokenizer files)"
        )
    if download:
        return ModelNotAvailableError(
            f"{str(spec)!r}: model {source!r} could not be loaded or downloaded ({exc}); check the repo id "
            "and the network (HF_HUB_OFFLINE must be unset), or use a local folder 'hf:/path/to/model'"
        )
    return ModelNotAvailableError(
        f"{str(spec)!r}: model {source!r} is not on this machine and ravl does not download by "
        "default; use a local folder such as 'hf:/path/to/model' (written by save_pretrained or "
        f"'hf download {source} --local-dir DIR'), or allow the download with 'hf:{source}?download=1'"
    )


class HFCausalLMGenerator(Generator):
    """A transformers ``AutoModelForCausalLM`` with its tokenizer; text in, new text out."""

    supports_images = False
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

    def _encode(self, prompt: str) -> Any:
        if self.use_chat:  # the template already holds any BOS/special tokens it wants
            return self.tokenizer(self.render_prompt(prompt), return_tensors="pt", add_special_tokens=False)
        return self.tokenizer(prompt, return_tensors="pt")

    @staticmethod
    def _ids(value: Any) -> Optional[int]:
        if isinstance(value, (list, tuple)):
            return value[0] if value else None
        return value

    def generate(self, prompt: str, *, params: GenerationParams = GenerationParams(),
                 image: Optional[Image.Image] = None) -> str:
        """Continue ``prompt`` (wrapped in the chat template when used); returns only the new text."""
        import torch

        if params.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, not {params.max_tokens}")
        if params.temperature < 0:
            raise ConfigError(f"temperature must be 0 (greedy) or positive, not {params.temperature}")
        encoded = self._encode(prompt)
        # Only what every causal LM accepts (a BERT-style tokenizer also returns token_type_ids).
        inputs = {key: encoded[key].to(self.device) for key in ("input_ids", "attention_mask") if key in encoded}
        kwargs: dict[str, Any] = {"max_new_tokens": int(params.max_tokens)}
        if params.temperature == 0:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=float(params.temperature))
        gen_config = self.model.generation_config
        if gen_config.pad_token_id is None and self.tokenizer.pad_token_id is None:
            kwargs["pad_token_id"] = self._ids(gen_config.eos_token_id)
        n_in = inputs["input_ids"].shape[1]
        with self._lock:
            try:
                if params.seed is not None and params.temperature != 0:
                    devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
                    with torch.random.fork_rng(devices=devices):  # repeatable, global RNG untouched
                        torch.manual_seed(int(params.seed))
                        output = self.model.generate(**inputs, **kwargs)
                else:
                    output = self.model.generate(**inputs, **kwargs)
            except (RuntimeError, ValueError, IndexError) as exc:
                detail = " ".join(str(exc).split())[:300]
                raise GenerationError(
                    f"{self.spec!r} failed to generate ({detail}); try a shorter prompt or fewer max_tokens"
                ) from exc
        return self.tokenizer.decode(output[0, n_in:], skip_special_tokens=True).strip()


def create(spec: Spec) -> HFCausalLMGenerator:
    """Load the tokenizer and causal LM named by ``spec`` (a local folder or a cached repo id)."""
    if not spec.name:
        raise ConfigError("the hf generator needs a model: 'hf:/path/to/model' or 'hf:Qwen/Qwen2.5-0.5B-Instruct'")
    unknown = sorted(set(spec.opts) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} in {str(spec)!r}; known: {', '.join(_OPTIONS)}")
    torch, transformers = _imports()
    use_chat = _flag(spec, "chat", True)
    download = _flag(spec, "download", False)
    device = _device(torch, spec)
    dtype = _dtype(torch, spec, device)
    local = Path(spec.name).expanduser()
    source = str(local) if local.exists() else spec.name
    local_only = local.exists() or not download
    if local.is_dir() and not (local / "config.json").is_file():
        raise _not_available(spec, source, FileNotFoundError(f"no config.json in {source}"), download)
    try:
        with _quiet_progress(transformers):
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError, KeyError) as exc:
        raise _not_available(spec, source, exc, download) from exc
    model.to(device)
    model.eval()
    use_chat = use_chat and bool(getattr(tokenizer, "chat_template", None))
    return HFCausalLMGenerator(spec, model, tokenizer, use_chat=use_chat, device=device)
