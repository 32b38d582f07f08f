"""Which generator a command uses when the user names none.

``ravl ask`` answers with the bundled SmolLM2 (``smollm2``) whenever it is installed: without a
language model it can only show the evidence. ``ravl caption`` uses whichever scored higher in
the leave-one-out captioning benchmark on all the Tux Paint stamps (``benchmarks/offline_lm.py``,
figures in docs/generation.md): SmolLM2's best measured prompt, :data:`LM_CAPTION`. Everything
falls back to ``consensus`` when SmolLM2 is not installed.

``ravl serve`` offers the same defaults: the page's "describe" (POST /caption without a
``generator``) uses the caption default, POST /ask the ask default, and ``consensus`` is
loaded too (:func:`server_generators`).
"""
from __future__ import annotations

#: SmolLM2's best measured caption prompt: SmallCap's, continued as plain text
LM_CAPTION = "smollm2?chat=0"
#: the winner of the measured comparison (docs/generation.md, 2026-11-30): on all 562 stamps
#: SmolLM2 scored higher than consensus on every metric (CIDEr-D 0.410 vs 0.345, paired bootstrap
#: interval of the difference +0.010 .. +0.129). On 200 random emoji, whose references are Unicode
#: names rather than sentences, consensus scored higher (CIDEr-D 0.693 vs 0.599).
CAPTION_CHOICE = LM_CAPTION
TASKS = ("caption", "ask", "demo")


def smollm2_installed() -> bool:
    from .smollm2 import is_installed

    return is_installed()


def default_generator(task: str) -> str:
    """The generator spec for ``task`` ('caption', 'ask' or 'demo') on this machine."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}")
    wanted = {"caption": CAPTION_CHOICE, "ask": "smollm2", "demo": "smollm2"}[task]
    if wanted.startswith("smollm2") and not smollm2_installed():
        return "consensus"
    return wanted


def server_generators() -> tuple[str, ...]:
    """What ``ravl serve`` loads when given no ``--generator``: the caption default first (the
    page's "describe"), then the ask default (one shared model), then ``consensus``; just
    ``consensus`` without SmolLM2."""
    specs = [default_generator("caption"), default_generator("ask"), "consensus"]
    return tuple(dict.fromkeys(specs))


def fallback_note() -> str | None:
    """One line for a CLI to log when the language-model defaults fell back to ``consensus``."""
    if smollm2_installed():
        return None
    from .smollm2 import INSTALL_HINT

    return ("the bundled SmolLM2 is not installed, so captions are picked by consensus and answers show only "
            f"the evidence; to have a language model write them: {INSTALL_HINT}")
