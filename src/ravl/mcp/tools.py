"""The MCP tools and resources of ``ravl mcp``: search, similar, describe, ask, read_text, info;
imagine when an image generator is configured; index only with writes allowed. Each tool parses
its typed arguments, calls one task under the state's lock and renders (:mod:`.render`); every
:class:`~ravl.errors.RavlError` becomes a tool error with its one-line message."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from .. import __version__
from ..errors import InputError, RavlError
from . import render
from .state import MAX_THUMBNAILS, McpState

K_MAX = 100
Image = Annotated[str | None, Field(description="path of an image file")]
ImageB64 = Annotated[str | None, Field(description="the image as base64, or a data:image/...;base64 URL")]
Item = Annotated[int | None, Field(description="id of a stored item (from a search result)")]
Thumbs = Annotated[int, Field(ge=0, le=MAX_THUMBNAILS, description="thumbnails of the top hits to attach")]
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def read_text_job(image, *, name: str, lang: str, translate_to: str | None, generator) -> dict:
    """The one adapter between the read_text tool and the OCR job (repoint it at the tasks' read job)."""
    from ..ocr import read_image_text

    return read_image_text(image, name=name, lang=lang, translate_to=translate_to, generator=generator).to_dict()


def check_write(mode: str, key: str | None, authorization: str | None) -> None:
    """As ``ravl serve``'s write endpoints: the Bearer key when one is configured."""
    import hmac

    scheme, _, token = (authorization or "").partition(" ")
    if mode == "key" and (scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                                (key or "").encode())):
        raise InputError("missing or wrong API key for a write; send the header 'Authorization: Bearer <key>'")


def _guarded(state: McpState, fn: Callable[[], CallToolResult]) -> CallToolResult:
    try:
        with state.lock:
            return fn()
    except RavlError as exc:
        return render.error(exc)


