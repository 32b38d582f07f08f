"""What the server holds while it runs: the open collection, its encoder behind dynamic batchers,
locked generators, the collection's image roots, and the helpers that turn uploads and paths
into safe images."""
from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..collection import STALE_TMP_SECONDS
from ..errors import ConfigError, InputError
from ..generate.base import GenerationParams, Generator
from ..generate.images.base import ImageGenerator
from ..images import sniff_format
from ..request import SearchRequest, Term
from .batcher import BatchedEncoder, Batcher, Failed
from .errors import NotFoundError, UploadTooLargeError
from .settings import ServerSettings


def safe_name(name: str | None) -> str:
    base = os.path.basename((name or "upload").replace("\\", "/")) or "upload"
    return "".join(c for c in base if c.isprintable())[:100] or "upload"


class LockedGenerator(Generator):
    """One request at a time per generator."""

    def __init__(self, inner: Generator):
        self.inner = inner
        self._lock = threading.Lock()
        self.spec, self.supports_images = inner.spec, inner.supports_images
        self.is_language_model, self.supports_streaming = inner.is_language_model, inner.supports_streaming

    def __getattr__(self, name: str):
        """Everything else (``count_tokens``, ``context_tokens``, ``can_translate``) from the model."""
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def execute(self, prompt: str, *, params: GenerationParams, image, on_text) -> str:
        with self._lock:
            return self.inner.generate(prompt, params=params, image=image, on_text=on_text)


class TextSearch(NamedTuple):
    text: str
    vector: Any  # its (1, dim) vector from the text batcher; None in keyword mode
    options: SearchRequest  # the request's options (hashable; its terms a placeholder)


class ImageSearch(NamedTuple):
    vecs: Any  # ImageVectors of one image from the image batcher
    request: SearchRequest
    exclude: tuple[int, ...]


_PLACEHOLDER = (Term("text", "query"),)


