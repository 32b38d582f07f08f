"""Grounded questions about an image: retrieve evidence -> numbered prompt -> language model.

Evidence (:mod:`.evidence`) is, in this order: one caption from each of the ``k`` nearest captioned
images (the one that best agrees with the other candidates), the image's nearest class labels when
the encoder can name them, and text read from the image. The answer comes back with that evidence,
the prompt and the generator spec; without a language model (``consensus``), or when the model fails
or times out, the evidence still comes back, with an honest answer or the error.

Every answer a model writes is checked against the evidence (:mod:`.grounding`): repeated lines
are cut, and an answer whose words no evidence supports is replaced by an honest fallback ("I can't
tell from the evidence; the closest matches are ... [1] and ... [6].") with ``grounded: false``,
the model's own text in ``model_answer`` and a note naming the unsupported words. The bundled
SmolLM2 is checked strictly (every content word), other models on their nouns.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from PIL import Image

from ..collection import Collection, ImageHit
from ..errors import ConfigError, GenerationError
from ..generate.base import GenerationParams, Generator, OnText, load_generator
from ..generate.fit import fit_prompt
from ..generate.prompts import Evidence, question_prompt
from .evidence import caption_evidence, label_evidence, ocr_evidence
from .grounding import KEYWORDS, MODES, OFF, check_answer, covering_citations, fallback_answer

NO_MODEL_ANSWER = (
    "I cannot answer without a language model. The evidence below is what retrieval found; pass a "
    "generator to get an answer, e.g. --generator 'openai:llama3.2?base_url=http://localhost:11434/v1' "
    "or --generator hf:/path/to/model."
)
#: answers are longer than captions: 128 new tokens unless asked otherwise
ASK_PARAMS = GenerationParams(max_tokens=128)
_CITATION = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class AskOptions:
    """How :func:`ask_image` gathers evidence and asks the model.

    ``k``: neighbour images to retrieve. ``labels``: class labels to add when the encoder can name
    classes (0 for none). ``ocr``: True reads text in the image (an error if no OCR engine is
    installed), False never, None (default) when an engine is installed; ``ocr_lang`` is the
    Tesseract language. ``template`` replaces the question prompt (see :mod:`ravl.generate.prompts`).
    """

    k: int = 5
    params: GenerationParams = ASK_PARAMS
    labels: int = 3
    ocr: bool | None = None
    ocr_lang: str = "eng"
    template: str | None = None
    #: "auto" (strict for models that declare ``grounding = "strict"``, the bundled SmolLM2; else
    #: "keywords"), "strict", "keywords" or "off" (see :mod:`.grounding`)
    grounding: str = "auto"


@dataclass
class AskResult:
    question: str
    answer: str
    method: str  # "generator" | "no-model" | "failed"
    generator: str
    evidence: list[dict]  # number, kind, text, score, item_id, uri (+ lines for ocr)
    prompt: str | None = None
    citations: list[int] = field(default_factory=list)  # evidence numbers the answer cites
    neighbours: list[ImageHit] = field(default_factory=list)
    image: str = ""
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    #: True: every checked word of the answer is supported by the evidence it cites; False: the model's
    #: answer was not, and ``answer`` is the fallback; None: no model answer was checked
    grounded: bool | None = None
    model_answer: str | None = None  # what the model wrote, when the answer shown is not it
    grounding: str = ""  # the check's mode

    def to_dict(self) -> dict:
        return {"image": self.image, "question": self.question, "answer": self.answer, "method": self.method,
                "generator": self.generator, "grounded": self.grounded, "grounding": self.grounding,
                "model_answer": self.model_answer, "citations": self.citations, "evidence": self.evidence,
                "prompt": self.prompt, "neighbours": [n.to_dict() for n in self.neighbours],
                "error": self.error, "notes": self.notes, "seconds": self.seconds}


def _evidence_dicts(evidence: list[Evidence], ocr_lines: list) -> list[dict]:
    out = []
    for number, item in enumerate(evidence, start=1):
        d = {"number": number, "kind": item.kind, "text": item.text,
             "score": None if item.score is None else round(float(item.score), 6),
             "item_id": item.item_id, "uri": item.uri}
        if item.kind == "ocr":
            d["lines"] = [line.to_dict() for line in ocr_lines]
        out.append(d)
    return out


def citations(answer: str, n_evidence: int) -> list[int]:
    """Evidence numbers cited as ``[n]`` in ``answer`` that exist, in order of first citation."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        number = int(match.group(1))
        if 1 <= number <= n_evidence and number not in seen:
            seen.append(number)
    return seen


