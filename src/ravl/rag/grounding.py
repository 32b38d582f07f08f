"""Is an answer supported by its evidence? Checked after generation, for any generator.

The check is lexical entailment, offline and explainable (no NLI model ships here):

* the answer is cut to its distinct lines and sentences (a small model repeats itself);
* in :data:`STRICT` mode only the first line is kept (asked for a sentence or two, a small model
  goes on to list the evidence);
* its *content words* are what it claims: every word but function words and words about the
  task itself ("image", "evidence", "shows"); :data:`STRICT` mode checks all of them (the bundled
  SmolLM2), :data:`KEYWORDS` mode only those WordNet knows as nouns (the key noun phrase: larger
  models paraphrase verbs and adjectives freely);
* a word is supported by a piece of evidence when it occurs there (as a word, plural and
  inflections folded) or is entailed by one: a synonym, or a hypernym of one of the evidence
  word's first senses (:mod:`.wordnet`; "drake" supports "duck", "bird", "animal"); an ImageNet
  class label entails its exact WordNet sense's lemmas and hypernyms;
* a yes/no answer claims what the question asks: "Yes" to "Is this a cat?" needs "cat" supported;
  an answer with nothing to check ("The evidence for the image is [1].", a bare "No") is not
  grounded.

:func:`check_answer` says which words no evidence supports and which evidence supports the rest;
:func:`fallback_answer` is the honest text that replaces an unsupported answer.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from . import wordnet

STRICT, KEYWORDS, OFF = "strict", "keywords", "off"
MODES = (STRICT, KEYWORDS, OFF)
CANNOT_TELL = "I can't tell from the evidence."

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_CITE = re.compile(r"\s*\[(\d{1,3})\]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_STOP = frozenset("""
a an the this that these those it its it's is are was were be been being am do does did doing have has had having
of in on at to for from by with without about as into onto over under above below between near next up down out off
and or but nor so yet if then than too very also just only not no yes there here what which who whom whose when where
why how all any both each few more most other some such own same can could will would shall should may might must
i me my we our you your he him his she her they them their one ones something anything nothing someone seems seem
looks look like appears appear shown show shows showing depicted depicts depict picture pictures image images photo
photos photograph drawing illustration evidence answer question based according see seen can't cannot tell sure
probably likely possibly maybe perhaps kind sort type object thing things item items caption captions label labels
text read reads say says said written writes sign similar closest match matches given number numbers cite cited
citing above following
""".split())
_YES_NO = {"yes", "no", "yeah", "nope"}
_NEGATIONS = frozenset({"not", "no", "never", "neither", "nor", "isn't", "aren't", "wasn't", "doesn't", "don't",
                        "without", "nothing"})
_CLAUSE = re.compile(r"[,;:.!?()]")
_QUOTED = re.compile(r"[\"“”«»「」]")


@dataclass
class Check:
    """What :func:`check_answer` found."""

    grounded: bool
    answer: str  # the answer with repeated lines and sentences cut
    words: list[str] = field(default_factory=list)  # the content words checked
    unsupported: list[str] = field(default_factory=list)
    support: dict[str, list[int]] = field(default_factory=dict)  # word -> evidence numbers that support it
    cut: int = 0  # repeated lines/sentences removed


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(_CITE.sub(" ", text).lower()))


def cut_repeats(text: str) -> tuple[str, int]:
    """``text`` without lines and sentences that repeat an earlier one (citations and case ignored,
    or near-identical by n-gram overlap); returns the text and how many were cut."""
    from ..generate.consensus import ngram_similarity

    kept: list[str] = []
    seen: list[str] = []
    cut = 0
    for line in text.splitlines():
        parts = []
        for sentence in _SENTENCE.split(line.strip()):
            norm = _norm(sentence)
            if not norm:
                if sentence.strip():
                    parts.append(sentence.strip())
                continue
            if any(norm == old or ngram_similarity(norm, old) >= 0.8 for old in seen):
                cut += 1
                continue
            seen.append(norm)
            parts.append(sentence.strip())
        if parts:
            kept.append(" ".join(parts))
    return "\n".join(kept), cut


def content_words(text: str, free: frozenset[str] = frozenset(), question: str = "") -> list[str]:
    """The words of ``text`` that make a claim, in order, without repeats. Words after a negation
    in the same clause ("a tile, not a bug") claim nothing checkable and are left out, except in
    quoted text ('The sign says "No parking"'); ``free`` words (from the question) need no support,
    nor does a quote of the ``question`` itself."""
    asked = frozenset(_WORD.findall(question.lower()))
    words = []
    for n, part in enumerate(_QUOTED.split(_CITE.sub(" ", text).lower())):
        quoted = n % 2 == 1
        for clause in [part] if quoted else _CLAUSE.split(part):
            negated = False
            for word in _WORD.findall(clause):
                if word in _NEGATIONS and not quoted:
                    negated = True
                if negated or word in free or (quoted and word in asked) or (len(word) < 2 and not word.isdigit()):
                    continue
                if not quoted and (word in _STOP or word in _YES_NO):
                    continue
                if word not in words:
                    words.append(word)
    return words


def question_words(question: str) -> frozenset[str]:
    """Words an answer may repeat from a wh-question without evidence ("What is this *man* holding?"
    -> "The man is holding a camera"); none from a yes/no question or from the options of an "or"
    question, since repeating those is the answer's claim."""
    q = question.strip().lower()
    if not re.match(r"^(what|which|who|whom|whose|where|how|why|when)\b", q) or re.search(r"\bor\b", q):
        return frozenset()
    return frozenset(_WORD.findall(q)) - _STOP


