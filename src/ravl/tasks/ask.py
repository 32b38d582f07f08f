"""The ask job every front door shares (``ravl ask``, ``POST /ask``, the MCP ``ask`` tool): a
question about an image answered from numbered evidence (neighbours' captions, class labels, text
read from the image), citing it; without a language model the evidence alone. The evidence and
prompting live in :mod:`ravl.rag.ask`; this is the one entry point the doors call."""
from __future__ import annotations

from collections.abc import Iterable

from PIL import Image

from ..collection import Collection
from ..errors import InputError
from ..generate.base import Generator, OnText
from ..rag.ask import AskOptions, AskResult, ask_image

MAX_QUESTION_CHARS = 2000


def ask(collection: Collection, image: Image.Image, question: str, *, generator: str | Generator | None = None,
        options: AskOptions | None = None, exclude_items: Iterable[int] = (), name: str = "",
        on_text: OnText | None = None) -> AskResult:
    """The answer with its evidence (``result.to_dict()`` is the JSON every door returns)."""
    from ..collection import check_k

    if isinstance(question, str) and len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"the question is {len(question)} characters long; keep it under {MAX_QUESTION_CHARS}")
    options = options or AskOptions()
    check_k(options.k)
    return ask_image(collection, image, question, generator=generator, options=options,
                     exclude_items=exclude_items, name=name, on_text=on_text)
