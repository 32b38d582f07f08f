"""The generator contract: a prompt (and optionally the image) in, text out.

Backends state what they can do with class attributes (``supports_images``). The retrieval side
(:mod:`ravl.rag`) builds prompts with :mod:`ravl.generate.prompts` and always keeps the evidence,
so a backend never needs to know about collections.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 48
    temperature: float = 0.0  # 0 means greedy decoding
    seed: int | None = None
    #: generation ends at the first of these strings (not included); backends that cannot stop
    #: early may ignore it, so callers still cut the text themselves
    stop: tuple[str, ...] = ()


class Generator(ABC):
    #: canonical spec string, reported with every output
    spec: str
    #: True when :meth:`generate` looks at ``image`` (vision-language models)
    supports_images: bool = False
    #: False for the no-model ``consensus`` backend, which selects rather than writes
    is_language_model: bool = True
    #: True when :meth:`generate` accepts ``on_text=callback`` and streams chunks to it
    supports_streaming: bool = False
    #: False for models too small to translate (``ravl read --translate-to`` refuses them unless forced)
    can_translate: bool = True

    @abstractmethod
    def generate(self, prompt: str, *, params: GenerationParams = GenerationParams(),
                 image: Image.Image | None = None) -> str:
        """Return the model's continuation/answer for ``prompt`` (stripped of the prompt)."""


def load_generator(spec: str = "consensus") -> Generator:
    from .. import registry

    return registry.create("generators", spec)
