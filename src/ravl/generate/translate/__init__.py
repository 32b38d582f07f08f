"""Translators: text in one language -> text in another, offline.

Two routes, one contract (:class:`~.base.Translator`):

* ``apertium`` (:mod:`.apertium`): Debian's rule-based engine and its language-pair packages
  (``apertium-eng-spa``, ``apertium-eng-cat``, ``apertium-fr-es``, ...), run through the
  ``apertium`` command; real translation for the installed pairs, no model;
* a language model (:mod:`.model`): any generator that can translate (``openai:``, ``hf:``,
  ``llamacpp:``), prompted with numbered lines.

:mod:`.route` picks the route for a source and target language (:mod:`.languages` names and
detects them) and says which it used; :func:`~.route.translate_texts` is the one entry point.
"""
from __future__ import annotations

from ...lazy import lazy_exports

_EXPORTS = {
    "Translator": "base",
    "TranslationUnavailableError": "base",
    "load_translator": "base",
    "Language": "languages",
    "find_language": "languages",
    "detect_language": "languages",
    "Route": "route",
    "Translation": "route",
    "plan_route": "route",
    "translate_texts": "route",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