def _phrases(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def _lemma_words(lemmas: set[str]) -> set[str]:
    out = set()
    for lemma in lemmas:
        out.add(lemma)
        parts = lemma.split()
        if len(parts) > 1:
            out.add(parts[-1])  # "tabby cat" is a cat, "anseriform bird" a bird
    return out


@cache
def _imagenet_wnids() -> dict[str, tuple[str, ...]]:
    """ImageNet class name (first lemma, lower case) -> WordNet ids; empty without timm's tables."""
    try:
        from ..encoders.imagenet import imagenet_classes

        classes = imagenet_classes()
    except Exception:  # noqa: BLE001 - without the class tables labels are checked as plain words
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for cls in classes:
        out[cls.name.lower()] = (*out.get(cls.name.lower(), ()), cls.synset)
    return out


def supported_words(text: str, kind: str = "caption") -> set[str]:
    """Every word a piece of evidence supports: its own words (and their base forms), and what they
    entail through WordNet. An ImageNet class label entails its exact sense (its WordNet id)."""
    out: set[str] = set()
    wnids = _imagenet_wnids().get(" ".join(text.lower().split())) if kind == "label" else None
    for phrase in _phrases(text):
        out.update(wordnet.base_forms(phrase))
        if not wnids and phrase not in _STOP and (" " in phrase or len(phrase) > 2):
            out |= _lemma_words(wordnet.expand(phrase))
    for wnid in wnids or ():
        out |= _lemma_words(wordnet.expand_synset(wnid))
    return out


def _word_supported(word: str, words: set[str], raw: str) -> bool:
    if _CJK.search(word) or word.isdigit():
        return word in raw
    return any(form in words for form in [*wordnet.base_forms(word), *wordnet.base_forms(word, "v"),
                                          *wordnet.base_forms(word, "a")])


def check_answer(answer: str, evidence: Sequence[dict], *, question: str = "", mode: str = STRICT) -> Check:
    """Check ``answer`` against ``evidence`` (dicts with ``number``, ``kind`` and ``text``, as
    :class:`~ravl.rag.ask.AskResult` lists them): every checked word must be supported by at least
    one piece of evidence."""
    text, cut = cut_repeats(answer)
    if mode == STRICT and text.count("\n"):  # a small model asked for a sentence or two lists on
        first = text.split("\n", 1)[0].strip()
        cut += len([line for line in text.split("\n")[1:] if line.strip()])
        text = first if _WORD.search(_CITE.sub(" ", first)) else text.replace("\n", " ")
    if mode == OFF:
        return Check(True, text, cut=cut)
    words = content_words(text, question_words(question), question)
    if not words and set(_WORD.findall(text.lower())) & {"yes", "yeah"}:
        words = content_words(question)  # "Yes" claims what the question asks
    if mode == KEYWORDS and wordnet.available():  # nouns, and words WordNet does not know (names, rare nouns)
        words = [w for w in words if wordnet.is_noun(w) or not wordnet.known(w) or w.isdigit() or _CJK.search(w)]
    support: dict[str, list[int]] = {w: [] for w in words}
    for ev in evidence:
        number, raw = int(ev["number"]), str(ev.get("text") or "")
        vocabulary = supported_words(raw, ev.get("kind", "caption"))
        for word in words:
            if _word_supported(word, vocabulary, raw.lower()):
                support[word].append(number)
    unsupported = [w for w in words if not support[w]]
    # an answer with nothing to check ("The evidence for the image is [1].", a bare "No") says nothing
    grounded = bool(words) and not unsupported
    return Check(grounded, text, words, unsupported, support, cut)


def covering_citations(check: Check) -> list[int]:
    """A few evidence numbers that together support every checked word (the first supporter of each)."""
    out: list[int] = []
    for word in check.words:
        numbers = check.support.get(word) or []
        if numbers and not any(n in out for n in numbers):
            out.append(numbers[0])
    return out


def _quote(text: str) -> str:
    """Evidence text to quote mid-sentence: one line, no final full stop, a leading article in lower case."""
    text = " ".join(text.split()).rstrip(".")
    return re.sub(r"^(A|An|The) ", lambda m: m.group(1).lower() + " ", text)


def fallback_answer(evidence: Sequence[dict], question: str = "", most: int = 2) -> tuple[str, list[int]]:
    """The honest answer when the model's is not supported: the closest matches from the evidence
    (text read from the image when the question is about text, the caption the other captions agree
    with most, the most likely class label), cited; or :data:`CANNOT_TELL` when there is none."""
    from ..generate.consensus import consensus_select

    picks: list[dict] = []
    ocr = [e for e in evidence if e.get("kind") == "ocr" and str(e.get("text") or "").strip()]
    if ocr and re.search(r"\b(say|says|text|read|written|write|sign|word|words|letters?)\b", question.lower()):
        picks.append(ocr[0])
    captions = [e for e in evidence if e.get("kind") == "caption" and str(e.get("text") or "").strip()]
    labels = sorted((e for e in evidence if e.get("kind") == "label"), key=lambda e: -(e.get("score") or 0.0))
    if captions:
        best = consensus_select([c["text"] for c in captions])[0] if len(captions) > 1 else 0
        picks.append(captions[best])
    if labels and not (picks and _quote(str(labels[0]["text"])).lower() in _quote(str(picks[-1]["text"])).lower()):
        picks.append(labels[0])  # unless the caption already says it ("a ram" and the label "ram")
    picks = picks[:most]
    if not picks:
        return CANNOT_TELL, []
    described = [f"{_quote(str(p['text']))} [{p['number']}]" for p in picks]
    lead = "the closest matches are" if len(described) > 1 else "the closest match is"
    return (f"{CANNOT_TELL[:-1]}; {lead} {' and '.join(described)}.",
            [int(p["number"]) for p in picks])
