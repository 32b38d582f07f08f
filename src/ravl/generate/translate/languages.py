"""Language names and codes: ISO 639-1 (``zh``), ISO 639-2/3 (``zho``, ``fre``), English and native
names (``Chinese``, ``español``), Tesseract's language packs (``chi_sim``) and the Debian package
that installs each pack (``tesseract-ocr-chi-sim``); and a small script + function-word detector.

Every code is normalised to one :class:`Language`, whose ``code`` is ISO 639-3 (what Apertium's
newer pairs use: ``eng-spa``; its older pairs use ISO 639-1: ``fr-es``, also understood).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-3, e.g. "zho"
    iso1: str  # ISO 639-1, e.g. "zh"
    name: str  # English name
    tesseract: tuple[str, ...]  # Tesseract packs, preferred first, e.g. ("chi_sim", "chi_tra")
    aliases: tuple[str, ...] = ()  # other codes and names, lower case

    @property
    def debian_packages(self) -> tuple[str, ...]:
        """Debian's package for each Tesseract pack (underscores become hyphens)."""
        return tuple(tesseract_package(pack) for pack in self.tesseract)


LANGUAGES = (
    Language("eng", "en", "English", ("eng",), ("english",)),
    Language("spa", "es", "Spanish", ("spa",), ("español", "espanol", "castellano", "castilian")),
    Language("cat", "ca", "Catalan", ("cat",), ("català", "catala", "valencian")),
    Language("fra", "fr", "French", ("fra",), ("fre", "français", "francais")),
    Language("por", "pt", "Portuguese", ("por",), ("português", "portugues")),
    Language("deu", "de", "German", ("deu",), ("ger", "deutsch")),
    Language("ita", "it", "Italian", ("ita",), ("italiano",)),
    Language("nld", "nl", "Dutch", ("nld",), ("dut", "nederlands", "flemish")),
    Language("glg", "gl", "Galician", ("glg",), ("galego",)),
    Language("oci", "oc", "Occitan", ("oci",), ()),
    Language("eus", "eu", "Basque", ("eus",), ("baq", "euskara")),
    Language("ron", "ro", "Romanian", ("ron",), ("rum", "română")),
    Language("epo", "eo", "Esperanto", ("epo",), ()),
    Language("swe", "sv", "Swedish", ("swe",), ("svenska",)),
    Language("dan", "da", "Danish", ("dan",), ("dansk",)),
    Language("nob", "nb", "Norwegian Bokmål", ("nor",), ("nor", "no", "norwegian", "bokmål", "bokmal")),
    Language("fin", "fi", "Finnish", ("fin",), ("suomi",)),
    Language("pol", "pl", "Polish", ("pol",), ("polski",)),
    Language("ces", "cs", "Czech", ("ces",), ("cze", "čeština")),
    Language("rus", "ru", "Russian", ("rus",), ("русский",)),
    Language("ukr", "uk", "Ukrainian", ("ukr",), ()),
    Language("ell", "el", "Greek", ("ell",), ("gre", "ελληνικά")),
    Language("tur", "tr", "Turkish", ("tur",), ("türkçe",)),
    Language("ara", "ar", "Arabic", ("ara",), ("العربية",)),
    Language("heb", "he", "Hebrew", ("heb",), ("iw",)),
    Language("hin", "hi", "Hindi", ("hin",), ()),
    Language("tha", "th", "Thai", ("tha",), ()),
    Language("vie", "vi", "Vietnamese", ("vie",), ("tiếng việt",)),
    Language("zho", "zh", "Chinese", ("chi_sim", "chi_tra"),
             ("chi", "cmn", "mandarin", "zh-cn", "zh-hans", "zh-tw", "zh-hant", "zh_cn", "zh_tw", "chinese simplified",
              "simplified chinese", "chinese traditional", "traditional chinese", "中文", "汉语", "chi_sim", "chi_tra")),
    Language("jpn", "ja", "Japanese", ("jpn",), ("jp", "日本語")),
    Language("kor", "ko", "Korean", ("kor",), ("한국어",)),
)


def tesseract_package(pack: str) -> str:
    """Debian's package for a Tesseract pack: ``chi_sim`` -> ``tesseract-ocr-chi-sim``."""
    return "tesseract-ocr-" + pack.lower().replace("_", "-")


