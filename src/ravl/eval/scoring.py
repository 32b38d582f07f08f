"""The captioning front door: :func:`score_captions` checks the inputs, chooses the backend
(pycocoevalcap under Java, see :mod:`ravl.eval.cocoeval`, or the pure-Python metrics of
:mod:`ravl.eval.metrics`) and returns :class:`CaptionScores`.

Both backends depend on nothing here, so there is no import cycle between them.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError, InputError
from .metrics import BLEU_NAMES, corpus_bleu, corpus_cider_d, corpus_rouge_l, simple_tokenize

METRIC_GROUPS = ("BLEU", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
JAVA_ONLY = ("METEOR", "SPICE")
BACKENDS = ("auto", "java", "python")


@dataclass(frozen=True)
class CaptionScores:
    """Corpus figures, per-image figures (same metric names), and how they were computed."""

    corpus: dict[str, float]
    per_image: dict[Hashable, dict[str, float]]
    backend: str  # "java" (pycocoevalcap) or "python"
    tokenizer: str  # "ptb", "simple" or "none" (captions were scored as given)
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> reason
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    @property
    def n_images(self) -> int:
        return len(self.per_image)

    def per_image_values(self, metric: str = "CIDEr-D") -> list[float]:
        """One metric for every image, in input order (e.g. for a histogram)."""
        return [scores[metric] for scores in self.per_image.values() if metric in scores]

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "tokenizer": self.tokenizer,
            "n_images": self.n_images,
            "corpus": dict(self.corpus),
            "unavailable": dict(self.unavailable),
            "timings": dict(self.timings),
            "per_image": {str(k): dict(v) for k, v in self.per_image.items()},
        }


# --- the front door -----------------------------------------------------------------------------
def _validate(gts: Mapping, res: Mapping) -> tuple[list, list[list[str]], list[str]]:
    """Check the two mappings and align them: (ids in gts order, references, candidates)."""
    if not isinstance(gts, Mapping) or not isinstance(res, Mapping):
        raise InputError("gts and res must be mappings: image id -> list of reference captions, "
                         "image id -> generated caption")
    if not gts:
        raise InputError("no images to score: the reference mapping is empty")
    missing = [k for k in gts if k not in res]
    extra = [k for k in res if k not in gts]
    if missing or extra:
        raise InputError(f"references and candidates must cover the same images: {len(missing)} without a "
                         f"candidate (e.g. {missing[:3]}), {len(extra)} without references (e.g. {extra[:3]})")
    ids, refs, cands = list(gts), [], []
    for key in ids:
        ref_list, cand = gts[key], res[key]
        if isinstance(ref_list, str) or not isinstance(ref_list, Iterable):
            raise InputError(f"references of image {key!r} must be a list of strings, not {type(ref_list).__name__}")
        ref_list = list(ref_list)
        if not ref_list or not all(isinstance(r, str) and r.strip() for r in ref_list):
            raise InputError(f"image {key!r} has no references or an empty/non-text reference; "
                             "drop it or fix its captions")
        if isinstance(cand, (list, tuple)) and len(cand) == 1:
            cand = cand[0]
        if not isinstance(cand, str):
            raise InputError(f"the candidate for image {key!r} must be one string, not {type(cand).__name__}")
        refs.append([" ".join(r.split()) for r in ref_list])
        cands.append(" ".join(cand.split()))
    return ids, refs, cands


def _resolve(backend: str, metrics: Iterable[str] | None) -> tuple[str, list[str], dict[str, str]]:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown metrics backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    wanted = list(METRIC_GROUPS) if metrics is None else list(dict.fromkeys(metrics))
    unknown = [m for m in wanted if m not in METRIC_GROUPS]
    if unknown:
        raise ConfigError(f"unknown caption metric(s) {unknown}; choose from {', '.join(METRIC_GROUPS)}")
    unavailable: dict[str, str] = {}
    if backend == "auto":
        from .cocoeval import java_unavailable_reason

        reason = java_unavailable_reason()
        backend = "python" if reason else "java"
        if reason:
            unavailable.update({m: reason for m in JAVA_ONLY if m in wanted})
    elif backend == "python":
        explicit = [m for m in JAVA_ONLY if metrics is not None and m in wanted]
        if explicit:
            raise ConfigError(f"{' and '.join(explicit)} need Java: use backend='java' or 'auto', "
                              "or leave them out of metrics")
        unavailable.update({m: "needs Java; backend='python' was chosen" for m in JAVA_ONLY if m in wanted})
    if backend == "python":
        wanted = [m for m in wanted if m not in JAVA_ONLY]
    return backend, wanted, unavailable


def score_captions(gts: Mapping[Hashable, Iterable[str]], res: Mapping[Hashable, str], *,
                   backend: str = "auto", metrics: Iterable[str] | None = None, tokenize: bool = True,
                   progress: Callable[[str], None] | None = None) -> CaptionScores:
    """Score generated captions against references, as the COCO caption evaluation does.

    ``gts`` maps image id -> reference captions, ``res`` image id -> one generated caption (a
    one-element list is accepted too). ``backend``: 'java' runs pycocoevalcap (PTB tokenizer,
    BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE when its CoreNLP jars are present); 'python' runs the
    pure-Python BLEU/ROUGE-L/CIDEr-D with :func:`simple_tokenize`; 'auto' picks 'java' when
    Java and pycocoevalcap are there. ``metrics`` picks groups from ``METRIC_GROUPS`` (default:
    all). ``tokenize=False`` scores captions that are already tokenised, as given. ``progress``
    is called with the name of each stage before it runs. Metrics that cannot run are listed in
    ``CaptionScores.unavailable`` with the reason.
    """
    ids, refs, cands = _validate(gts, res)
    backend, wanted, unavailable = _resolve(backend, metrics)
    if backend == "java":
        from .cocoeval import score_java

        corpus, per_image, more, timings, tokenizer = score_java(refs, cands, wanted, tokenize, progress)
        unavailable.update(more)
    else:
        corpus, per_image, timings, tokenizer = _score_python(refs, cands, wanted, tokenize, progress)
    rows = {key: {name: float(values[i]) for name, values in per_image.items()} for i, key in enumerate(ids)}
    return CaptionScores(corpus={k: float(v) for k, v in corpus.items()}, per_image=rows, backend=backend,
                         tokenizer=tokenizer, unavailable=unavailable, timings=timings)


def _score_python(refs, cands, wanted, tokenize, progress):
    timings: dict[str, float] = {}
    corpus: dict[str, float] = {}
    per_image: dict[str, list[float]] = {}

    def stage(name):
        if progress is not None:
            progress(name)
        return time.perf_counter()

    if tokenize:
        t0 = stage("tokenize")
        refs = [[simple_tokenize(r) for r in ref_list] for ref_list in refs]
        cands = [simple_tokenize(c) for c in cands]
        timings["tokenize"] = time.perf_counter() - t0
    if "BLEU" in wanted:
        t0 = stage("BLEU")
        scores, lists = corpus_bleu(refs, cands)
        corpus.update(zip(BLEU_NAMES, scores))
        per_image.update(zip(BLEU_NAMES, lists))
        timings["BLEU"] = time.perf_counter() - t0
    for name, fn in (("ROUGE-L", corpus_rouge_l), ("CIDEr-D", corpus_cider_d)):
        if name in wanted:
            t0 = stage(name)
            corpus[name], per_image[name] = fn(refs, cands)
            timings[name] = time.perf_counter() - t0
    return corpus, per_image, timings, "simple" if tokenize else "none"
