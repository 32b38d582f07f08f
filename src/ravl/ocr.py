"""Reading text in images (signs, labels, adverts), with hints when the language is wrong, and
translating it (:mod:`ravl.generate.translate`: Apertium offline, or a language model).

Engines: Tesseract (the ``tesseract`` program, from Debian's ``tesseract-ocr``, driven by
pytesseract; ``pip install 'ravl[ocr]'``) and RapidOCR (``rapidocr_onnxruntime`` or
``rapidocr``, used when installed and asked for). Each returns :class:`TextLine` objects: the
text, its box in the original image's pixels and a confidence in [0, 1].
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from functools import cache

from PIL import Image, ImageOps

from .errors import ConfigError, InputError, MissingDependencyError
from .generate.base import GenerationParams, Generator

ENGINES = ("auto", "tesseract", "rapidocr")
#: images whose longer side is below this are upscaled before Tesseract reads them
_UPSCALE_BELOW = 1200



@dataclass(frozen=True)
class TextLine:
    """One line of text read from an image."""

    text: str
    box: tuple[int, int, int, int]  # left, top, width, height in the original image's pixels
    confidence: float  # 0..1

    def to_dict(self) -> dict:
        return {"text": self.text, "box": list(self.box), "confidence": round(self.confidence, 4)}


@dataclass
class ReadResult:
    """What :func:`read_image_text` found, with any translation and the error if that failed."""

    image: str
    engine: str
    lines: list[TextLine] = field(default_factory=list)
    translations: list[str | None] | None = None
    target_lang: str | None = None
    generator: str | None = None  # the translator's or language model's spec
    prompt: str | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    lang: str = ""  # the Tesseract packs read with
    #: when nothing was read: the --lang that reads the image, and what it read
    hint: dict | None = None
    #: how the lines were translated: route, translator, source_lang (+ where it came from), target
    translation: dict | None = None

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def to_dict(self) -> dict:
        lines = []
        for i, line in enumerate(self.lines):
            d = line.to_dict()
            if self.translations is not None:
                d["translation"] = self.translations[i]
            lines.append(d)
        return {"image": self.image, "engine": self.engine, "lang": self.lang, "text": self.text, "lines": lines,
                "hint": self.hint, "target_lang": self.target_lang, "translation": self.translation,
                "generator": self.generator, "prompt": self.prompt, "error": self.error, "seconds": self.seconds}


# --- engines ------------------------------------------------------------------------------------
def _pytesseract():
    try:
        import pytesseract
    except ImportError as exc:
        raise MissingDependencyError(
            "reading text needs pytesseract and the tesseract program; install them with: "
            "pip install 'ravl[ocr]' and apt-get install tesseract-ocr"
        ) from exc
    return pytesseract


def _rapidocr():
    """A RapidOCR engine object, or None when neither package is installed."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        try:
            from rapidocr import RapidOCR
        except ImportError:
            return None
    return RapidOCR()


def available_engines() -> list[str]:
    """The OCR engines usable on this machine, preferred first."""
    found = []
    try:
        import pytesseract  # noqa: F401

        if shutil.which("tesseract"):
            found.append("tesseract")
    except ImportError:
        pass
    try:
        import rapidocr_onnxruntime  # noqa: F401
        found.append("rapidocr")
    except ImportError:
        try:
            import rapidocr  # noqa: F401
            found.append("rapidocr")
        except ImportError:
            pass
    return found


#: Tesseract scripts written without spaces between words (their words are joined with none)
_CJK_LANGS = ("chi_sim", "chi_tra", "jpn", "kor", "chi_sim_vert", "chi_tra_vert", "jpn_vert", "kor_vert")
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
#: Tesseract reads best at about this letter height (px); far larger letters are read again smaller
_GOOD_HEIGHT, _TOO_TALL = 40, 80


def _join_words(words: list[str]) -> str:
    """Words of one line, with no space between two CJK characters (Tesseract splits Chinese and
    Japanese into 'words' the text never separated)."""
    out = ""
    for word in words:
        if out and not (_CJK.match(out[-1]) and _CJK.match(word[0])):
            out += " "
        out += word
    return out


