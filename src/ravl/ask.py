"""Grounded questions about an image: retrieve evidence -> numbered prompt -> language model.

Evidence is, in this order: one caption from each of the ``k`` nearest captioned images (the one
that best agrees with the other candidates), the image's nearest class labels when the encoder can
name them (``top_labels``), and text read from the image. The answer comes back with that
evidence, the prompt and the generator spec; without a language model (``consensus``), or when
the model fails or times out, the evidence still comes back, with an honest answer or the error.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from .collection import Collection, ImageHit
from .errors import GenerationError, MissingDependencyError
from .generate.base import GenerationParams, Generator, load_generator
from .generate.consensus import consensus_select
from .generate.fit import fit_prompt
from .generate.prompts import Evidence, question_prompt

NO_MODEL_ANSWER = (
    "I cannot answer without a language model. The evidence below is what retrieval found; pass a "
    "generator to get an answer, e.g. --generator 'openai:llama3.2?base_url=http://localhost:11434/v1' "
    "or --generator hf:/path/to/model."
)
#: answers are longer than captions: 128 new tokens unless asked otherwise
ASK_PARAMS = GenerationParams(max_tokens=128)
#: class labels below this probability are not worth a line of evidence
MIN_LABEL_PROBABILITY = 0.05
_CITATION = re.compile(r"\[(\d+)\]")


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

    def to_dict(self) -> dict:
        return {"image": self.image, "question": self.question, "answer": self.answer, "method": self.method,
                "generator": self.generator, "citations": self.citations, "evidence": self.evidence,
                "prompt": self.prompt, "neighbours": [n.to_dict() for n in self.neighbours],
                "error": self.error, "notes": self.notes, "seconds": self.seconds}


def _non_ocr_captions(collection: Collection, item_ids: list[int]) -> dict[int, list[int]]:
    """caption ids per item, leaving out text that ``ravl index --ocr`` read from the images."""
    cap_ids = collection.db.caption_ids_for_items(item_ids)
    from .ingest.ocr_hook import ocr_caption_ids

    ocr = ocr_caption_ids(collection.db, [c for ids in cap_ids.values() for c in ids])
    return {item: [c for c in ids if c not in ocr] for item, ids in cap_ids.items()}


def caption_evidence(collection: Collection, neighbours: list[ImageHit]) -> list[Evidence]:
    """One caption per captioned neighbour, in retrieval order: the neighbour's caption with the
    highest consensus score among all retrieved captions."""
    cap_ids = _non_ocr_captions(collection, [n.id for n in neighbours])
    pairs = [(cid, n) for n in neighbours for cid in cap_ids.get(n.id, [])]
    if not pairs:
        return []
    ids, vecs = collection.db.caption_vectors([cid for cid, _ in pairs])
    by_id = dict(zip(ids.tolist(), vecs))
    rows = collection.db.caption_rows([cid for cid, _ in pairs])
    _, scores = consensus_select([rows[cid][0] for cid, _ in pairs], np.stack([by_id[cid] for cid, _ in pairs]))
    best: dict[int, tuple[float, int]] = {}
    for (cid, n), score in zip(pairs, scores):
        if n.id not in best or score > best[n.id][0] + 1e-12:
            best[n.id] = (float(score), cid)
    return [Evidence("caption", rows[best[n.id][1]][0], n.score, item_id=n.id, uri=n.uri)
            for n in neighbours if n.id in best]


def label_evidence(encoder, image: Image.Image, n: int) -> list[Evidence]:
    """The encoder's top class labels for ``image`` (skipped when it cannot name classes)."""
    if n < 1 or not hasattr(encoder, "top_labels"):
        return []
    labels = encoder.top_labels([image], k=n)
    return [Evidence("label", name, prob) for name, prob in (labels[0] if labels else [])
            if prob >= MIN_LABEL_PROBABILITY]


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


