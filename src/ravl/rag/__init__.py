"""Retrieval-augmented generation over a collection: retrieve neighbours, gather evidence
(:mod:`.evidence`), then caption (:mod:`.caption`) or answer a question (:mod:`.ask`), always
returning the evidence (provenance) with the text.

Importing this package is cheap; names are loaded from their modules on first use.
"""
from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "CaptionResult": "caption",
    "caption_image": "caption",
    "AskOptions": "ask",
    "AskResult": "ask",
    "ask_image": "ask",
    "citations": "ask",
    "NO_MODEL_ANSWER": "ask",
    "neighbour_evidence": "evidence",
    "caption_evidence": "evidence",
    "label_evidence": "evidence",
    "ocr_evidence": "evidence",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
