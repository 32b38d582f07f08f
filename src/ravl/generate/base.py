"""The generator contract: a prompt (and optionally the image) in, text out.

Callers use :meth:`Generator.generate`; a backend implements :meth:`Generator.execute`. The base
class gives every backend the same behaviour around it:

* ``on_text`` is part of the contract: a backend that can stream (``supports_streaming``) passes
  pieces to it as they are produced; for one that cannot, ``generate`` calls it once with the
  whole text.
* One error family reaches callers: :class:`~ravl.errors.GenerationError` and its subclasses.
  Backends map their library's exceptions inside ``execute`` (see :func:`generation_errors`, the
  httpx-style mapping the base applies as a last line too).

Backends state what they can do with class attributes (``supports_images``,
``supports_streaming``). The retrieval side (:mod:`ravl.rag`) builds prompts with
:mod:`ravl.generate.prompts` and always keeps the evidence, so a backend never needs to know about
collections.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from ..errors import GenerationError, GenerationTimeoutError, GeneratorUnreachableError
from ..specs import Spec

OnText = Callable[[str], None]


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 48
    temperature: float = 0.0  # 0 means greedy decoding
    seed: int | None = None
    #: generation ends at the first of these strings (not included); backends that cannot stop
    #: early may ignore it, so callers still cut the text themselves
    stop: tuple[str, ...] = ()


@contextmanager
def generation_errors(spec: str) -> Iterator[None]:
    """Map the exceptions a model library or transport raises onto :class:`GenerationError`'s family
    (``GenerationError`` and every other :class:`~ravl.errors.RavlError` pass through unchanged)."""
    try:
        yield
    except GenerationError:
        raise
    except TimeoutError as exc:
        raise GenerationTimeoutError(f"{spec!r} did not answer in time ({exc}); ask for fewer tokens or raise "
                                     "the backend's timeout") from exc
    except ConnectionError as exc:
        raise GeneratorUnreachableError(f"{spec!r}: the connection to the model failed ({exc}); is it running?") from exc
    except (OSError, RuntimeError, MemoryError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise GenerationError(f"{spec!r} failed to generate ({detail}); try a shorter prompt or fewer max_tokens") from exc


class Generator(ABC):
    #: canonical spec string, reported with every output
    spec: str
    #: True when :meth:`execute` looks at ``image`` (vision-language models)
    supports_images: bool = False
    #: False for the no-model ``consensus`` backend, which selects rather than writes
    is_language_model: bool = True
    #: True when :meth:`execute` passes pieces of text to ``on_text`` as they are produced
    supports_streaming: bool = False
    #: False for models too small to translate (``ravl read --translate-to`` refuses them unless forced)
    can_translate: bool = True
    #: how ``ravl ask`` checks this model's answers against the evidence (:mod:`ravl.rag.grounding`):
    #: "keywords" (its nouns must be supported) or "strict" (every content word; small models)
    grounding: str = "keywords"

    def generate(self, prompt: str, *, params: GenerationParams = GenerationParams(),
                 image: Image.Image | None = None, on_text: OnText | None = None) -> str:
        """The model's answer to ``prompt`` (stripped of the prompt). ``image`` is seen only by
        backends that ``supports_images``. ``on_text`` receives the answer as it is produced (once,
        whole, from a backend that cannot stream). Failures raise :class:`GenerationError`."""
        with generation_errors(self.spec):
            text = self.execute(prompt, params=params, image=image,
                                on_text=on_text if self.supports_streaming else None)
        if on_text is not None and not self.supports_streaming and text:
            on_text(text)
        return text

    @abstractmethod
    def execute(self, prompt: str, *, params: GenerationParams, image: Image.Image | None,
                on_text: OnText | None) -> str:
        """Backend hook behind :meth:`generate`: return the new text; when ``on_text`` is given
        (only to backends that ``supports_streaming``) pass it each piece as it is produced."""


def load_generator(spec: str | Spec | Generator = "consensus") -> Generator:
    """The generator named by ``spec`` (a spec string or parsed spec); a :class:`Generator` instance
    is returned as it is, so callers can take either."""
    if isinstance(spec, Generator):
        return spec
    from .. import registry

    return registry.create("generators", spec)
