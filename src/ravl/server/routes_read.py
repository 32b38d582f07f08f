"""POST /read: the text in an image (OCR), with a hint when another language pack reads it, and
optionally its translation, by the same route ``ravl read --translate-to`` takes (Apertium for an
installed pair, or one of the server's loaded language models). Only the plain ``apertium``
translator is offered over HTTP: its options name a program to run."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile

from ..errors import ConfigError
from .routes_search import get_state, query_image
from .state import ServerState


def build_router() -> APIRouter:
    router = APIRouter()

    @router.post("/read", tags=["describe"], summary="Read the text in an image, optionally translated")
    def read_post(image: UploadFile | None = File(None), path: str | None = Form(None, max_length=4096),
                  item: int | None = Form(None),
                  lang: str = Form("eng", max_length=100, description="Tesseract packs, ISO codes or names "
                                                                       "(eng, chi_sim, zh, fra+eng)"),
                  translate_to: str | None = Form(None, max_length=60, description="a language name or ISO code"),
                  source: str | None = Form(None, max_length=60, description="the text's language (default: "
                                                                             "detected)"),
                  translator: Literal["auto", "apertium"] = Form("auto", description="auto: Apertium for an "
                                                                                     "installed pair, else the "
                                                                                     "generator if given"),
                  generator: str | None = Form(None, max_length=200, description="a language model this server "
                                                                                 "loaded, to translate with"),
                  min_confidence: float = Form(0.4, ge=0.0, le=1.0),
                  state: ServerState = Depends(get_state)) -> dict:
        """Same JSON as ``ravl read --json``: lines with boxes, confidences and translations, the
        ``hint`` when nothing was read, and ``translation`` saying which route was used. A translation
        that no installed route can do is a 400 naming the installed pairs."""
        from ..ocr import check_can_translate, read_image_text

        translate = (translate_to or "").strip() or None
        if not translate and (generator or source):
            raise ConfigError("'generator' and 'source' are only used with 'translate_to'")
        gen = None
        if translate and generator:
            gen = state.generator(generator)
            check_can_translate(gen)
        img, name, _ = query_image(state, image, path, item)
        result = read_image_text(img, name=name, lang=lang.strip() or "eng", min_confidence=min_confidence,
                                 translate_to=translate, generator=gen,
                                 translator="apertium" if translator == "apertium" else None,
                                 source_lang=(source or "").strip() or None)
        return result.to_dict()

    return router