@cache
def _table() -> dict[str, Language]:
    out: dict[str, Language] = {}
    for lang in LANGUAGES:
        for key in (lang.code, lang.iso1, lang.name.lower(), *lang.tesseract, *lang.aliases):
            out.setdefault(key.lower(), lang)
    return out


def find_language(text: str) -> Language | None:
    """The language named by ``text`` (a code or a name, any case; ``pt_BR``/``en-US`` regions are
    ignored), or None."""
    key = " ".join(str(text).strip().lower().split())
    table = _table()
    if key in table:
        return table[key]
    base = re.split(r"[-_]", key)[0]
    return table.get(base)


def language_names() -> str:
    """A short list for error messages."""
    return ", ".join(f"{lang.name} ({lang.iso1})" for lang in LANGUAGES[:10]) + ", ..."


def language_of_pack(pack: str) -> Language | None:
    """The language of a Tesseract language string (``fra+eng`` -> French: its first pack)."""
    first = pack.split("+")[0].strip()
    return find_language(first) if first else None


# --- detection ---------------------------------------------------------------------------------
_SCRIPTS = (
    (re.compile(r"[\u3040-\u30ff]"), "jpn"),  # kana: Japanese even when kanji are mixed in
    (re.compile(r"[\uac00-\ud7af\u1100-\u11ff]"), "kor"),
    (re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]"), "zho"),
    (re.compile(r"[\u0400-\u04ff]"), "rus"),
    (re.compile(r"[\u0600-\u06ff]"), "ara"),
    (re.compile(r"[\u0590-\u05ff]"), "heb"),
    (re.compile(r"[\u0370-\u03ff]"), "ell"),
    (re.compile(r"[\u0900-\u097f]"), "hin"),
    (re.compile(r"[\u0e00-\u0e7f]"), "tha"),
)
#: frequent function words and sign words of the Latin-script languages Apertium pairs cover
_WORDS = {
    "eng": "the of and to in is it you that for on with this are be no not do stop exit open closed entrance "
           "parking smoking welcome please keep out danger push pull free sale",
    "spa": "el la los las de del y en que es un una por para con no se al prohibido salida entrada abierto "
           "cerrado cuidado peligro fumar bienvenidos aparcar calle",
    "cat": "el la els les de del i en que és un una per amb no es al prohibit sortida entrada obert tancat "
           "perill benvinguts fumar carrer",
    "fra": "le la les de des du et en que est un une pour avec ne pas au interdit sortie entrée ouvert fermé "
           "danger attention bienvenue fumer stationnement rue",
    "por": "o a os as de do da e em que é um uma para com não se ao proibido saída entrada aberto fechado "
           "perigo bem-vindo fumar rua",
    "deu": "der die das und in ist zu den nicht mit ein eine für auf verboten ausgang eingang geöffnet "
           "geschlossen achtung gefahr willkommen rauchen parken straße",
    "ita": "il lo la le di del e in che è un una per con non si al vietato uscita entrata aperto chiuso "
           "pericolo benvenuti fumare",
    "nld": "de het een en van in is op te niet met voor verboden uitgang ingang open gesloten gevaar welkom "
           "roken parkeren",
}


@cache
def _word_sets() -> dict[str, frozenset[str]]:
    return {code: frozenset(words.split()) for code, words in _WORDS.items()}


def detect_language(text: str) -> tuple[Language, float] | None:
    """``(language, confidence)`` of ``text`` by its script (CJK, Cyrillic, Arabic, ...) or, for Latin
    script, by its share of each language's frequent words; None when there is too little to tell."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return None
    for pattern, code in _SCRIPTS:
        hits = len(pattern.findall(text))
        if hits and hits / len(letters) >= 0.3:
            return find_language(code), round(min(1.0, hits / len(letters)), 3)  # type: ignore[return-value]
    words = re.findall(r"[^\W\d_]+(?:-[^\W\d_]+)?", text.lower())
    if not words:
        return None
    scores = Counter({code: sum(w in vocab for w in words) for code, vocab in _word_sets().items()})
    ranked = scores.most_common(2)
    (best, hits), runner_up = ranked[0], (ranked[1][1] if len(ranked) > 1 else 0)
    if hits == 0 or hits == runner_up:
        return None
    return find_language(best), round((hits - runner_up) / len(words), 3)  # type: ignore[return-value]
