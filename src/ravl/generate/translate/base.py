"""The translator contract: lines of text in a source language -> the same lines in a target
language, one output line per input line, or an error from :class:`~ravl.errors.GenerationError`'s
family. A backend lists the language pairs it can translate (``pairs``), as ISO 639-3 codes."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ...errors import ConfigError
from ...specs import Spec


class TranslationUnavailableError(ConfigError):
    """Translation was asked for and no installed route can do it: the message names the installed
    pairs and what to install or pass instead."""


class Translator(ABC):
    #: canonical spec string, reported with every translation
    spec: str

    @abstractmethod
    def pairs(self) -> list[tuple[str, str]]:
        """The ``(source, target)`` ISO 639-3 pairs this translator can do here."""

    def can(self, source: str, target: str) -> bool:
        return (source, target) in self.pairs()

    @abstractmethod
    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """One translation per text, in order (``source``/``target`` are ISO 639-3 codes)."""


def load_translator(spec: str | Spec | Translator = "apertium") -> Translator:
    """The translator named by ``spec`` (a :class:`Translator` is returned as it is)."""
    if isinstance(spec, Translator):
        return spec
    from ... import registry

    return registry.create("translators", spec)
