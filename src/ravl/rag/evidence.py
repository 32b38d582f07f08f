"""The one evidence step shared by captioning and question answering.

* :func:`neighbour_evidence` — the scene captions of the retrieved neighbours (text read from an
  image by OCR is never a neighbour's caption: :meth:`Collection.scene_captions` is the one filter)
  with each caption's consensus score (Devlin et al., 2015) and similarity to the query;
* :func:`caption_evidence` — one caption per captioned neighbour, the best-agreeing one;
* :func:`label_evidence` — the encoder's top class labels for the image;
* :func:`ocr_evidence` — text read from the image itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..collection import CaptionSet, Collection, ImageHit
from ..encoders.base import Encoder
from ..generate.consensus import consensus_select
from ..generate.prompts import Evidence

#: class labels below this probability are not worth a line of evidence
MIN_LABEL_PROBABILITY = 0.05


@dataclass(frozen=True)
class NeighbourEvidence:
    """The scene captions of the neighbours, aligned with their consensus (agreement) scores."""

    neighbours: list[ImageHit]
    captions: CaptionSet
    agreement: np.ndarray  # (n,) mean similarity of each caption to the other candidates

    def relevance(self, query_embedding: np.ndarray) -> np.ndarray:
        """Each caption's similarity to the query image in the shared space."""
        return self.captions.vectors @ query_embedding


def neighbour_evidence(collection: Collection, neighbours: list[ImageHit]) -> NeighbourEvidence:
    captions = collection.scene_captions([n.id for n in neighbours])
    agreement = consensus_select(captions.texts, captions.vectors)[1] if len(captions) else np.zeros(0)
    return NeighbourEvidence(neighbours, captions, agreement)


def caption_evidence(collection: Collection, neighbours: list[ImageHit]) -> list[Evidence]:
    """One caption per captioned neighbour, in retrieval order: the neighbour's caption with the
    highest consensus score among all retrieved captions."""
    found = neighbour_evidence(collection, neighbours)
    best: dict[int, tuple[float, int]] = {}
    for pos, (item, score) in enumerate(zip(found.captions.item_ids, found.agreement)):
        if item not in best or score > best[item][0] + 1e-12:
            best[item] = (float(score), pos)
    return [Evidence("caption", found.captions.texts[best[n.id][1]], n.score, item_id=n.id, uri=n.uri)
            for n in neighbours if n.id in best]


def label_evidence(encoder: Encoder, image: Image.Image, n: int) -> list[Evidence]:
    """The encoder's top class labels for ``image`` (none when it cannot name classes)."""
    if n < 1:
        return []
    labels = encoder.top_labels([image], k=n)
    return [Evidence("label", name, prob) for name, prob in (labels[0] if labels else [])
            if prob >= MIN_LABEL_PROBABILITY]


def ocr_evidence(image: Image.Image, ocr: bool | None, lang: str) -> tuple[list[Evidence], list, list[str]]:
    """Text read from ``image``: ``(evidence, lines, notes)``. ``ocr`` True reads (an error when no
    engine is installed), False never, None when an engine is installed."""
    if ocr is False:
        return [], [], []
    from ..ocr import available_engines, read_text, tesseract_lang

    if not (ocr or available_engines()):
        return [], [], ["no OCR engine installed, so text in the image was not read (apt-get install tesseract-ocr)"]
    lines = read_text(image, lang=tesseract_lang(lang))  # ISO codes and names too: zh -> chi_sim
    evidence = [Evidence("ocr", "\n".join(line.text for line in lines))] if lines else []
    return evidence, lines, []
