"""Captioning metrics as the COCO caption evaluation (pycocoevalcap 1.2) computes them.

The pure-Python BLEU, CIDEr-D and ROUGE-L below follow pycocoevalcap's code operation for
operation, so on the same tokens they agree with it to float rounding (a test checks 1e-6):

* BLEU-1..4 (``Bleu(4)``): corpus-level clipped n-gram precision, brevity penalty with the
  'closest' reference length, the constants ``tiny=1e-15`` and ``small=1e-9``; per-image
  scores use the same formula on one image.
* CIDEr-D (``Cider``; reported as "CIDEr" in COCO papers): TF-IDF n-gram vectors for n=1..4,
  document frequency over the *references of the evaluated corpus*, clipping of candidate
  weights, a Gaussian length penalty with sigma=6, averaged over references and scaled by 10.
  Because IDF comes from the evaluated corpus, one image alone always scores 0, and figures
  are only comparable between runs over the same image set.
* ROUGE-L (``Rouge``): LCS-based F-measure with beta=1.2, best precision and best recall
  over the references, averaged over images.

METEOR and SPICE exist only in Java (see :mod:`ravl.eval.cocoeval`); :mod:`ravl.eval.scoring`
chooses between the two backends. :func:`simple_tokenize` approximates the Stanford PTB tokenizer
for machines without Java.
"""
from __future__ import annotations

import math
import re

import numpy as np

BLEU_NAMES = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")

# pycocoevalcap's PTBTokenizer drops exactly these tokens after tokenising. The tokenizer runs
# with -lowerCase, so brackets come out as "-lrb-" etc. and are *kept* (they never match).
PTB_PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                              ".", "?", "!", ",", ":", "-", "--", "...", ";"])


# --- tokenisation -------------------------------------------------------------------------------
_ABBREVIATIONS = "mr|mrs|ms|dr|st|jr|sr|vs|etc|inc|co|ltd|prof|gen|mt|ft|no(?=\\.\\s*\\d)"
_TOKEN_RE = re.compile(
    r"""(?:[a-z]\.){2,}                       # acronyms: u.s. p.m. e.g.
      | (?<![\w.])(?:[a-z]|""" + _ABBREVIATIONS + r""")\.(?!\w)   # initials, mr. st. etc.
      | n't | '(?:s|re|ve|ll|d|m)\b | '\d+s\b  # split-off contractions, '70s
      | \d{1,3}(?:,\d{3})+(?:\.\d+)?          # 1,000
      | [@#][a-z]\w*                          # @home #hashtag
      | -[lr][rcs]b-                          # brackets, as mapped below
      | \w+(?:(?:[-/'&]|(?<=\d)[.:](?=\d)|(?<=[a-z])\.(?=[a-z]))\w+)*   # words, 3.5, 10:30
      | \.{2,} | [?!]+ | --+ | [^\w\s]       # punctuation
    """, re.VERBOSE)
_CHAR_MAP = str.maketrans({"(": " -lrb- ", ")": " -rrb- ", "{": " -lcb- ", "}": " -rcb- ",
                           "[": " -lsb- ", "]": " -rsb- ", "\u2018": "`", "\u2019": "'",
                           "\u201c": '"', "\u201d": '"', "\u2014": " -- ", "\u2013": " -- "})
_SPLITS = [(re.compile(r"(\w)n't\b"), r"\1 n't"), (re.compile(r"(\w)'(s|re|ve|ll|d|m)\b"), r"\1 '\2"),
           (re.compile(r"\b(can)(not)\b"), r"\1 \2"), (re.compile(r"\b(gon|wan|got)(na|ta)\b"), r"\1 \2")]


def simple_tokenize(caption: str) -> str:
    """Lower-case, split and drop punctuation the way PTBTokenizer + pycocoevalcap do.

    An approximation for machines without Java: plain English captions come out identical
    (contractions split as ``do n't``/``man 's``, brackets kept as ``-lrb-``); exotic input
    (URLs, emoticons, unusual abbreviations) may differ slightly.
    """
    text = " ".join(caption.lower().translate(_CHAR_MAP).split())
    for pattern, repl in _SPLITS:
        text = pattern.sub(repl, text)
    tokens = []
    for match in _TOKEN_RE.finditer(text):
        tok = match.group(0)
        if tok == '"':
            continue  # PTB turns it into `` or '', both dropped
        if tok not in PTB_PUNCTUATIONS:
            tokens.append(tok)
    return " ".join(tokens)


# --- BLEU ---------------------------------------------------------------------------------------
def _ngram_counts(words: list[str], n: int) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = {}
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            gram = tuple(words[i:i + k])
            counts[gram] = counts.get(gram, 0) + 1
    return counts


