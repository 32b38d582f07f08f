"""Retrieval-augmented generation over a collection: retrieve neighbours, gather evidence
(:mod:`.evidence`), then caption (:mod:`.caption`) or answer a question (:mod:`.ask`), always
returning the evidence (provenance) with the text.

Importing this package is cheap; names are loaded from their modules on first use.
"""
from __future__ import annotations

import importlib

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


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ravl.rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
