"""Evaluation: captioning metrics (BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE), retrieval Recall@K,
and reports with plots.

Plain functions over plain data; the CLI drives them. Importing this package is cheap: names are
loaded from their modules on first use.
"""
from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "CaptionScores": "scoring",
    "score_captions": "scoring",
    "simple_tokenize": "metrics",
    "corpus_bleu": "metrics",
    "corpus_cider_d": "metrics",
    "corpus_rouge_l": "metrics",
    "java_available": "cocoeval",
    "ptb_tokenize": "cocoeval",
    "spice_status": "cocoeval",
    "DirectionScores": "recall",
    "RetrievalScores": "recall",
    "retrieval_scores": "recall",
    "ranks_from_similarity": "recall",
    "ranking_scores": "recall",
    "direction_scores": "recall",
    "build_report": "report",
    "write_report": "report",
    "load_report": "report",
    "render_markdown": "report",
    "compare_reports": "report",
    "render_comparison": "report",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