def ask_image(collection: Collection, image: Image.Image, question: str, *, k: int = 5,
              generator: str | Generator | None = None, params: GenerationParams = ASK_PARAMS,
              ocr: bool | None = None, labels: int = 3, template: str | None = None, ocr_lang: str = "eng",
              exclude_items: Iterable[int] = (), name: str = "",
              on_text: Callable[[str], None] | None = None) -> AskResult:
    """Answer ``question`` about ``image`` from evidence retrieved from ``collection``.

    ``ocr``: True reads text in the image (an error if no OCR engine is installed), False never,
    None (default) when an engine is installed. ``labels``: how many class labels to add when the
    encoder can name classes. ``template`` replaces the question prompt (see
    :mod:`ravl.generate.prompts`). ``on_text`` receives the answer as it streams, from generators
    that can stream. The model sees the image too when it ``supports_images``.
    """
    timing: dict[str, float] = {}
    gen = load_generator("consensus") if generator is None else (
        load_generator(generator) if isinstance(generator, str) else generator)
    question_prompt(question, [], template)  # fail early on an empty question or a bad template
    t = time.perf_counter()
    neighbours = collection.search_image([image], target="images", k=k, exclude_items=exclude_items)[0]
    evidence = caption_evidence(collection, neighbours)
    timing["retrieve"] = time.perf_counter() - t
    t = time.perf_counter()
    evidence += label_evidence(collection.encoder, image, labels)
    timing["labels"] = time.perf_counter() - t
    notes: list[str] = []
    ocr_lines: list = []
    if ocr is not False:
        from .ocr import available_engines, read_text

        t = time.perf_counter()
        if ocr or available_engines():
            ocr_lines = read_text(image, lang=ocr_lang)
        else:
            notes.append("no OCR engine installed, so text in the image was not read (apt-get install tesseract-ocr)")
        timing["ocr"] = time.perf_counter() - t
        if ocr_lines:
            evidence.append(Evidence("ocr", "\n".join(line.text for line in ocr_lines)))
    if gen.is_language_model:  # drop the least relevant evidence when the prompt would not fit
        prompt, seen, note = fit_prompt(gen, lambda ev: question_prompt(question, ev, template), evidence,
                                     answer_tokens=params.max_tokens, shorten=lambda ev, n: replace(ev, text=ev.text[:n]))
        if note:
            notes.append(note)
        n_seen = len(seen)
    else:
        prompt, n_seen = question_prompt(question, evidence, template), len(evidence)
    result = AskResult(question, "", "no-model", gen.spec, _evidence_dicts(evidence, ocr_lines), prompt,
                       neighbours=neighbours, image=name, notes=notes, seconds=timing)
    if not evidence:
        notes.append("no evidence was found: the nearest images have no captions and no text was read")
    if not gen.is_language_model:
        result.answer = NO_MODEL_ANSWER
        return _done(result, timing)
    kwargs = {"on_text": on_text} if on_text is not None and getattr(gen, "supports_streaming", False) else {}
    t = time.perf_counter()
    try:
        answer = gen.generate(prompt, params=params, image=image if gen.supports_images else None, **kwargs)
    except (GenerationError, MissingDependencyError, TimeoutError, OSError, RuntimeError) as exc:
        result.method, result.error = "failed", f"generator {gen.spec} failed, evidence returned without an answer: {exc}"
        timing["generate"] = time.perf_counter() - t
        return _done(result, timing)
    timing["generate"] = time.perf_counter() - t
    result.answer, result.method = answer.strip(), "generator"
    result.citations = citations(result.answer, n_seen)  # only evidence the model was shown
    if not result.answer:
        result.error = f"generator {gen.spec} returned no text"
    if on_text is not None and not kwargs and result.answer:
        on_text(result.answer)  # a generator that cannot stream still shows its answer
    return _done(result, timing)


def _done(result: AskResult, timing: dict[str, float]) -> AskResult:
    result.seconds = {key: round(value, 3) for key, value in timing.items()}
    return result
