"""Retrieval-augmented captioning: retrieve neighbours -> consensus or prompt + generator,
always returning the evidence (provenance) with the text."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from ..collection import Collection, ImageHit
from ..errors import GenerationError
from ..generate.base import GenerationParams, Generator, load_generator
from ..generate.fit import fit_prompt
from ..generate.prompts import caption_prompt
from .evidence import neighbour_evidence
from .grounding import KEYWORDS, STRICT, check_answer

#: how many consensus-ranked captions go into a language model's prompt (SmallCap uses 4)
PROMPT_CAPTIONS = 4
#: what a language model's caption must not be on its own (then the consensus caption stands)
_ONLY_ARTICLE = frozenset({"a", "an", "the"})


@dataclass
class CaptionResult:
    image: str
    caption: str
    method: str  # "consensus" or "generator"
    generator: str
    neighbours: list[ImageHit]
    candidates: list[dict] = field(default_factory=list)  # caption, image_id, consensus score
    prompt: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    #: whether a language model's caption was supported by the neighbours' captions (None: no model wrote one)
    grounded: bool | None = None

    def to_dict(self) -> dict:
        return {"image": self.image, "caption": self.caption, "method": self.method, "generator": self.generator,
                "grounded": self.grounded,
                "neighbours": [n.to_dict() for n in self.neighbours], "candidates": self.candidates,
                "prompt": self.prompt, "error": self.error, "notes": self.notes}


def caption_image(collection: Collection, image: Image.Image, *, k: int = 5,
                  generator: str | Generator | None = None, params: GenerationParams = GenerationParams(),
                  exclude_items: Iterable[int] = (), template: str | None = None,
                  name: str = "") -> CaptionResult:
    """Caption ``image`` from the captions of its ``k`` nearest images in ``collection``.

    With the ``consensus`` generator (default) each retrieved caption is scored by its mean
    similarity to the other candidates (Devlin et al., 2015) plus its similarity to the image's
    own embedding in the shared space; the best one is the caption. With a language model the
    consensus-ranked captions fill a SmallCap-style prompt. If the model fails, the consensus
    caption is returned with the error, so the evidence is never lost; so is it when a model that
    declares strict grounding (the bundled SmolLM2) writes a caption naming something no retrieved
    caption supports (``grounded: false`` and a note, see :mod:`.grounding`).
    """
    gen = load_generator("consensus" if generator is None else generator)
    query = collection.encoder.embed_images([image.convert("RGB")])
    neighbours: list[ImageHit] = collection.search_vectors(  # type: ignore[assignment]  # "features" gives ImageHits
        query.features, index="features", k=k, exclude_items=exclude_items)[0]
    found = neighbour_evidence(collection, neighbours)
    if not len(found.captions):
        return CaptionResult(name, "", "consensus", gen.spec, neighbours,
                             error="no captioned neighbours: index images with captions to caption new ones")
    texts, pairs = found.captions.texts, list(zip(found.captions.ids, found.captions.item_ids))
    agreement, relevance = found.agreement, found.relevance(query.embedding[0])
    scores = agreement + relevance
    order = np.argsort(-scores, kind="stable")
    candidates = [{"caption": texts[i], "caption_id": pairs[i][0], "image_id": pairs[i][1],
                   "score": round(float(scores[i]), 6), "agreement": round(float(agreement[i]), 6),
                   "relevance": round(float(relevance[i]), 6)} for i in order]
    result = CaptionResult(name, texts[order[0]], "consensus", gen.spec, neighbours, candidates)
    if not gen.is_language_model:
        return result
    prompt, _, note = fit_prompt(gen, lambda caps: caption_prompt(caps, template),
                                 [c["caption"] for c in candidates[:PROMPT_CAPTIONS]],
                                 answer_tokens=params.max_tokens, shorten=lambda cap, n: cap[:n])
    if note:
        result.notes.append(note)
    result.prompt = prompt
    if not params.stop:  # a caption is one line: stop there rather than write on
        params = replace(params, stop=("\n",))
    try:
        text = gen.generate(prompt, params=params, image=image if gen.supports_images else None).strip()
        text = _strip_echo(text.split("\n")[0].strip(), prompt)
    except GenerationError as exc:
        result.error = f"generator {gen.spec} failed, consensus caption returned instead: {exc}"
        return result
    if not text:
        result.error = f"generator {gen.spec} returned no text; consensus caption returned instead"
    elif " ".join(re.sub(r"[^a-z]+", " ", text.lower()).split()) in _ONLY_ARTICLE:
        # a small model sometimes stops after "a" (8 of 200 stamps, docs/generation.md): not a caption
        result.error = f"generator {gen.spec} wrote only {text!r}; consensus caption returned instead"
    elif getattr(gen, "grounding", KEYWORDS) == STRICT:  # the bundled SmolLM2: its caption must be supported
        _check_caption(result, text, gen)
    else:
        result.caption, result.method = text, "generator"
    return result


def _check_caption(result: CaptionResult, text: str, gen: Generator) -> None:
    """Keep the model's caption when the neighbours' captions support it (:mod:`.grounding`, strict:
    for models that declare ``grounding = "strict"``, the bundled SmolLM2); otherwise the
    consensus caption stands, and a note says which words nothing supported (as ``ravl ask`` does)."""
    evidence = [{"number": i, "kind": "caption", "text": c["caption"]}
                for i, c in enumerate(result.candidates, start=1)]
    check = check_answer(text, evidence, mode=STRICT)
    result.grounded = check.grounded
    if check.grounded:
        result.caption, result.method = text, "generator"
        return
    why = (f"no neighbour caption supports {', '.join(repr(w) for w in check.unsupported[:5])}"
           if check.unsupported else "it names nothing")
    result.notes.append(f"generator {gen.spec} wrote {text!r}, but {why}; consensus caption returned instead")


def _strip_echo(text: str, prompt: str) -> str:
    """Drop the prompt's last words when the model repeats them ("This image shows a frog." ->
    "A frog."), so a chat model's caption reads like a caption."""
    tail = prompt.rstrip().splitlines()[-1].strip() if prompt.strip() else ""
    if len(tail) < 4 or not text.lower().startswith(tail.lower()):
        return text
    rest = text[len(tail):].lstrip(" :,-")
    return rest[:1].upper() + rest[1:] if rest else text
