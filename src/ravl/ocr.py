"""Reading text in images (signs, labels, adverts) and translating it through a language model.

Engines: Tesseract (the ``tesseract`` program, from Debian's ``tesseract-ocr``, driven by
pytesseract; ``pip install 'ravl[ocr]'``) and RapidOCR (``rapidocr_onnxruntime`` or
``rapidocr``, used when installed and asked for). Each returns :class:`TextLine` objects: the
text, its box in the original image's pixels and a confidence in [0, 1].
"""
from __future__ import annotations

import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from .errors import ConfigError, GenerationError, InputError, MissingDependencyError
from .generate.base import GenerationParams, Generator

ENGINES = ("auto", "tesseract", "rapidocr")
#: images whose longer side is below this are upscaled before Tesseract reads them
_UPSCALE_BELOW = 1200

TRANSLATE_TEMPLATE = (
    "Translate each numbered line of text, read from an image, into {language}. Answer with one "
    "line per input line, numbered the same way (\"1. ...\"), and nothing else. Copy names, numbers "
    "and lines already in {language} unchanged.\n"
    "\n"
    "{lines}\n"
    "\n"
    "Translation:"
)
_NUMBERED = re.compile(r"^\s*\[?(\d+)\s*[\].:)\-]\s*(.*?)\s*$")


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
    generator: str | None = None
    prompt: str | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

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
        return {"image": self.image, "engine": self.engine, "text": self.text, "lines": lines,
                "target_lang": self.target_lang, "generator": self.generator, "prompt": self.prompt,
                "error": self.error, "seconds": self.seconds}


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


# --- translation ----------------------------------------------------------------------------------
def translate_prompt(texts: Sequence[str], target_lang: str) -> str:
    """The prompt asking a language model to translate numbered ``texts`` into ``target_lang``."""
    if not target_lang or not target_lang.strip():
        raise ConfigError("name the language to translate into, e.g. --translate-to English")
    numbered = "\n".join(f"{i}. {' '.join(t.split())}" for i, t in enumerate(texts, start=1))
    values = {"language": " ".join(target_lang.split()), "lines": numbered}
    return re.sub(r"\{(language|lines)\}", lambda m: values[m.group(1)], TRANSLATE_TEMPLATE)


def parse_translation(answer: str, n: int) -> list[str | None]:
    """Split a numbered answer into ``n`` translations (None where a number is missing).

    A single line of text translating a single input line needs no number.
    """
    out: list[str | None] = [None] * n
    plain = []
    for raw in answer.splitlines():
        match = _NUMBERED.match(raw)
        if match and 1 <= int(match.group(1)) <= n:
            out[int(match.group(1)) - 1] = match.group(2)
        elif raw.strip():
            plain.append(raw.strip())
    if n == 1 and out[0] is None and plain:
        out[0] = " ".join(plain)
    return out


#: spec families known to be too small to translate (checked before loading them)
NO_TRANSLATION_FAMILIES = ("smollm2",)


def check_can_translate(generator: Generator | str, *, force: bool = False) -> None:
    """Raise :class:`ConfigError` for a model that declares it cannot translate, unless ``force``."""
    if force:
        return
    if isinstance(generator, str):
        from .specs import parse_spec

        refused = parse_spec(generator).family in NO_TRANSLATION_FAMILIES
        name = generator
    else:
        refused = not getattr(generator, "can_translate", True)
        name = generator.spec
    if refused:
        raise ConfigError(
            f"{name!r} is too small to translate (SmolLM2-135M turned '停车', 'stop', into nonsense; see "
            "docs/generation.md); use a larger model, e.g. --generator 'openai:llama3.2?base_url="
            "http://localhost:11434/v1', or pass --force to try anyway")


def translate_lines(lines: Sequence[TextLine | str], target_lang: str, generator: Generator, *,
                    params: GenerationParams | None = None) -> list[str | None]:
    """Translate each line through ``generator``; one model call for all lines.

    Returns one translation per line (None where the model's answer skipped a line). Raises
    :class:`GenerationError` when the generator is not a language model or fails.
    """
    texts = [line.text if isinstance(line, TextLine) else str(line) for line in lines]
    if not texts:
        return []
    if not getattr(generator, "is_language_model", True):
        raise GenerationError(f"translation needs a language model, and {generator.spec!r} is not one; pass "
                              "--generator (e.g. 'openai:llama3.2?base_url=http://localhost:11434/v1')")
    if params is None:
        params = GenerationParams(max_tokens=min(1024, 32 + 3 * sum(len(t.split()) + 2 for t in texts)))
    answer = generator.generate(translate_prompt(texts, target_lang), params=params)
    return parse_translation(answer, len(texts))


def read_image_text(image: Image.Image, *, name: str = "", engine: str = "auto", lang: str = "eng",
                    min_confidence: float = 0.4, translate_to: str | None = None,
                    generator: Generator | None = None,
                    params: GenerationParams | None = None) -> ReadResult:
    """Read ``image`` and optionally translate its lines; a failing translation is reported in
    ``error`` and the lines read are still returned."""
    t0 = time.perf_counter()
    used = engine if engine != "auto" else (available_engines() or ["tesseract"])[0]
    lines = read_text(image, engine=used, lang=lang, min_confidence=min_confidence)
    result = ReadResult(name, used, lines, seconds={"read": round(time.perf_counter() - t0, 3)})
    if translate_to is None:
        return result
    if generator is None:
        raise ConfigError("translation needs a language model; pass --generator SPEC")
    result.target_lang, result.generator = translate_to, generator.spec
    result.translations = [None] * len(lines)
    if not lines:
        return result
    result.prompt = translate_prompt([line.text for line in lines], translate_to)
    t1 = time.perf_counter()
    try:
        result.translations = translate_lines(lines, translate_to, generator, params=params)
    except GenerationError as exc:
        result.error = f"translation failed, the text read is shown untranslated: {exc}"
    result.seconds["translate"] = round(time.perf_counter() - t1, 3)
    return result
