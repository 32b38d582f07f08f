"""The image-generator contract and the checks every backend shares.

The same contract as text generators (:class:`ravl.generate.base.Generator`): callers use
:meth:`ImageGenerator.generate`, which is final; a backend implements :meth:`ImageGenerator.execute`.
``generate`` checks the mode and the parameters, passes ``progress`` only to backends that report
it, and maps library and transport failures onto :class:`~ravl.errors.GenerationError`'s family
(:func:`ravl.generate.base.generation_errors`), so one error family reaches callers.

A backend states what it can do with class attributes: ``modes`` (``text``, ``init``: start from
an image at a ``strength``, ``reference``: images as prompts), ``seeded`` (same seed, same inputs
-> same image) and ``supports_progress`` (``execute`` reports denoising steps). ``generate``
returns a :class:`GeneratedImage` with the settings actually used, so provenance never records a
default it did not apply.
"""
from __future__ import annotations

import io
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import final

from PIL import Image, ImageOps

from ...errors import ConfigError, GenerationError
from ...progress import Progress

MODES = ("text", "init", "reference")
#: longest side and largest area a request may ask for (SDXL's 1024x1024 is 1 M pixels)
MAX_SIDE = 2048
MAX_PIXELS = 2048 * 2048
MAX_STEPS = 500
MAX_SEED = 2**32 - 1
#: ``progress(done, total)`` over denoising steps


@dataclass(frozen=True)
class ImageParams:
    """What to generate; ``None`` means the backend's own default (recorded as used)."""

    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    strength: float = 0.6
    seed: int | None = None
    negative_prompt: str = ""

    def check(self) -> ImageParams:
        """Raise :class:`ConfigError` for values no backend can honour."""
        if (self.width is None) != (self.height is None):
            raise ConfigError("give both width and height (--size WxH), or neither for the generator's default")
        if self.width is not None and self.height is not None:
            check_size(self.width, self.height)
        if self.steps is not None and not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"steps must be between 1 and {MAX_STEPS}, not {self.steps}")
        if self.guidance is not None and not 0 <= self.guidance <= 50:
            raise ConfigError(f"guidance must be between 0 and 50, not {self.guidance}")
        if not 0 < self.strength <= 1:
            raise ConfigError(f"strength must be in (0, 1] (how far to move away from the init image), "
                              f"not {self.strength}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be between 0 and {MAX_SEED}, not {self.seed}")
        return self

    def size_or(self, default: tuple[int, int]) -> tuple[int, int]:
        """(width, height) asked for, else ``default`` (the backend's native size)."""
        if self.width is None or self.height is None:
            return default
        return self.width, self.height

    def with_seed(self) -> ImageParams:
        """These params with a concrete seed (drawn at random when none was given), so that the
        provenance of every image says how to make it again."""
        return self if self.seed is not None else replace(self, seed=random.SystemRandom().randint(0, MAX_SEED))


def check_size(width: int, height: int) -> tuple[int, int]:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or v < 8:
            raise ConfigError(f"{name} must be a positive multiple of 8, not {v!r}")
        if v % 8:
            raise ConfigError(f"{name} {v} is not a multiple of 8 (latent diffusion works on 8-pixel blocks); "
                              f"use {v // 8 * 8 or 8} or {v // 8 * 8 + 8}")
        if v > MAX_SIDE:
            raise ConfigError(f"{name} {v} is too large: at most {MAX_SIDE} pixels a side")
    if width * height > MAX_PIXELS:
        raise ConfigError(f"size {width}x{height} is too large: at most {MAX_PIXELS // 2**20} M pixels")
    return width, height


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    """``"512x768"`` -> (512, 768); empty -> (None, None). Checked: multiples of 8, not too large."""
    if text is None or not str(text).strip():
        return None, None
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"size {text!r} must be WIDTHxHEIGHT, e.g. 512x512") from None
    return check_size(width, height)


@dataclass
class GeneratedImage:
    image: Image.Image
    #: the seed the backend used (None when it cannot be seeded)
    seed: int | None
    steps: int | None
    guidance: float | None
    #: backend facts worth keeping in the provenance (pipeline class, server-reported info)
    extra: dict = field(default_factory=dict)


class ImageGenerator(ABC):
    #: canonical spec string, recorded in every image's provenance
    spec: str
    #: the modes :meth:`generate` accepts
    modes: tuple[str, ...] = ("text",)
    #: True when the same seed and inputs give the same image
    seeded: bool = True
    #: why a mode is missing, shown to users who ask for it
    mode_notes: dict[str, str] = {}
    #: (width, height) used when the request gives none
    default_size: tuple[int, int] = (512, 512)
    #: True when :meth:`execute` reports denoising steps to ``progress``
    supports_progress: bool = False

    def check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode not in self.modes:
            why = self.mode_notes.get(mode, "")
            raise ConfigError(f"image generator {self.spec!r} cannot do mode {mode!r}"
                              + (f": {why}" if why else "") + f"; it can do: {', '.join(self.modes)}")

    @final
    def generate(self, prompt: str, *, mode: str = "text", params: ImageParams = ImageParams(),
                 init_image: Image.Image | None = None, references: Sequence[Image.Image] = (),
                 progress: Progress | None = None) -> GeneratedImage:
        """Make one image. ``init_image`` is used in ``init`` mode, ``references`` in ``reference``;
        ``progress`` is called only by backends that ``supports_progress``. Failures raise
        :class:`~ravl.errors.GenerationError` (bad requests :class:`~ravl.errors.ConfigError`)."""
        from ..base import generation_errors

        self.check_mode(mode)
        params.check()
        with generation_errors(self.spec):
            return self.execute(prompt, mode=mode, params=params, init_image=init_image, references=references,
                                progress=progress if self.supports_progress else None)

    @abstractmethod
    def execute(self, prompt: str, *, mode: str, params: ImageParams, init_image: Image.Image | None,
                references: Sequence[Image.Image], progress: Progress | None) -> GeneratedImage:
        """Backend hook behind :meth:`generate` (mode and parameters already checked)."""


def decode_generated(data: bytes, where: str) -> Image.Image:
    """Bytes a server sent as its image -> an RGB PIL image, or a one-line GenerationError."""
    from ...errors import ImageError
    from ...ingest.images import decode_image

    if not data:
        raise GenerationError(f"{where} sent an empty image")
    try:
        image, _, _ = decode_image(data, name=where)
    except ImageError as exc:
        raise GenerationError(f"{where} did not send an image ({exc})") from None
    return image.convert("RGB")


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale and centre-crop ``image`` to exactly ``width`` x ``height``."""
    return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.BICUBIC)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def load_image_generator(spec: str) -> ImageGenerator:
    from ... import registry

    return registry.create("image_generators", spec)