def ask_image(collection: Collection, image: Image.Image, question: str, *,
              generator: str | Generator | None = None, options: AskOptions = AskOptions(),
              exclude_items: Iterable[int] = (), name: str = "", on_text: OnText | None = None) -> AskResult:
    """Answer ``question`` about ``image`` from evidence retrieved from ``collection``.

    ``options`` (:class:`AskOptions`) says how much evidence to gather and how to generate.
    ``exclude_items`` are left out of the neighbours; ``name`` is reported as the image.
    ``on_text`` receives the answer as it is produced (whole, from generators that cannot stream).
    The model sees the image too when it ``supports_images``.
    """
    timing: dict[str, float] = {}
    gen = load_generator("consensus" if generator is None else generator)
    _grounding_mode(options.grounding, gen)  # a bad mode fails before any work
    question_prompt(question, [], options.template)  # fail early on an empty question or a bad template
    t = time.perf_counter()
    neighbours = collection.search_image([image], target="images", k=options.k, exclude_items=exclude_items)[0]
    evidence = caption_evidence(collection, neighbours)
    timing["retrieve"] = time.perf_counter() - t
    t = time.perf_counter()
    evidence += label_evidence(collection.encoder, image, options.labels)
    timing["labels"] = time.perf_counter() - t
    ocr_lines: list = []
    notes: list[str] = []
    if options.ocr is not False:
        t = time.perf_counter()
        found, ocr_lines, notes = ocr_evidence(image, options.ocr, options.ocr_lang)
        evidence += found
        timing["ocr"] = time.perf_counter() - t
    if gen.is_language_model:  # drop the least relevant evidence when the prompt would not fit
        prompt, seen, note = fit_prompt(gen, lambda ev: question_prompt(question, ev, options.template), evidence,
                                        answer_tokens=options.params.max_tokens,
                                        shorten=lambda ev, n: replace(ev, text=ev.text[:n]))
        if note:
            notes.append(note)
        n_seen = len(seen)
    else:
        prompt, n_seen = question_prompt(question, evidence, options.template), len(evidence)
    result = AskResult(question, "", "no-model", gen.spec, _evidence_dicts(evidence, ocr_lines), prompt,
                       neighbours=neighbours, image=name, notes=notes, seconds=timing)
    if not evidence:
        notes.append("no evidence was found: the nearest images have no captions and no text was read")
    if not gen.is_language_model:
        result.answer = NO_MODEL_ANSWER
        return _done(result, timing)
    t = time.perf_counter()
    try:
        answer = gen.generate(prompt, params=options.params, image=image if gen.supports_images else None,
                              on_text=on_text)
    except GenerationError as exc:
        result.method, result.error = "failed", f"generator {gen.spec} failed, evidence returned without an answer: {exc}"
        timing["generate"] = time.perf_counter() - t
        return _done(result, timing)
    timing["generate"] = time.perf_counter() - t
    result.answer, result.method = answer.strip(), "generator"
    if not result.answer:
        result.error = f"generator {gen.spec} returned no text"
    _enforce_grounding(result, question, n_seen, _grounding_mode(options.grounding, gen))
    return _done(result, timing)


def _grounding_mode(mode: str, gen: Generator) -> str:
    if mode not in ("auto", *MODES):
        raise ConfigError(f"grounding must be auto, {', '.join(MODES)}; not {mode!r}")
    return getattr(gen, "grounding", KEYWORDS) if mode == "auto" else mode


def _enforce_grounding(result: AskResult, question: str, n_seen: int, mode: str) -> None:
    """Check the model's answer against the evidence it was shown; keep it (citing the evidence that
    supports it) or replace it by the honest fallback."""
    result.grounding = mode
    seen = result.evidence[:n_seen]
    check = check_answer(result.answer, seen, question=question, mode=mode)
    if check.cut:
        result.notes.append(f"{check.cut} repeated or extra line(s)/sentence(s) cut from the answer")
    cited = citations(check.answer, n_seen)
    if mode == OFF:
        result.answer, result.citations = check.answer, cited
        return
    if check.grounded:
        result.grounded, result.answer = True, check.answer
        needed = covering_citations(check)
        if all(any(n in cited for n in check.support[w]) for w in check.words):
            result.citations = cited
            return
        body = _CITATION.sub("", check.answer).strip()
        result.citations = needed
        result.answer = f"{body} {''.join(f'[{n}]' for n in needed)}".strip() if needed else body
        if cited:
            result.notes.append(f"the model cited {cited}, which do not support all of its answer; ravl cites the "
                                f"evidence that does: {needed}")
        return
    result.grounded, result.model_answer = False, result.answer
    result.answer, result.citations = fallback_answer(seen, question)
    if not check.answer.strip():
        why = "the model wrote nothing"
    elif check.unsupported:
        why = f"no evidence supports {', '.join(repr(w) for w in check.unsupported[:5])}"
    else:
        why = "it names nothing the evidence could support (a bare yes/no, or no content)"
    result.notes.append(f"the model's answer {' '.join(check.answer.split())[:200]!r} was replaced: {why} "
                        f"({mode} check, docs/generation.md)")


def _done(result: AskResult, timing: dict[str, float]) -> AskResult:
    result.seconds = {key: round(value, 3) for key, value in timing.items()}
    return result
