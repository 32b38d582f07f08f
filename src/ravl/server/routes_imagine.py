"""POST /imagine: retrieval-augmented image generation with provenance. Generation is costly, so
the route needs the API key whenever one is configured (checked in the app's guard before the body
is read) and has its own slots: past ``--imagine-concurrency`` requests at once the answer is 429
with ``Retry-After``."""
from __future__ import annotations

import base64
import json
import math
from typing import Literal

from fastapi import APIRouter, Depends, Form
from fastapi.responses import JSONResponse, Response

from ..errors import NoImageGeneratorError
from .errors import BusyError, error_body
from .routes_search import get_state
from .settings import ServerSettings
from .state import ServerState

Mode = Literal["text", "init", "reference"]
NO_GENERATOR = ("this server has no image generator; restart it with --image-generator SPEC (a diffusers folder "
                "'diffusers:/path/to/pipeline', a local server 'a1111:http://127.0.0.1:7860' or an "
                "OpenAI-compatible endpoint 'openai-images:MODEL?base_url=URL')")


def _reference_json(hits, used=()) -> list[dict]:
    return [{**h.to_dict(), "used": h.id in used, "thumbnail_url": f"/items/{h.id}/thumbnail"} for h in hits]


def _retry_after(state: ServerState) -> int:
    recent = state.imagine_seconds[-5:]
    return max(1, math.ceil(sum(recent) / len(recent))) if recent else 5


def build_router(settings: ServerSettings) -> APIRouter:
    router = APIRouter()
    max_k = settings.max_k

    @router.post("/imagine", tags=["imagine"],
                 summary="Generate an image from a prompt, guided by the nearest images (PNG + provenance)")
    def imagine_post(prompt: str = Form(..., max_length=2000, description="what to make"),
                     mode: Mode = Form("text", description="text, init (from the best reference) or reference "
                                                           "(references as image prompts)"),
                     k: int = Form(4, ge=1, le=max_k, description="references to retrieve"),
                     strength: float = Form(0.6, description="init mode: how far from the reference, in (0, 1]"),
                     steps: int | None = Form(None, description="denoising steps (default: the generator's)"),
                     guidance: float | None = Form(None, description="guidance scale (default: the generator's)"),
                     size: str | None = Form(None, max_length=20, description="WxH, multiples of 8"),
                     seed: int | None = Form(None, description="seed (default: random, returned)"),
                     negative: str = Form("", max_length=2000, description="negative prompt"),
                     response: Literal["json", "png"] = Form("json", description="json: provenance + the PNG as "
                                                                                 "base64; png: the PNG itself"),
                     state: ServerState = Depends(get_state)):
        """``json`` (default): the same object as ``ravl imagine --json`` plus ``image`` (a
        ``data:image/png;base64,...`` URL whose PNG carries the provenance in text chunks) and a
        thumbnail URL per reference. ``png``: the PNG itself, its provenance in text chunks and in
        the ``X-Ravl-Provenance`` header (JSON). Without an image generator: 503 with the references."""
        from ..generate.images.base import ImageParams, parse_size
        from ..tasks.imagine import check_request, imagine

        width, height = parse_size(size)
        params = ImageParams(width=width, height=height, steps=steps, guidance=guidance, strength=strength,
                             seed=seed, negative_prompt=negative)
        prompt = check_request(prompt, mode, k, params)
        generator = state.image_generator
        if generator is None:
            try:
                imagine(state.collection, prompt, None, mode=mode, k=k, params=params)
            except NoImageGeneratorError as exc:
                refs = _reference_json(getattr(exc, "references", []))
                return JSONResponse(error_body(NoImageGeneratorError(NO_GENERATOR), references=refs), status_code=503)
            raise NoImageGeneratorError(NO_GENERATOR)
        generator.check_mode(mode)
        if not state.imagine_slots.acquire(blocking=False):
            wait = _retry_after(state)
            raise BusyError(f"all {state.settings.imagine_concurrency} image generation slot(s) are busy; "
                            f"retry in about {wait} s", retry_after=wait)
        try:
            result = imagine(state.collection, prompt, generator, mode=mode, k=k, params=params)
        finally:
            state.imagine_slots.release()
        state.imagine_seconds = (state.imagine_seconds + [result.timings.get("total_s", 0.0)])[-5:]
        png = result.png_bytes()
        if response == "png":
            header = json.dumps(result.provenance(), ensure_ascii=True)
            headers = {"X-Ravl-Provenance": header} if len(header) < 7000 else {}
            return Response(png, media_type="image/png", headers=headers)
        body = result.to_dict()
        body["references"] = _reference_json(result.references, set(result.used_references))
        body["image"] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return body

    return router
