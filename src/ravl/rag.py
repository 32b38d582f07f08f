"""Retrieval-augmented captioning: retrieve neighbours -> consensus or prompt + generator,
always returning the evidence (provenance) with the text."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from .collection import Collection, ImageHit
from .errors import GenerationError
from .generate.base import GenerationParams, Generator, load_generator
from .generate.consensus import consensus_select
from .generate.fit import fit_prompt
from .generate.prompts import caption_prompt

#: how many consensus-ranked captions go into a language model's prompt (SmallCap uses 4)
PROMPT_CAPTIONS = 4


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

    def to_dict(self) -> dict:
        return {"image": self.image, "caption": self.caption, "method": self.method, "generator": self.generator,
                "neighbours": [n.to_dict() for n in self.neighbours], "candidates": self.candidates,
                "prompt": self.prompt, "error": self.error, "notes": self.notes}


def _resolve_generator(generator: str | Generator | None) -> Generator:
    if generator is None:
        return load_generator("consensus")
    return load_generator(generator) if isinstance(generator, str) else generator


def caption_image(collection: Collection, image: Image.Image, *, k: int = 5,
                  generator: str | Generator | None = None, params: GenerationParams = GenerationParams(),
                  exclude_items: Iterable[int] = (), template: str | None = None,
                  name: str = "") -> CaptionResult:
    """Caption ``image`` from the captions of its ``k`` nearest images in ``collection``.

    With the ``consensus`` generator (default) each retrieved caption is scored by its mean
    similarity to the other candidates (Devlin et al., 2015) plus its similarity to the image's
    own embedding in the shared space; the best one is the caption. With a language model the
    consensus-ranked captions fill a SmallCap-style prompt. If the model fails, the consensus
    caption is returned with the error, so the evidence is never lost.
    """
    gen = _resolve_generator(generator)
    query = collection.encoder.embed_images([image.convert("RGB")])
    neighbours: list[ImageHit] = collection.search_vectors(  # type: ignore[assignment]  # "features" gives ImageHits
        query.features, index="features", k=k, exclude_items=exclude_items)[0]
    # text read from a neighbour (OCR) describes that image's print, not the scene: never a caption
    cap_ids = collection.db.caption_ids_for_items([n.id for n in neighbours], exclude_source="ocr")
    pairs = [(cid, n.id) for n in neighbours for cid in cap_ids.get(n.id, [])]
    if not pairs:
        return CaptionResult(name, "", "consensus", gen.spec, neighbours,
                             error="no captioned neighbours: index images with captions to caption new ones")
    ids, vecs = collection.db.caption_vectors([cid for cid, _ in pairs])
    by_id = dict(zip(ids.tolist(), vecs))
    rows = collection.db.caption_rows([cid for cid, _ in pairs])
    texts = [rows[cid][0] for cid, _ in pairs]
    cap_vecs = np.stack([by_id[cid] for cid, _ in pairs])
    _, agreement = consensus_select(texts, cap_vecs)
    relevance = cap_vecs @ query.embedding[0]
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
    if text:
        result.caption, result.method = text, "generator"
    else:
        result.error = f"generator {gen.spec} returned no text; consensus caption returned instead"
    return result


def _strip_echo(text: str, prompt: str) -> str:
    """Drop the prompt's last words when the model repeats them ("This image shows a frog." ->
    "A frog."), so a chat model's caption reads like a caption."""
    tail = prompt.rstrip().splitlines()[-1].strip() if prompt.strip() else ""
    if len(tail) < 4 or not text.lower().startswith(tail.lower()):
        return text
    rest = text[len(tail):].lstrip(" :,-")
    return rest[:1].upper() + rest[1:] if rest else text