class RavlMCPServer(MCPServer):
    """The SDK's server with argument errors on one line, as the HTTP API words them:
    ``search: k: Input should be greater than or equal to 1 (see the tool's input schema)``."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        from mcp.server.mcpserver.exceptions import ToolError
        from pydantic import ValidationError

        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if not isinstance(cause, ValidationError):
                raise
            parts = [f"{'.'.join(str(x) for x in err.get('loc', ())) or 'arguments'}: {err.get('msg', 'invalid')}"
                     for err in cause.errors()[:5]]
            raise ToolError(f"{name}: {'; '.join(parts)} (see the tool's input schema)") from None


def _filters(after, before, folder, near, camera):
    from ..filters import Filters

    f = Filters.parse(after=after, before=before, folder=folder, near=near, camera=camera)
    return None if f.empty else f


def build_server(state: McpState, log_level: str = "WARNING") -> MCPServer:
    """An MCPServer whose tools and resources serve ``state``'s collection."""
    coll = state.collection
    size = state.settings.thumbnail_size
    instructions = (f"Search and describe the images of the ravl collection {coll.path}: search by text (with "
                    "'beach -people' arithmetic) or by image, find similar items, caption an image from its neighbours, "
                    "answer questions with numbered evidence, read text in images. Results carry item ids, file uris "
                    "and scores in [0, 1].")
    server: MCPServer = RavlMCPServer("ravl", version=__version__, instructions=instructions,
                                      log_level=log_level)  # type: ignore[arg-type]

    @server.tool(annotations=READ_ONLY)
    def search(query: Annotated[str | None, Field(description="text query; 'beach -people', '2:sunset + beach'")] = None,
               image: Image = None, image_base64: ImageB64 = None,
               item: Annotated[int | None, Field(description="a stored item's id as an image term")] = None,
               subtract: Annotated[list[str], Field(description="texts to steer away from")] = [],  # noqa: B006
               target: Literal["images", "captions"] = "images",
               k: Annotated[int, Field(ge=1, le=K_MAX, description="number of results")] = 10,
               mode: Literal["auto", "vector", "keyword", "hybrid"] = "auto",
               min_score: Annotated[float, Field(ge=0.0, le=1.0, description="leave out hits below this")] = 0.0,
               after: Annotated[str | None, Field(description="photos taken in or after YYYY[-MM[-DD]]")] = None,
               before: Annotated[str | None, Field(description="photos taken in or before YYYY[-MM[-DD]]")] = None,
               folder: Annotated[str | None, Field(description="only files under this folder")] = None,
               near: Annotated[str | None, Field(description="LAT,LON,KM: photos taken within KM of a place")] = None,
               camera: Annotated[str | None, Field(description="part of the camera's make or model")] = None,
               thumbnails: Thumbs = 3) -> CallToolResult:
        """Search the collection by text, image or both; hits best first with score (0..1), id, uri and captions."""
        def run():
            from ..request import SearchRequest, Term, parse_query
            from ..tasks.search import answer
            from ..tasks.search import search as search_task

            terms: tuple = parse_query(query) if query else ()
            pictures = []
            if image and image_base64:
                raise InputError("give image (a file path) or image_base64, not both")
            if image:  # a file: the search task reads it, as for `ravl search --image`
                terms += (Term("image", str(state.image_file(image))),)
            elif image_base64:
                img, name, _ = state.load(data=image_base64)
                terms += (Term("image", name),)
                pictures.append(coll.base_encoder.embed_images([img]))
            if item is not None:
                terms += (Term("item", item),)
            for text in subtract:
                terms += parse_query(text, -1.0)
            if not terms:
                raise InputError("give a query, an image, image_base64 or an item to search with")
            request = SearchRequest(terms, target=target, k=k, mode=mode, min_score=min_score,
                                    filters=_filters(after, before, folder, near, camera))
            body = answer(request, coll.search(request, images=pictures)) if pictures else search_task(coll, request)
            return render.result(body, uris=render.hit_uris(body, thumbnails), size=size)
        return _guarded(state, run)

    @server.tool(annotations=READ_ONLY)
    def similar(item: Annotated[int, Field(description="id of a stored item")],
                k: Annotated[int, Field(ge=1, le=K_MAX)] = 10, target: Literal["images", "captions"] = "images",
                min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0, thumbnails: Thumbs = 3) -> CallToolResult:
        """Images (or captions) most like a stored item, the item itself left out."""
        def run():
            from ..request import SearchRequest, Term
            from ..tasks.search import answer

            request = SearchRequest((Term("item", item),), target=target, k=k, min_score=min_score)
            body = answer(request, coll.search(request, exclude_items=(item,)))
            return render.result(body, uris=render.hit_uris(body, thumbnails), size=size)
        return _guarded(state, run)

    @server.tool(annotations=READ_ONLY)
    def describe(image: Image = None, image_base64: ImageB64 = None, item: Item = None,
                 k: Annotated[int, Field(ge=1, le=K_MAX, description="neighbour images to retrieve")] = 5,
                 thumbnails: Thumbs = 3) -> CallToolResult:
        """Caption an image from the captions of its nearest images in the collection, with those neighbours."""
        def run():
            from ..tasks.describe import describe as describe_task

            img, name, exclude = state.load(image, image_base64, item)
            body = describe_task(coll, img, k=k, generator=state.generator("caption"), exclude_items=exclude,
                                 name=name).to_dict()
            return render.result(body, uris=[n["uri"] for n in body["neighbours"][:thumbnails]], size=size)
        return _guarded(state, run)

    @server.tool(annotations=READ_ONLY)
    def ask(question: Annotated[str, Field(min_length=1, max_length=2000, description="the question")],
            image: Image = None, image_base64: ImageB64 = None, item: Item = None,
            k: Annotated[int, Field(ge=1, le=K_MAX, description="neighbour images to retrieve")] = 5,
            ocr: Annotated[bool | None, Field(description="read text in the image (default: when OCR is installed)")] = None,
            thumbnails: Thumbs = 3) -> CallToolResult:
        """Answer a question about an image from numbered evidence (neighbours' captions, labels, text read), citing it."""
        def run():
            from ..rag.ask import AskOptions
            from ..tasks.ask import ask as ask_task

            img, name, exclude = state.load(image, image_base64, item)
            body = ask_task(coll, img, question, generator=state.generator("ask"), options=AskOptions(k=k, ocr=ocr),
                            exclude_items=exclude, name=name).to_dict()
            return render.result(body, uris=[n["uri"] for n in body["neighbours"][:thumbnails]], size=size)
        return _guarded(state, run)

    @server.tool(annotations=READ_ONLY)
    def read_text(image: Image = None, image_base64: ImageB64 = None, item: Item = None,
                  lang: Annotated[str, Field(max_length=100, description="Tesseract language(s), e.g. eng, deu+eng")] = "eng",
                  translate_to: Annotated[str | None, Field(max_length=50, description="translate the lines into this "
                                                            "language (needs a language model)")] = None) -> CallToolResult:
        """Read the lines of text in an image (signs, labels), optionally translated."""
        def run():
            img, name, _ = state.load(image, image_base64, item)
            generator = state.generator("ask") if translate_to else None
            return render.result(read_text_job(img, name=name, lang=lang, translate_to=translate_to, generator=generator))
        return _guarded(state, run)

    @server.tool(annotations=READ_ONLY)
    def info() -> CallToolResult:
        """The collection: counts, encoder, indexes, size on disk."""
        return _guarded(state, lambda: render.result({**coll.info(), "missing_files": len(coll.missing_items())}))

    if state.image_generator_spec:
        _add_imagine(server, state)
    if state.settings.write_mode() != "disabled":
        _add_index(server, state)
    _add_resources(server, state)
    return server