class ServerState:
    """Opened once at start-up (see :meth:`open`) and shared by every request thread."""

    def __init__(self, settings: ServerSettings, collection, generators: Mapping[str, Generator]):
        self.settings = settings
        self.collection = collection
        self.generators = generators
        self.write_lock = threading.Lock()
        self.thumbnail_dir = _thumbnail_dir(settings)
        self.upload_dir = settings.collection / "uploads"
        #: POST /imagine: the image generator (None: answer 503 with the references) and its slots
        self.image_generator: ImageGenerator | None = None
        self.imagine_slots = threading.BoundedSemaphore(settings.imagine_concurrency)
        self.imagine_seconds: list[float] = []
        #: text searches whose vectors are ready, searched a batch at a time (one FAISS call per
        #: batch instead of one per request, in a thread of its own while the next batch encodes:
        #: 1.34x the q/s of encoding and searching in one stage at 16 clients, docs/performance.md);
        #: no extra wait: a batch's vectors arrive together
        self.searches = Batcher(self._search_batch, max_batch=settings.batch_size, wait_ms=0, name="search")
        #: image queries whose vectors are ready: one FAISS call per batch, like text's
        self.image_searches = Batcher(self._image_search_batch, max_batch=settings.batch_size, wait_ms=0,
                                      name="image-search")

    @classmethod
    def open(cls, settings: ServerSettings) -> ServerState:
        """Open the collection, load the encoder and generators, and build the indexes."""
        from ..collection import open_collection
        from ..encoders.base import load_encoder
        from ..generate.base import load_generator

        settings.check()
        from .. import registry

        probe = open_collection(settings.collection, readonly=True)
        spec = settings.encoder or probe.encoder_spec
        probe.close()
        if settings.model_threads:  # a runtime-only option: the vectors (and fingerprint) stay the same
            spec = registry.with_option("encoders", spec, "threads", settings.model_threads)
        inner = load_encoder(spec)
        if settings.model_threads:
            _set_torch_threads(settings.model_threads)
        encoder = BatchedEncoder(inner, max_batch=settings.batch_size, wait_ms=settings.batch_wait_ms)
        readonly = settings.write_mode() == "disabled" and not settings.watch  # a watcher writes
        coll = open_collection(settings.collection, encoder=encoder, readonly=readonly)
        try:
            generators = {s: LockedGenerator(load_generator(s)) for s in settings.generators}
            image_generator = None
            if settings.image_generator:
                from ..generate.images.base import load_image_generator

                image_generator = load_image_generator(settings.image_generator)
            coll.refresh_indexes()
            encoder.warm_up()  # a server is the long run that full model sessions are for
            coll.encoder.encode_texts(["warm-up"])  # first call allocates; do it before the first request
        except BaseException:
            coll.close()
            encoder.close()
            raise
        state = cls(settings, coll, generators)
        state.image_generator = image_generator
        state.clean_leftovers()
        state.image_roots()
        if settings.watch:
            state.start_watch()
        return state

    def start_watch(self) -> None:
        """Follow ``settings.watch`` in a thread (``ravl serve --watch``): each batch is written under
        :attr:`write_lock`, like uploads; searches catch up from the change log."""
        import logging

        from ..ingest.watch import watch_folders

        log = logging.getLogger("ravl")
        self._watch_stop = threading.Event()

        def run() -> None:
            try:
                watch_folders(self.collection, self.settings.watch, stop=self._watch_stop, lock=self.write_lock,
                              on_ready=lambda r: log.warning("ravl serve: watching %s: %s",
                                                             ", ".join(self.settings.watch), r.summary()),
                              on_batch=lambda r: log.warning("ravl serve: %s", r.summary()))
            except Exception as exc:  # the server goes on serving what is indexed
                log.error("ravl serve: watching stopped: %s: %s", type(exc).__name__, exc)

        self._watcher = threading.Thread(target=run, name="ravl-watch", daemon=True)
        self._watcher.start()

    def clean_leftovers(self) -> int:
        """Remove what killed writers left: stale ``*.tmp`` files (index caches, uploads,
        thumbnails) and uploaded files no item refers to. Only files older than
        ``STALE_TMP_SECONDS`` go, so another worker's upload in flight is left alone."""
        removed = self.collection.clean_stale_index_files()
        cutoff = time.time() - STALE_TMP_SECONDS
        known = {os.path.realpath(uri) for uri in self.collection.file_states()}
        for folder in (self.upload_dir, self.thumbnail_dir):
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                try:
                    if path.is_symlink() or not path.is_file() or path.stat().st_mtime >= cutoff:
                        continue
                    orphan = folder == self.upload_dir and os.path.realpath(path) not in known
                    if path.name.endswith(".tmp") or orphan:
                        path.unlink()
                        removed += 1
                except OSError:
                    pass
        return removed

    @property
    def encoder(self) -> BatchedEncoder:
        """The collection's encoder behind the server's batchers (fingerprint checked at open)."""
        return self.collection.base_encoder  # type: ignore[return-value]  # a tuned bridge applies on search

    async def search_text(self, request: SearchRequest) -> list:
        """The hits for a request of one plain text. Two batched stages, each in its own thread, so
        one batch is encoded while the one before it is searched: the text batcher (one model call
        per batch), then the search batcher (one FAISS call per group of requests sharing their
        options)."""
        text = request.simple_text
        assert text is not None, "search_text takes a request of one plain text"
        vector = None if request.mode == "keyword" else await self.encoder.encode_text_async(text)
        return await self.searches.run(TextSearch(text, vector, replace(request, terms=_PLACEHOLDER)))

    def _search_batch(self, requests: list[TextSearch]) -> list:
        """One store call per group of requests that share their options; an error reaches only
        its group's requests."""
        out: list = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.options, request.vector is None), []).append(i)
        for (options, keyword_only), rows in groups.items():
            vectors = None if keyword_only else np.vstack([requests[i].vector for i in rows])
            try:
                hits = self.collection.search_text_vectors([requests[i].text for i in rows], vectors, options)
            except Exception as exc:
                hits = [Failed(exc)] * len(rows)
            for i, found in zip(rows, hits):
                out[i] = found
        return out

    async def search_image(self, vecs, request: SearchRequest, exclude: tuple[int, ...] = ()) -> list:
        """The hits for a request of one image whose base-encoder vectors are ready, searched in a
        batch with the other image queries waiting (one index call per group sharing options)."""
        return await self.image_searches.run(ImageSearch(vecs, request, tuple(exclude)))

    def _image_search_batch(self, requests: list[ImageSearch]) -> list:
        out: list = [None] * len(requests)
        groups: dict[SearchRequest, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.request, []).append(i)
        for request, rows in groups.items():
            try:
                images = [[requests[i].vecs] for i in rows]
                vectors = [None if request.single_image and request.target == "images"
                           else self.collection.query_vector(request, None, imgs) for imgs in images]
                hits = self.collection.search_batch([request] * len(rows), vectors, images=images,
                                                    exclude_each=[requests[i].exclude for i in rows])
            except Exception as exc:
                hits = [Failed(exc)] * len(rows)
            for i, found in zip(rows, hits):
                out[i] = found
        return out

    def close(self) -> None:
        self.image_searches.close()
        if getattr(self, "_watcher", None) is not None:
            self._watch_stop.set()
            self._watcher.join(timeout=30)
        encoder = self.collection.base_encoder  # loaded at open: no model load here
        self.searches.close()
        self.collection.close()
        if isinstance(encoder, BatchedEncoder):
            encoder.close()

    # --- generators ---------------------------------------------------------------------------
    def generator(self, spec: str | None, task: str = "caption") -> Generator:
        """The loaded generator ``spec``. Without one: the first loaded (POST /caption, the page's
        "describe"); for ``task="ask"`` the CLI's ask default (SmolLM2 in chat form) when this server
        loaded it, since consensus can only show the evidence."""
        spec = (spec or "").strip()
        if not spec:
            spec = self.settings.generators[0]
            if task == "ask":
                from ..generate.defaults import default_generator

                wanted = default_generator("ask")
                spec = wanted if wanted in self.generators else spec
        if spec not in self.generators:
            raise ConfigError(f"generator {spec!r} is not loaded by this server; choose one of "
                              f"{', '.join(self.generators)} (start the server with --generator SPEC to add one)")
        return self.generators[spec]

    # --- files --------------------------------------------------------------------------------
    def image_roots(self) -> tuple[Path, ...]:
        """The folders the collection's items live in (smallest covering set), per db generation."""
        return self.collection.image_roots()

    def allowed_file(self, path: str) -> Path:
        """An existing file inside the image roots, symlinks resolved; anything else is a 404."""
        missing = NotFoundError("no image at that path inside the collection's image roots; upload the file instead")
        try:
            p = Path(path).expanduser()
            if not p.is_absolute() or "\x00" in path:
                raise missing
            real = p.resolve()
            inside = any(real.is_relative_to(root) for root in self.image_roots())
            if not inside or not real.is_file():
                raise missing
        except (OSError, ValueError, RuntimeError):
            raise missing from None
        return real

    def item_file(self, item_id: int) -> Path:
        row = self.collection.get_item(item_id)
        try:
            return self.allowed_file(row.uri)
        except NotFoundError:
            raise NotFoundError(f"the image file of item {item_id} is not available on the server; "
                                "re-index the collection if it moved") from None

    def thumbnail(self, item_id: int) -> Path:
        """A cached JPEG no larger than ``thumbnail_size`` on each side, made on first request."""
        from ..images import decode_image, read_file

        row = self.collection.get_item(item_id)
        size = self.settings.thumbnail_size
        target = self.thumbnail_dir / row.sha256[:2] / f"{row.sha256}-{size}.jpg"
        if target.is_file():
            return target
        src = self.item_file(item_id)
        img, _, _ = decode_image(read_file(src), min_side=size, name=f"item {item_id}")
        img.thumbnail((size, size))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        img.save(tmp, format="JPEG", quality=85)
        os.replace(tmp, target)
        return target

    # --- uploads ------------------------------------------------------------------------------
    def read_upload(self, upload, *, field: str = "image") -> tuple[bytes, str]:
        """(bytes, safe file name) of an UploadFile, refusing empty and oversize files."""
        if upload is None:
            raise InputError(f"no file in form field '{field}'; send multipart/form-data with {field}=@photo.jpg")
        cap = self.settings.max_upload_bytes
        data = upload.file.read(cap + 1)
        name = safe_name(upload.filename)
        if len(data) > cap:
            raise UploadTooLargeError(f"{name}: over the {cap / 2**20:.1f} MiB upload limit; send a smaller image")
        if not data:
            raise InputError(f"{name}: empty upload; send an image file")
        return data, name

    def decode_upload(self, data: bytes, name: str):
        """Bytes -> RGB PIL image, only for real images (content sniffed, bomb guard applied)."""
        from ..images import decode_image

        sniff_format(data, name)
        image, _, _ = decode_image(data, min_side=self.collection.encoder.image_size_hint, name=name)
        return image

    def save_upload(self, data: bytes, name: str) -> Path:
        """Store an uploaded image content-addressed under ``<collection>/uploads``."""
        ext = sniff_format(data, name)
        sha = hashlib.sha256(data).hexdigest()
        path = self.upload_dir / sha[:2] / f"{sha}.{ext}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return path.resolve()


def _set_torch_threads(n: int) -> None:
    """For torch-based encoders (loaded by now); never imports torch for onnxruntime ones."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def _thumbnail_dir(settings: ServerSettings) -> Path:
    if settings.thumbnail_dir is not None:
        return settings.thumbnail_dir
    inside = settings.collection / "thumbnails"
    if os.access(settings.collection, os.W_OK) or os.access(inside, os.W_OK):
        return inside
    from ..config import cache_dir

    return cache_dir("thumbnails", hashlib.sha256(str(settings.collection).encode()).hexdigest()[:16])