def corpus_bleu(refs: list[list[str]], cands: list[str], n: int = 4
                ) -> tuple[list[float], list[list[float]]]:
    """pycocoevalcap ``Bleu(n)``: (corpus BLEU-1..n, per-image BLEU-k lists), tokenised input."""
    small, tiny = 1e-9, 1e-15
    total_guess, total_correct = [0] * n, [0] * n
    total_test, total_ref = 0, 0
    per_image: list[list[float]] = [[] for _ in range(n)]
    for ref_list, cand in zip(refs, cands):
        max_counts: dict[tuple[str, ...], int] = {}
        ref_lens = []
        for ref in ref_list:
            words = ref.split()
            ref_lens.append(len(words))
            for gram, count in _ngram_counts(words, n).items():
                max_counts[gram] = max(max_counts.get(gram, 0), count)
        words = cand.split()
        test_len = len(words)
        ref_len = min((abs(length - test_len), length) for length in ref_lens)[1]
        guess = [max(0, test_len - k + 1) for k in range(1, n + 1)]
        correct = [0] * n
        for gram, count in _ngram_counts(words, n).items():
            correct[len(gram) - 1] += min(max_counts.get(gram, 0), count)
        total_test += test_len
        total_ref += ref_len
        bleu = 1.0
        for k in range(n):
            total_guess[k] += guess[k]
            total_correct[k] += correct[k]
            bleu *= (float(correct[k]) + tiny) / (float(guess[k]) + small)
            per_image[k].append(bleu ** (1.0 / (k + 1)))
        ratio = (test_len + tiny) / (ref_len + small)
        if ratio < 1:
            for k in range(n):
                per_image[k][-1] *= math.exp(1 - 1 / ratio)
    corpus = []
    bleu = 1.0
    for k in range(n):
        bleu *= float(total_correct[k] + tiny) / (total_guess[k] + small)
        corpus.append(bleu ** (1.0 / (k + 1)))
    ratio = (total_test + tiny) / (total_ref + small)
    if ratio < 1:
        corpus = [b * math.exp(1 - 1 / ratio) for b in corpus]
    return corpus, per_image


# --- CIDEr-D ------------------------------------------------------------------------------------
def corpus_cider_d(refs: list[list[str]], cands: list[str], n: int = 4, sigma: float = 6.0
                   ) -> tuple[float, list[float]]:
    """pycocoevalcap ``Cider(n=4, sigma=6)``: (corpus mean, per-image scores), tokenised input.

    IDF comes from the references given here, so a single image scores 0.
    """
    crefs = [[_ngram_counts(r.split(), n) for r in ref_list] for ref_list in refs]
    ctest = [_ngram_counts(c.split(), n) for c in cands]
    doc_freq: dict[tuple[str, ...], float] = {}
    for ref_counts in crefs:
        for gram in {g for counts in ref_counts for g in counts}:
            doc_freq[gram] = doc_freq.get(gram, 0.0) + 1
    ref_len = np.log(float(len(crefs)))
    log_df: dict[tuple[str, ...], float] = {}
    penalty_den = 2 * sigma ** 2

    def to_vec(counts):
        vec: list[dict] = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            ldf = log_df.get(gram)
            if ldf is None:
                ldf = log_df[gram] = np.log(max(1.0, doc_freq.get(gram, 0.0)))
            k = len(gram) - 1
            weight = float(tf) * (ref_len - ldf)
            vec[k][gram] = weight
            norm[k] += pow(weight, 2)
            if k == 1:  # sic: pycocoevalcap's "length" counts bigrams
                length += tf
        return vec, [np.sqrt(x) for x in norm], length

    scores = []
    for test_counts, ref_counts in zip(ctest, crefs):
        vec, norm, length = to_vec(test_counts)
        score = np.zeros(n)
        for counts in ref_counts:
            vec_ref, norm_ref, length_ref = to_vec(counts)
            delta = float(length - length_ref)
            penalty = np.e ** (-(delta ** 2) / penalty_den)
            val = np.zeros(n)
            for k in range(n):
                ref_k = vec_ref[k]
                for gram, weight in vec[k].items():
                    r = ref_k.get(gram, 0.0)
                    val[k] += min(weight, r) * r
                if norm[k] != 0 and norm_ref[k] != 0:
                    val[k] /= norm[k] * norm_ref[k]
                val[k] *= penalty
            score += val
        avg = np.mean(score) / len(ref_counts) * 10.0
        scores.append(float(avg))
    return float(np.mean(np.array(scores))), scores


# --- ROUGE-L ------------------------------------------------------------------------------------
def _lcs(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def corpus_rouge_l(refs: list[list[str]], cands: list[str], beta: float = 1.2
                   ) -> tuple[float, list[float]]:
    """pycocoevalcap ``Rouge``: (mean ROUGE-L, per-image scores), tokenised input."""
    scores = []
    for ref_list, cand in zip(refs, cands):
        tokens_c = cand.split(" ")  # sic: split(" "), so "" is one (empty) token
        prec, rec = [], []
        for ref in ref_list:
            tokens_r = ref.split(" ")
            lcs = _lcs(tokens_r, tokens_c)
            prec.append(lcs / float(len(tokens_c)))
            rec.append(lcs / float(len(tokens_r)))
        p, r = max(prec), max(rec)
        scores.append(((1 + beta ** 2) * p * r) / float(r + beta ** 2 * p) if p != 0 and r != 0 else 0.0)
    return float(np.mean(np.array(scores))), scores
