"""Choose a translation route for a source and target language, and run it.

Order: an explicitly named translator (``--translator apertium``) or language model
(``--generator SPEC``) is used as asked; otherwise Apertium when it has the pair installed. The
source language is the one named (``--from``), else the one detected in the text
(:func:`~.languages.detect_language`), else the language the text was read with (the OCR pack).
When nothing can translate, :class:`~.base.TranslationUnavailableError` names the installed pairs
and what would help; a route that fails while translating reports the error and no text.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...errors import GenerationError, MissingDependencyError
from ..base import GenerationParams, Generator
from .base import TranslationUnavailableError, Translator, load_translator
from .languages import Language, detect_language, find_language, language_names, language_of_pack

EXAMPLE_MODEL = "'openai:llama3.2?base_url=http://localhost:11434/v1'"


@dataclass(frozen=True)
class Route:
    kind: str  # "same" (already in the target language) | "apertium" | "model"
    source: str  # ISO 639-3 code, or "" when unknown (a language model is told only the target)
    target: str  # ISO 639-3 code, or the name as given for a language the table does not know
    by: str = ""  # the translator's or generator's spec

    def describe(self) -> str:
        if self.kind == "same":
            return f"none: the text is already in {self.target}"
        pair = f"{self.source or '?'}->{self.target}"
        return f"{self.by} ({pair}, rule-based)" if self.kind == "apertium" else f"{self.by} ({pair}, language model)"


@dataclass
class Translation:
    translations: list[str | None]
    route: Route
    source_from: str  # "given" | "detected" | "ocr language" | "unknown"
    prompt: str | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"route": self.route.kind, "translator": self.route.by, "source_lang": self.route.source,
                "source_from": self.source_from, "target": self.route.target, "describe": self.route.describe()}


def _apertium() -> Translator | None:
    try:
        return load_translator("apertium")
    except MissingDependencyError:
        return None


def _pairs_text(translator: Translator | None) -> str:
    pairs = translator.pairs() if translator is not None else []
    return ", ".join(f"{s}-{t}" for s, t in pairs) or "none (apt-get install apertium apertium-eng-spa ...)"


def source_language(texts: Sequence[str], given: str | None, ocr_lang: str | None) -> tuple[Language | None, str]:
    """The source language and where it came from."""
    if given:
        lang = find_language(given)
        if lang is None:
            raise TranslationUnavailableError(f"unknown source language {given!r}; use a name or code such as "
                                              f"{language_names()}")
        return lang, "given"
    found = detect_language("\n".join(texts))
    if found is not None:
        return found[0], "detected"
    if ocr_lang:
        lang = language_of_pack(ocr_lang)
        if lang is not None:
            return lang, "ocr language"
    return None, "unknown"


def plan_route(source: Language | None, target: str, *, translator: Translator | str | None = None,
               generator: Generator | None = None) -> Route:
    """The route that translates ``source`` into ``target`` here (see the module docstring)."""
    goal = find_language(target)
    goal_code = goal.code if goal else " ".join(target.split())
    if source is not None and goal is not None and source.code == goal.code:
        return Route("same", source.code, goal.code)
    if translator is not None:
        chosen = load_translator(translator)
        if source is None or goal is None or not chosen.can(source.code, goal.code):
            raise TranslationUnavailableError(
                f"{chosen.spec} cannot translate {_name(source)} into {_name(goal) if goal else target!r}; its "
                f"installed pairs: {_pairs_text(chosen)}")
        return Route("apertium", source.code, goal.code, chosen.spec)
    if generator is not None:
        return Route("model", source.code if source else "", goal_code, generator.spec)
    apertium = _apertium()
    if apertium is not None and source is not None and goal is not None and apertium.can(source.code, goal.code):
        return Route("apertium", source.code, goal.code, apertium.spec)
    if goal is None:
        raise TranslationUnavailableError(f"unknown language {target!r}; use a name or code such as {language_names()}, "
                                          f"or pass a language model with --generator SPEC")
    what = f"from {_name(source)}" if source else "from an undetected language (pass --from LANG)"
    raise TranslationUnavailableError(
        f"no installed translator translates {what} into {_name(goal)}; installed Apertium pairs: "
        f"{_pairs_text(apertium)}; install a pair (apt-get install apertium-<src>-<tgt>) or pass a language model "
        f"with --generator SPEC, e.g. {EXAMPLE_MODEL}")


def _name(lang: Language | None) -> str:
    return f"{lang.name} ({lang.code})" if lang else "an unknown language"


def translate_texts(texts: Sequence[str], target: str, *, source: str | None = None, ocr_lang: str | None = None,
                    translator: Translator | str | None = None, generator: Generator | None = None,
                    params: GenerationParams | None = None) -> Translation:
    """Translate ``texts`` into ``target`` (a language name or code) by the best route here.

    Raises :class:`TranslationUnavailableError` when no route can; a route that fails while
    translating leaves ``translations`` as None and says why in ``error``."""
    from .model import translate_lines, translate_prompt

    lang, source_from = source_language(texts, source, ocr_lang)
    route = plan_route(lang, target, translator=translator, generator=generator)
    out = Translation([None] * len(texts), route, source_from)
    if not texts:
        return out
    t = time.perf_counter()
    try:
        if route.kind == "same":
            out.translations = list(texts)
        elif route.kind == "apertium":
            chosen = load_translator(translator or "apertium")
            out.translations = list(chosen.translate(texts, route.source, route.target))
        else:
            assert generator is not None
            goal = find_language(target)
            named = target if goal is None or len(target.strip()) > 3 else goal.name  # "es" -> "Spanish"
            out.prompt = translate_prompt(texts, named)
            out.translations = translate_lines(texts, named, generator, params=params)
    except GenerationError as exc:
        out.error = f"translation by {route.by} failed, the text read is shown untranslated: {exc}"
    out.seconds["translate"] = round(time.perf_counter() - t, 3)
    return out