def _add_imagine(server: MCPServer, state: McpState) -> None:
    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    def imagine(prompt: Annotated[str, Field(min_length=1, max_length=2000, description="what to make")],
                mode: Literal["text", "init", "reference"] = "text",
                k: Annotated[int, Field(ge=1, le=16, description="reference images to retrieve")] = 4,
                seed: Annotated[int | None, Field(ge=0, le=2**32 - 1)] = None,
                steps: Annotated[int | None, Field(ge=1, le=500)] = None) -> CallToolResult:
        """Generate an image from a prompt, guided by the collection's nearest images; PNG plus provenance."""
        def run():
            from ..generate.images.base import ImageParams
            from ..tasks.imagine import imagine as imagine_task

            result = imagine_task(state.collection, prompt, state.image_generator(), mode=mode, k=k,
                                  params=ImageParams(seed=seed, steps=steps))
            return render.result(result.to_dict(), png=result.png_bytes())
        return _guarded(state, run)


def _add_index(server: MCPServer, state: McpState) -> None:
    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False))
    def index(paths: Annotated[list[str], Field(min_length=1, description="folders or image files to add")],
              ctx: Context) -> CallToolResult:
        """Add folders or image files (with their caption sidecars) to the collection."""
        def run():
            from ..ingest.pipeline import index_sources
            headers = ctx.headers or {}
            check_write(state.settings.write_mode(), state.settings.api_key(), headers.get("authorization"))
            report = index_sources(state.collection, paths)
            return render.result({**report.to_dict(), "collection": state.collection.counts()})
        return _guarded(state, run)


def _add_resources(server: MCPServer, state: McpState) -> None:
    @server.resource("ravl://item/{item_id}", name="item", mime_type="application/json",
                     description="A stored item: its file, captions and photo metadata")
    def item(item_id: str) -> str:
        from mcp.server.mcpserver.exceptions import ResourceError

        try:
            row = state.collection.get_item(int(item_id))
        except ValueError:
            raise ResourceError(f"ravl://item/{item_id}: an item id is a whole number") from None
        except RavlError as exc:
            raise ResourceError(str(exc)) from None
        return json.dumps({"id": row.id, "uri": row.uri, "sha256": row.sha256, "width": row.width,
                           "height": row.height, "captions": list(row.captions), "metadata": row.metadata},
                          ensure_ascii=False)
