"""OpenAI-compatible endpoints: ``POST /v1/embeddings`` (and ``GET /v1/models``), so tools that
embed through an OpenAI client (LangChain, LlamaIndex, Open WebUI) get the vectors this collection
searches with. Texts get their query vector; images (``data:image/...;base64`` URLs, ``file://``
URLs or absolute paths inside the collection's image roots) their shared-space embedding with the
collection's tuned bridge applied (:mod:`ravl.tasks.embed`)."""
from __future__ import annotations

import base64
import time
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlparse

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..errors import InputError
from .routes_search import get_state
from .state import ServerState

#: a string ending like this and starting with "/" is an image path (inside the image roots)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")


class EmbeddingsRequest(BaseModel):
    input: str | list[str] = Field(..., description="a text or a list of texts; images as data:image/...;base64 URLs, "
                                                    "file:// URLs or absolute paths inside the image roots")
    model: str | None = Field(None, max_length=500, description="ignored: the collection's encoder answers "
                                                                "(its name is returned in 'model')")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="must equal the collection's dimension when given")
    user: str | None = Field(None, max_length=500)


def _is_image_path(text: str) -> bool:
    return text.startswith("/") and "\n" not in text and PurePosixPath(text).suffix.lower() in IMAGE_SUFFIXES


def _image(state: ServerState, text: str, where: str):
    """A data URL, file:// URL or absolute path inside the image roots -> an RGB image."""
    from ..images import decode_data_url, read_file

    if text.startswith("data:"):
        data = decode_data_url(text, max_bytes=state.settings.max_upload_bytes, name=where)
        return state.decode_upload(data, where)
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    real = state.allowed_file(text)
    return state.decode_upload(read_file(real), real.name)


def _parse_inputs(state: ServerState, inputs: list[str]) -> list:
    out: list = []
    for n, text in enumerate(inputs):
        where = f"input[{n}]"
        if text.startswith(("data:", "file://")) or _is_image_path(text):
            out.append(_image(state, text, where))
        elif text.startswith(("http://", "https://")):
            raise InputError(f"{where}: this server does not fetch URLs; send the image as a data:image/...;base64 "
                             "URL or a path inside the collection's image roots")
        else:
            out.append(text)
    return out


def build_router() -> APIRouter:
    router = APIRouter(tags=["openai"])

    @router.post("/v1/embeddings", summary="Embeddings in the OpenAI shape: the vectors this collection searches with")
    async def embeddings(body: EmbeddingsRequest, state: ServerState = Depends(get_state)) -> dict:
        """``{"input": "a red car"}`` or a list; the answer is OpenAI's ``{"object": "list", "data":
        [{"object": "embedding", "index": i, "embedding": [...]}], "model": ..., "usage": ...}``.
        ``model`` is the collection's encoder fingerprint plus its tuned bridge."""
        from ..tasks.embed import embed

        inputs = [body.input] if isinstance(body.input, str) else list(body.input)
        coll = state.collection
        if body.dimensions is not None and body.dimensions != coll.dim:
            raise InputError(f"dimensions must be {coll.dim} (this collection's space) or left out, "
                             f"got {body.dimensions}")

        def work():
            return embed(coll, _parse_inputs(state, inputs))

        result = await run_in_threadpool(work)
        data = []
        for n, vec in enumerate(result.vectors):
            value: list[float] | str = (base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii")
                                        if body.encoding_format == "base64" else vec.tolist())
            data.append({"object": "embedding", "index": n, "embedding": value})
        tokens = sum(len(x.split()) for x, kind in zip(inputs, result.kinds) if kind == "text")
        return {"object": "list", "data": data, "model": result.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @router.get("/v1/models", summary="The one model this server embeds with (OpenAI shape)")
    def models(state: ServerState = Depends(get_state)) -> dict:
        return {"object": "list", "data": [{"id": state.collection.active_fingerprint, "object": "model",
                                            "created": int(time.time()), "owned_by": "ravl"}]}

    return router
