"""Translation through a language model (``openai:``, ``hf:``, ``llamacpp:``): the lines are
numbered in one prompt and the numbered answer is split back into lines."""
from __future__ import annotations

import re
from collections.abc import Sequence

from ...errors import ConfigError, GenerationError
from ..base import GenerationParams, Generator

TRANSLATE_TEMPLATE = (
    "Translate each numbered line of text, read from an image, into {language}. Answer with one "
    "line per input line, numbered the same way (\"1. ...\"), and nothing else. Copy names, numbers "
    "and lines already in {language} unchanged.\n"
    "\n"
    "{lines}\n"
    "\n"
    "Translation:"
)
_NUMBERED = re.compile(r"^\s*\[?(\d+)\s*[\].:)\-]\s*(.*?)\s*$")
#: spec families known to be too small to translate (checked before loading them)
NO_TRANSLATION_FAMILIES = ("smollm2",)


def translate_prompt(texts: Sequence[str], target_lang: str) -> str:
    """The prompt asking a language model to translate numbered ``texts`` into ``target_lang``."""
    if not target_lang or not target_lang.strip():
        raise ConfigError("name the language to translate into, e.g. --translate-to English")
    numbered = "\n".join(f"{i}. {' '.join(t.split())}" for i, t in enumerate(texts, start=1))
    values = {"language": " ".join(target_lang.split()), "lines": numbered}
    return re.sub(r"\{(language|lines)\}", lambda m: values[m.group(1)], TRANSLATE_TEMPLATE)


def parse_translation(answer: str, n: int) -> list[str | None]:
    """Split a numbered answer into ``n`` translations (None where a number is missing).

    A single line of text translating a single input line needs no number.
    """
    out: list[str | None] = [None] * n
    plain = []
    for raw in answer.splitlines():
        match = _NUMBERED.match(raw)
        if match and 1 <= int(match.group(1)) <= n:
            out[int(match.group(1)) - 1] = match.group(2)
        elif raw.strip():
            plain.append(raw.strip())
    if n == 1 and out[0] is None and plain:
        out[0] = " ".join(plain)
    return out


def check_can_translate(generator: Generator | str, *, force: bool = False) -> None:
    """Raise :class:`ConfigError` for a model that declares it cannot translate, unless ``force``."""
    if force:
        return
    if isinstance(generator, str):
        from ...specs import parse_spec

        refused = parse_spec(generator).family in NO_TRANSLATION_FAMILIES
        name = generator
    else:
        refused = not getattr(generator, "can_translate", True)
        name = generator.spec
    if refused:
        raise ConfigError(
            f"{name!r} is too small to translate (SmolLM2-135M turned '停车', 'stop', into nonsense; see "
            "docs/generation.md); use a larger model, e.g. --generator 'openai:llama3.2?base_url="
            "http://localhost:11434/v1', or pass --force to try anyway")


def translate_lines(lines: Sequence, target_lang: str, generator: Generator, *,
                    params: GenerationParams | None = None) -> list[str | None]:
    """Translate each line (a string or anything with ``.text``) through ``generator``; one model
    call for all lines. Returns one translation per line (None where the model's answer skipped a
    line). Raises :class:`GenerationError` when the generator is not a language model or fails."""
    texts = [str(getattr(line, "text", line)) for line in lines]
    if not texts:
        return []
    if not getattr(generator, "is_language_model", True):
        raise GenerationError(f"translation needs a language model, and {generator.spec!r} is not one; pass "
                              "--generator (e.g. 'openai:llama3.2?base_url=http://localhost:11434/v1')")
    if params is None:
        params = GenerationParams(max_tokens=min(1024, 32 + 3 * sum(len(t.split()) + 2 for t in texts)))
    answer = generator.generate(translate_prompt(texts, target_lang), params=params)
    return parse_translation(answer, len(texts))
