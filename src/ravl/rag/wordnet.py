"""A small reader for Princeton WordNet 3.0 as Debian's ``wordnet-base`` installs it
(``/usr/share/wordnet``): base forms, synonyms and noun hypernyms, for checking that an answer's
words are entailed by its evidence ("drake" entails "duck", "bird" and "animal").

The index files are read once per process (about 0.3 s for nouns); synsets are read by seeking
to their byte offset in ``data.<pos>``, so only the synsets a check touches are parsed. ImageNet's
class ids are WordNet 3.0 noun offsets (``n01847000`` is ``drake``), so a class label names its
exact sense. Without the files every function degrades to plain word matching
(:func:`available` is False).
"""
from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

#: where Debian's wordnet-base puts the database; RAVL_WORDNET overrides it
DEFAULT_DIR = "/usr/share/wordnet"
INSTALL_HINT = "apt-get install wordnet-base"
POS_FILES = {"n": "noun", "a": "adj", "v": "verb", "r": "adv"}
#: senses of a word (in WordNet's frequency order) whose hypernyms count as entailed
SENSES = 3
#: hypernyms this generic are entailed by nearly everything and say nothing
_TOO_GENERIC = frozenset({"entity", "physical entity", "abstraction", "abstract entity", "object", "physical object",
                          "whole", "unit", "matter", "thing", "causal agent", "cause", "causal agency", "group",
                          "grouping", "relation", "attribute", "measure", "psychological feature", "event"})
_PLURAL = (("ies", "y"), ("ves", "f"), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
           ("men", "man"), ("s", ""))
_SUFFIXES = {"n": _PLURAL, "a": (("er", ""), ("est", ""), ("ier", "y"), ("iest", "y")),
             "v": (("s", ""), ("es", ""), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e")), "r": ()}


def folder() -> Path:
    return Path(os.environ.get("RAVL_WORDNET") or DEFAULT_DIR)


def available() -> bool:
    base = folder()
    return all((base / f"{kind}.noun").is_file() for kind in ("index", "data"))


@cache
def _index(pos: str) -> dict[str, tuple[int, ...]]:
    """lemma -> synset offsets (most frequent sense first) for one part of speech."""
    out: dict[str, tuple[int, ...]] = {}
    path = folder() / f"index.{POS_FILES[pos]}"
    if not path.is_file():
        return out
    with open(path, encoding="latin-1") as fh:
        for line in fh:
            if line.startswith(" "):
                continue
            parts = line.split()
            try:
                count = int(parts[2])
            except (IndexError, ValueError):
                continue
            out[parts[0]] = tuple(int(x) for x in parts[-count:])
    return out


@cache
def _exceptions(pos: str) -> dict[str, str]:
    path = folder() / f"{POS_FILES[pos]}.exc"
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="latin-1").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out.setdefault(parts[0], parts[1])
    return out


@cache
def synset(pos: str, offset: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``(lemmas, hypernym offsets)`` of the synset at ``offset`` in ``data.<pos>``."""
    path = folder() / f"data.{POS_FILES[pos]}"
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            parts = fh.readline().decode("latin-1").split(" | ")[0].split()
    except OSError:
        return (), ()
    if not parts or not parts[0].isdigit() or int(parts[0]) != offset:
        return (), ()
    n_words = int(parts[3], 16)
    lemmas = tuple(re.sub(r"\(.*\)$", "", parts[4 + 2 * i]).replace("_", " ").lower() for i in range(n_words))
    at = 4 + 2 * n_words
    n_pointers = int(parts[at])
    hypernyms = []
    for i in range(n_pointers):
        symbol, target, target_pos = parts[at + 1 + 4 * i: at + 4 + 4 * i]
        if symbol in ("@", "@i") and target_pos == pos:
            hypernyms.append(int(target))
    return lemmas, tuple(hypernyms)


def base_forms(word: str, pos: str = "n") -> list[str]:
    """``word`` and its possible dictionary forms in ``pos`` ("grapes" -> "grape", "mice" -> "mouse"),
    the form itself first; without WordNet, plain suffix stripping."""
    word = word.lower()
    forms = [word]
    exc = _exceptions(pos).get(word) if available() else None
    if exc:
        forms.append(exc)
    index = _index(pos) if available() else None
    for suffix, repl in _SUFFIXES[pos]:
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            cand = word[: -len(suffix)] + repl
            if cand not in forms and (index is None or cand in index):
                forms.append(cand)
    return forms


def is_noun(word: str) -> bool:
    return available() and any(form.replace(" ", "_") in _index("n") for form in base_forms(word))


def known(word: str) -> bool:
    """True when WordNet has ``word`` (or one of its base forms) in any part of speech."""
    return available() and any(senses(word, pos) for pos in POS_FILES)


def senses(word: str, pos: str = "n") -> tuple[int, ...]:
    if not available():
        return ()
    index = _index(pos)
    for form in base_forms(word, pos):
        found = index.get(form.replace(" ", "_"))
        if found:
            return found
    return ()


def entailed(offsets: tuple[int, ...] | list[int], pos: str = "n", depth: int = 12) -> set[str]:
    """Every lemma of the synsets at ``offsets`` and of their hypernyms (nouns), minus the most
    generic ones: what a thing described by those synsets can truthfully also be called."""
    out: set[str] = set()
    frontier = list(offsets)
    seen: set[int] = set()
    for _ in range(depth):
        nxt: list[int] = []
        for offset in frontier:
            if offset in seen:
                continue
            seen.add(offset)
            lemmas, hypernyms = synset(pos, offset)
            out.update(lemma for lemma in lemmas if lemma not in _TOO_GENERIC)
            if pos == "n":
                nxt.extend(hypernyms)
        frontier = nxt
        if not frontier:
            break
    return out


def expand(word: str) -> set[str]:
    """What evidence containing ``word`` entails: the word, its base forms, the synonyms of its first
    adjective sense and, for nouns, the lemmas of its first :data:`SENSES` senses and their hypernyms."""
    out = set(base_forms(word))
    if not available():
        return out
    out |= entailed(senses(word, "n")[:SENSES], "n")
    out |= entailed(senses(word, "a")[:1], "a")
    return out


def expand_synset(wnid: str) -> set[str]:
    """What an ImageNet class (a WordNet id such as ``n01847000``) entails: its lemmas and hypernyms."""
    if not (available() and re.fullmatch(r"n\d{8}", wnid)):
        return set()
    return entailed([int(wnid[1:])], "n")
