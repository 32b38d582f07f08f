"""Prompt building: pure functions from retrieved evidence (plain data) to prompt text.

Two prompts, each with a default template that a file can replace (:func:`load_template`):

* the caption prompt, worded as SmallCap does (Ramos et al., CVPR 2023; the template file
  ``src/template.txt`` and ``prep_strings`` in github.com/RitaRamo/smallcap): "Similar images
  show", the retrieved captions separated by blank lines with a full stop after the last, then
  "This image shows" for the model to continue;
* the question prompt: numbered evidence (retrieved captions, the image's nearest labels, text
  read from the image) and the question; the model is asked to answer briefly, cite evidence
  numbers like ``[1]`` and say when the evidence does not support an answer.

Templates use ``{captions}``, ``{question}`` and ``{evidence}`` placeholders, substituted in one
pass (no ``str.format``), so any other braces in a template or in the evidence are left alone.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InputError

#: SmallCap's template (``Similar images show\n\n||\n\nThis image shows``) with ``||`` renamed;
#: SmallCap ends it with a space, dropped here because most tokenizers fold the space into the
#: next word, so a trailing one leaves the model to continue from an unusual token.
CAPTION_TEMPLATE = "Similar images show\n\n{captions}\n\nThis image shows"

QUESTION_TEMPLATE = (
    "Answer a question about an image using only the numbered evidence below. The evidence was "
    "found automatically and may be incomplete or wrong.\n"
    "\n"
    "Evidence:\n"
    "{evidence}\n"
    "\n"
    "Question: {question}\n"
    "\n"
    "Answer in one or two short sentences and cite the evidence numbers you used, like [1]. "
    "If the evidence does not support an answer, say that you cannot tell from the evidence.\n"
    "Answer:"
)

EVIDENCE_KINDS = ("caption", "label", "ocr")
_KIND_WORDING = {
    "caption": "caption of a similar image",
    "label": "label for this image",
    "ocr": "text read from this image",
}
_REQUIRED = {"caption": ("captions",), "question": ("question", "evidence")}
_PLACEHOLDER = re.compile(r"\{(captions|question|evidence)\}")


@dataclass(frozen=True)
class Evidence:
    """One numbered piece of evidence; ``item_id``/``uri`` are provenance, not prompt text."""

    kind: str  # 'caption' | 'label' | 'ocr'
    text: str
    score: float | None = None
    item_id: int | None = None
    uri: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVIDENCE_KINDS:
            raise InputError(f"evidence kind {self.kind!r} is not one of {', '.join(EVIDENCE_KINDS)}")
        if not isinstance(self.text, str):
            raise InputError(f"evidence text must be a string, not {type(self.text).__name__}")


def _one_line(text: str) -> str:
    """Collapse runs of whitespace (newlines included) to single spaces."""
    return " ".join(text.split())


def _missing(template: str, kind: str) -> list[str]:
    return [name for name in _REQUIRED[kind] if "{" + name + "}" not in template]


def check_template(template: str, kind: str) -> str:
    """Return ``template`` if it has every placeholder ``kind`` needs, else raise ConfigError."""
    if kind not in _REQUIRED:
        raise ConfigError(f"template kind must be 'caption' or 'question', not {kind!r}")
    if not isinstance(template, str):
        raise ConfigError(f"a {kind} template must be text, not {type(template).__name__}")
    missing = _missing(template, kind)
    if missing:
        needed = " and ".join("{" + name + "}" for name in _REQUIRED[kind])
        raise ConfigError(
            f"the {kind} prompt template lacks the {', '.join('{' + m + '}' for m in missing)} "
            f"placeholder; a {kind} template must contain {needed}"
        )
    return template


def load_template(path: str | Path, kind: str | None = None) -> str:
    """Read a prompt template file (UTF-8) and check its placeholders.

    ``kind`` is ``'caption'`` or ``'question'``; when omitted it is inferred: a template that
    mentions ``{question}`` or ``{evidence}`` is a question template, any other a caption
    template. Trailing whitespace is removed. Raises :class:`ConfigError` naming the missing
    placeholder, or when the file cannot be read.
    """
    path = Path(path).expanduser()
    from ..inputs import read_text

    text = read_text(path, "prompt template", error=ConfigError).rstrip()
    if kind is None:
        kind = "question" if ("{question}" in text or "{evidence}" in text) else "caption"
    try:
        return check_template(text, kind)
    except ConfigError as exc:
        raise ConfigError(f"prompt template {str(path)!r}: {exc}") from None


def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def format_captions(captions: Sequence[str]) -> str:
    """SmallCap's infix: captions joined by blank lines, a full stop after the last."""
    cleaned = [_one_line(c) for c in captions if isinstance(c, str) and c.strip()]
    if not cleaned:
        return ""
    text = "\n\n".join(cleaned)
    return text if text.endswith((".", "!", "?")) else text + "."


def caption_prompt(captions: Sequence[str], template: str | None = None) -> str:
    """The SmallCap-style prompt for the retrieved ``captions`` (in retrieval order).

    Each caption is put on one line; the caller decides how many (SmallCap uses k=4).
    Raises :class:`InputError` when no caption has any text.
    """
    if isinstance(captions, str):
        raise InputError("caption_prompt takes a list of captions, not one string")
    infix = format_captions(captions)
    if not infix:
        raise InputError(
            "no retrieved captions to build a caption prompt from; index a source that has "
            "captions (COCO, Karpathy or a manifest) or use the 'consensus' generator"
        )
    template = check_template(CAPTION_TEMPLATE if template is None else template, "caption")
    return _fill(template, {"captions": infix})


def format_evidence(evidence: Iterable[Evidence]) -> str:
    """Numbered evidence lines: ``[n] <what it is> (score 0.83): <text>``."""
    lines = []
    for number, item in enumerate(evidence, start=1):
        if not isinstance(item, Evidence):
            raise InputError(f"evidence items must be Evidence objects, not {type(item).__name__}")
        head = f"[{number}] {_KIND_WORDING[item.kind]}"
        if item.score is not None:
            head += f" (score {float(item.score):.2f})"
        text = _one_line(item.text)
        lines.append(f'{head}: "{text}"' if item.kind == "ocr" else f"{head}: {text}")
    return "\n".join(lines) if lines else "(no evidence was found)"


def question_prompt(question: str, evidence: Sequence[Evidence], template: str | None = None) -> str:
    """The grounded question-answer prompt; evidence is numbered from 1 in the order given."""
    if not isinstance(question, str) or not question.strip():
        raise InputError("the question is empty; ask something about the image, e.g. 'What is shown?'")
    template = check_template(QUESTION_TEMPLATE if template is None else template, "question")
    return _fill(template, {"question": _one_line(question), "evidence": format_evidence(evidence)})