def _tesseract_pass(grey: Image.Image, lang: str, scale: float, psm: int) -> list[tuple[TextLine, float]]:
    """One Tesseract run at ``scale``: lines (boxes in original pixels) with their median word height
    in the scaled image."""
    pytesseract = _pytesseract()
    if scale != 1.0:
        grey = grey.resize((round(grey.width * scale), round(grey.height * scale)), Image.Resampling.LANCZOS)
    try:
        data = pytesseract.image_to_data(grey, lang=lang, config=f"--psm {psm}", output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError:
        raise MissingDependencyError(
            "the tesseract program is not installed or not on PATH; install it with: "
            "apt-get install tesseract-ocr (or brew install tesseract), or use --engine rapidocr"
        ) from None
    except pytesseract.TesseractError as exc:
        message = " ".join(str(exc).split())
        if "Failed loading language" in message or "load any languages" in message:
            packages = " ".join(f"tesseract-ocr-{code.replace('_', '-')}" for code in lang.split("+"))
            raise MissingDependencyError(
                f"Tesseract has no data for language {lang!r}; install it with: apt-get install {packages} "
                "(codes use underscores, e.g. chi_sim; list installed ones with tesseract --list-langs)"
            ) from None
        raise InputError(f"Tesseract could not read the image: {message}") from None
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, word in enumerate(data["text"]):
        if word.strip() and float(data["conf"][i]) >= 0:
            groups.setdefault((data["block_num"][i], data["par_num"][i], data["line_num"][i]), []).append(i)
    lines = []
    for idx in groups.values():
        conf = sum(float(data["conf"][i]) for i in idx) / len(idx) / 100.0
        left = min(data["left"][i] for i in idx)
        top = min(data["top"][i] for i in idx)
        right = max(data["left"][i] + data["width"][i] for i in idx)
        bottom = max(data["top"][i] + data["height"][i] for i in idx)
        box = tuple(round(v / scale) for v in (left, top, right - left, bottom - top))
        height = sorted(data["height"][i] for i in idx)[len(idx) // 2]
        lines.append((TextLine(_join_words([data["text"][i].strip() for i in idx]), box, conf), float(height)))
    return lines


def _tesseract_lines(image: Image.Image, lang: str, min_confidence: float) -> list[TextLine]:
    grey = ImageOps.grayscale(image)
    scale = 1.0
    if max(grey.size) < _UPSCALE_BELOW:  # Tesseract reads text best at ~30 px letter height
        scale = min(4.0, _UPSCALE_BELOW / max(grey.size))
    found = _tesseract_pass(grey, lang, scale, 3)
    if found:
        height = sorted(h for _, h in found)[len(found) // 2]
        if height > _TOO_TALL:  # letters far taller than Tesseract reads best (CJK suffers most): read smaller
            again = _tesseract_pass(grey, lang, scale * _GOOD_HEIGHT / height, 3)
            if again and _mean_confidence(again) > _mean_confidence(found):
                found = again
    elif any(code in _CJK_LANGS for code in lang.split("+")):
        # a short CJK sign that page segmentation missed: read it as one block of text, unscaled
        found = _tesseract_pass(grey, lang, 1.0, 6)
    return [line for line, _ in found if line.confidence >= min_confidence]


def _mean_confidence(found: list[tuple[TextLine, float]]) -> float:
    return sum(line.confidence for line, _ in found) / len(found)


def _rapidocr_lines(image: Image.Image, min_confidence: float) -> list[TextLine]:
    import numpy as np

    engine = _rapidocr()
    if engine is None:
        raise MissingDependencyError("RapidOCR is not installed; install it with: pip install rapidocr_onnxruntime")
    out = engine(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))  # RapidOCR expects BGR arrays
    if isinstance(out, tuple):  # rapidocr_onnxruntime: (result or None, elapsed)
        rows = out[0] or []
    else:  # rapidocr >= 2: an output object with boxes, txts, scores
        rows = list(zip(out.boxes if out.boxes is not None else [], out.txts or (), out.scores or ()))
    lines = []
    for points, text, score in rows:
        xs = [float(p[0]) for p in points]
        ys = [float(p[1]) for p in points]
        if text.strip() and float(score) >= min_confidence:
            box = (round(min(xs)), round(min(ys)), round(max(xs) - min(xs)), round(max(ys) - min(ys)))
            lines.append(TextLine(text.strip(), box, float(score)))
    return lines


def read_text(image: Image.Image, *, engine: str = "auto", lang: str = "eng",
              min_confidence: float = 0.4) -> list[TextLine]:
    """Read the lines of text in ``image``, top to bottom.

    ``engine`` is ``'tesseract'``, ``'rapidocr'`` or ``'auto'`` (the first available).
    ``lang`` is a Tesseract language code (``eng``, ``deu``, ``fra+eng``); lines whose mean word
    confidence is below ``min_confidence`` are dropped. Raises :class:`MissingDependencyError`
    naming the install command when no engine is available.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown OCR engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if not 0 <= min_confidence <= 1:
        raise ConfigError(f"min_confidence must be between 0 and 1, not {min_confidence}")
    if engine == "auto":
        found = available_engines()
        if not found:
            raise MissingDependencyError(
                "no OCR engine is installed; install Tesseract with: apt-get install tesseract-ocr and "
                "pip install 'ravl[ocr]' (or pip install rapidocr_onnxruntime)"
            )
        engine = found[0]
    image = image.convert("RGB")
    lines = _tesseract_lines(image, lang, min_confidence) if engine == "tesseract" else \
        _rapidocr_lines(image, min_confidence)
    return sorted(lines, key=lambda line: (line.box[1], line.box[0]))


# --- languages and hints ------------------------------------------------------------------------
#: packs of the Latin script: when one of them read nothing, another will not either
_LATIN = frozenset("eng deu fra spa cat por ita nld glg oci eus ron epo swe dan nor fin pol ces tur vie".split())


def tesseract_lang(lang: str) -> str:
    """Tesseract packs for ``lang``: ISO codes and language names become packs (``zh`` -> ``chi_sim``,
    ``German`` -> ``deu``, ``fra+en`` -> ``fra+eng``); pack names and anything unknown pass unchanged."""
    from .generate.translate.languages import find_language

    out = []
    for part in lang.split("+"):
        key = " ".join(part.lower().split())
        found = find_language(key) if key and key not in installed_packs() else None
        if found is None or key in found.tesseract:  # a pack name (chi_tra) stays itself
            out.append(part.strip())
            continue
        exact = key in {found.code, found.iso1, found.name.lower(), *found.aliases}
        out.append(found.tesseract[0] if exact else part.strip())
    return "+".join(out)


@cache
def installed_packs() -> tuple[str, ...]:
    """Tesseract's installed language packs (``osd`` left out); empty without Tesseract."""
    if not shutil.which("tesseract"):
        return ()
    try:
        out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in out.splitlines()[1:] if line.strip() and line.strip() != "osd")


def suggest_lang(image: Image.Image, lang: str, min_confidence: float = 0.4) -> dict | None:
    """When ``lang`` read nothing: try each installed pack of another script (one Tesseract run each)
    and return the one that reads the most, as ``{"lang", "lines", "text", "message"}``; None when
    none reads anything."""
    tried = set(lang.split("+"))
    latin_tried = bool(tried & _LATIN)
    best: tuple[float, str, list[TextLine]] | None = None
    for pack in installed_packs():
        if pack in tried or (latin_tried and pack in _LATIN) or pack.endswith("_vert"):
            continue
        try:
            found = _tesseract_lines(image.convert("RGB"), pack, min_confidence)
        except (MissingDependencyError, InputError):
            continue
        score = sum(len(line.text.replace(" ", "")) * line.confidence for line in found)
        if found and (best is None or score > best[0]):
            best = (score, pack, found)
    if best is None:
        return None
    _, pack, found = best
    text = " / ".join(line.text for line in found)[:120]
    return {"lang": pack, "lines": len(found), "text": text,
            "message": f"no text found with --lang {lang}; --lang {pack} reads {len(found)} line(s): {text!r}"}


# --- translation: see ravl.generate.translate (names kept here for callers) ----------------------
from .generate.translate.model import (  # noqa: E402
    NO_TRANSLATION_FAMILIES,
    TRANSLATE_TEMPLATE,
    check_can_translate,
    parse_translation,
    translate_lines,
    translate_prompt,
)

__all__ = ["NO_TRANSLATION_FAMILIES", "TRANSLATE_TEMPLATE", "ReadResult", "TextLine", "available_engines",
           "check_can_translate", "parse_translation", "read_image_text", "read_text", "translate_lines",
           "translate_prompt"]


def read_image_text(image: Image.Image, *, name: str = "", engine: str = "auto", lang: str = "eng",
                    min_confidence: float = 0.4, translate_to: str | None = None,
                    generator: Generator | None = None, translator: str | None = None,
                    source_lang: str | None = None, params: GenerationParams | None = None,
                    hints: bool = True) -> ReadResult:
    """Read ``image`` and optionally translate its lines.

    ``lang`` takes Tesseract packs, ISO codes or names (``chi_sim``, ``zh``, ``Chinese``,
    ``fra+en``). When nothing is read and ``hints`` is on, the installed packs of other scripts are
    tried and ``hint`` says which ``--lang`` reads the image. ``translate_to`` (a name or code) is
    done by the best route here (:func:`ravl.generate.translate.route.translate_texts`): the named
    ``translator`` or ``generator``, else Apertium for an installed pair; no route raises
    :class:`~ravl.generate.translate.TranslationUnavailableError`, and a route failing mid-way is
    reported in ``error`` with the lines read still returned."""
    from .generate.translate.route import translate_texts

    t0 = time.perf_counter()
    used = engine if engine != "auto" else (available_engines() or ["tesseract"])[0]
    packs = tesseract_lang(lang) if used == "tesseract" else lang
    lines = read_text(image, engine=used, lang=packs, min_confidence=min_confidence)
    result = ReadResult(name, used, lines, lang=packs, seconds={"read": round(time.perf_counter() - t0, 3)})
    if not lines and hints and used == "tesseract":
        t1 = time.perf_counter()
        result.hint = suggest_lang(image, packs, min_confidence)
        result.seconds["hint"] = round(time.perf_counter() - t1, 3)
    if translate_to is None:
        return result
    done = translate_texts([line.text for line in lines], translate_to, source=source_lang,
                           ocr_lang=packs if used == "tesseract" else None, translator=translator,
                           generator=generator, params=params)
    result.target_lang, result.translations, result.prompt = translate_to, done.translations, done.prompt
    result.generator, result.translation, result.error = done.route.by or None, done.to_dict(), done.error
    result.seconds.update(done.seconds)
    return result
