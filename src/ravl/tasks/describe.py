"""The describe job every front door shares (``ravl caption``, ``POST /caption``, the MCP
``describe`` tool): caption an image from the captions of its nearest images, with provenance
(the neighbours, the candidate captions and the prompt). The retrieval and prompting live in
:mod:`ravl.rag.caption`; this is the one entry point the doors call."""
from __future__ import annotations

from collections.abc import Iterable

from PIL import Image

from ..collection import Collection
from ..generate.base import GenerationParams, Generator
from ..rag.caption import CaptionResult, caption_image


def describe(collection: Collection, image: Image.Image, *, k: int = 5, generator: str | Generator | None = None,
             params: GenerationParams = GenerationParams(), template: str | None = None,
             exclude_items: Iterable[int] = (), name: str = "") -> CaptionResult:
    """The caption of ``image`` (``result.to_dict()`` is the JSON every door returns)."""
    from ..collection import check_k

    check_k(k)
    return caption_image(collection, image, k=k, generator=generator, params=params, template=template,
                         exclude_items=exclude_items, name=name)
