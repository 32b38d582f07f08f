"""Fit a prompt into a model's context by dropping evidence, never the instructions or question.

A prompt is built from a list of evidence items (retrieved captions, numbered evidence) in
order of relevance. When the generator can count tokens (``count_tokens``) and knows its context
(``context_tokens``), :func:`fit_prompt` keeps the longest leading run of items whose prompt,
plus room for the answer, fits; if even one item is too long, that item's text is shortened.
The caller reports the returned note, so the user knows what the model did not see.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def _limits(generator) -> tuple[int | None, Callable[[str], int] | None]:
    count = getattr(generator, "count_tokens", None)
    try:
        context = getattr(generator, "context_tokens", None)
    except (AttributeError, TypeError):
        context = None
    return (int(context) if context else None), (count if callable(count) else None)


def fit_prompt(generator, build: Callable[[list], str], items: Sequence[T], *, answer_tokens: int,
               shorten: Callable[[T, int], T] | None = None) -> tuple[str, list, str | None]:
    """``(prompt, kept_items, note)``: the prompt from as many leading ``items`` as fit.

    ``build(items)`` makes the prompt; ``shorten(item, n_chars)`` returns the item with its text
    cut to ``n_chars`` characters (used when a single item alone does not fit). ``note`` is None
    when nothing was dropped. Generators that cannot count tokens get every item.
    """
    items = list(items)
    prompt = build(items)
    context, count = _limits(generator)
    if context is None or count is None:
        return prompt, items, None
    budget = max(1, context - max(1, int(answer_tokens)))
    if count(prompt) <= budget:
        return prompt, items, None
    lo, hi = 0, len(items)  # the largest n with build(items[:n]) fitting (0 always "fits" as a floor)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(build(items[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    kept = items[:lo]
    cut_note = ""
    if not kept and items and shorten is not None:
        first = items[0]
        text = str(getattr(first, "text", first))
        lo_c, hi_c = 0, len(text)
        while lo_c < hi_c:
            mid = (lo_c + hi_c + 1) // 2
            if count(build([shorten(first, mid)])) <= budget:
                lo_c = mid
            else:
                hi_c = mid - 1
        if lo_c > 0:
            kept = [shorten(first, lo_c)]
            cut_note = f", and cut the first to {lo_c} of its {len(text)} characters"
    prompt = build(kept)
    note = (f"the prompt was too long for {generator.spec}'s context of {context} tokens (keeping {answer_tokens} "
            f"for the answer): the model saw {len(kept) if not cut_note else 1} of {len(items)} evidence items"
            f"{cut_note}; the rest are still listed")
    return prompt, kept, note
