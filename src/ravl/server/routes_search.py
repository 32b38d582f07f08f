"""Read endpoints: health, info, search (text, image upload, path, item), caption and ask."""
from __future__ import annotations

from typing import Literal
from urllib.parse import unquote, urlparse

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..errors import InputError
from ..hits import MAX_RERANK, MAX_SEARCH_PARAM, Knobs
from .settings import ServerSettings
from .state import ServerState

Target = Literal["images", "captions"]
Mode = Literal["auto", "vector", "keyword", "hybrid"]
EF_DOC = "HNSW indexes: candidates explored per query (default: tuned at build for recall@10 >= 0.95)"
NPROBE_DOC = "IVF-PQ indexes: inverted lists visited per query (default: tuned at build for recall@10 >= 0.95)"
RERANK_DOC = "IVF-PQ indexes: candidates per hit re-scored exactly (default: tuned at build for recall@10 >= 0.95)"
KEYWORD_WEIGHT_DOC = "hybrid: rank by cosine + weight x keyword coverage (default: fitted per collection)"
MIN_SCORE_DOC = "leave out hits scoring below this (0..1); good_match says whether any hit is a good match"


async def get_state(request: Request) -> ServerState:
    return request.app.state.ravl


def query_knobs(ef_search: int | None = Query(None, ge=1, le=MAX_SEARCH_PARAM, description=EF_DOC),
                nprobe: int | None = Query(None, ge=1, le=MAX_SEARCH_PARAM, description=NPROBE_DOC),
                rerank: int | None = Query(None, ge=1, le=MAX_RERANK, description=RERANK_DOC)) -> Knobs:
    """A GET search's index knobs."""
    return Knobs(ef_search, nprobe, rerank)


def form_knobs(ef_search: int | None = Form(None, ge=1, le=MAX_SEARCH_PARAM, description=EF_DOC),
               nprobe: int | None = Form(None, ge=1, le=MAX_SEARCH_PARAM, description=NPROBE_DOC),
               rerank: int | None = Form(None, ge=1, le=MAX_RERANK, description=RERANK_DOC)) -> Knobs:
    """A POST search's index knobs."""
    return Knobs(ef_search, nprobe, rerank)


def hits_json(hits) -> list[dict]:
    return [h.to_dict() for h in hits]


def query_image(state: ServerState, image: UploadFile | None, path: str | None, item: int | None = None):
    """Exactly one of an upload, a path (or file:// URL) inside the image roots, or an item id ->
    (RGB image, display name, item ids to leave out of the neighbours)."""
    given = [x is not None and x != "" for x in (image, path, item)]
    if sum(given) != 1:
        raise InputError("send exactly one of: an uploaded file in 'image', a 'path' (or file:// 'url') inside "
                         "the collection's image roots, or an 'item' id")
    if image is not None:
        data, name = state.read_upload(image)
        return state.decode_upload(data, name), name, ()
    if item is not None:
        real = state.item_file(item)
        exclude: tuple[int, ...] = (item,)
    else:
        assert path is not None  # exactly one of the three was given
        parsed = urlparse(path)
        if parsed.scheme in ("http", "https", "ftp", "data"):
            raise InputError("this server does not fetch URLs; upload the image in 'image', or give a path inside "
                             "the collection's image roots")
        real = state.allowed_file(unquote(parsed.path) if parsed.scheme == "file" else path)
        row = state.collection.item_by_uri(str(real))
        exclude = (row.id,) if row else ()
    from ..images import read_file

    data = read_file(real)
    return state.decode_upload(data, real.name), str(real), exclude


def build_router(settings: ServerSettings) -> APIRouter:
    router = APIRouter()
    max_k = settings.max_k
    K = Query(10, ge=1, le=max_k, description=f"results per query (1..{max_k})")

    @router.get("/health", tags=["server"], summary="Liveness: the collection and models are loaded")
    async def health(state: ServerState = Depends(get_state)) -> dict:
        return {"status": "ok", "version": __version__}

    @router.get("/info", tags=["server"], summary="Collection counts, encoder, version and server limits")
    def info(state: ServerState = Depends(get_state)) -> dict:
        s = state.settings
        return {**state.collection.info(), "version": __version__, "writes": s.write_mode(),
                "max_k": s.max_k, "max_upload_bytes": s.max_upload_bytes, "thumbnail_size": s.thumbnail_size,
                "generators": list(state.generators), "image_roots": [str(r) for r in state.image_roots()],
                "image_generator": state.image_generator.spec if state.image_generator else None,
                "imagine_modes": list(state.image_generator.modes) if state.image_generator else [],
                "imagine_needs_key": state.settings.api_key() is not None,
                "batching": {**state.encoder.stats(), "searches": state.searches.stats(),
                             "image_searches": state.image_searches.stats()}}

    def request_of(terms, target, k, mode, keyword_weight, min_score, knobs: Knobs, filters=None, sort="relevance"):
        from ..hybrid import Fusion
        from ..request import SearchRequest

        return SearchRequest(terms, target=target, k=k, mode=mode, fusion=Fusion(keyword_weight), min_score=min_score,
                             ef_search=knobs.ef_search, nprobe=knobs.nprobe, rerank=knobs.rerank, filters=filters,
                             sort=sort)

    def filters_of(after, before, folder, near, camera):
        from ..filters import Filters

        f = Filters.parse(after=after, before=before, folder=folder, near=near, camera=camera)
        return None if f.empty else f

    @router.get("/search", tags=["search"], summary="Search by text (q) or by a stored item's image (item)")
    async def search_get(q: str | None = Query(None, max_length=2000,
                                               description="text query; terms combine with + and - "
                                                           "('beach -people', '2:sunset + beach')"),
                         item: int | None = Query(None, description="search with this item's image (with q: both "
                                                  "terms combine)"),
                         k: int = K, target: Target = Query("images"),
                         mode: Mode = Query("auto", description="text search: vector, keyword (BM25 over captions, "
                                            "sidecar and OCR text), hybrid (scores of both fused) or auto (hybrid "
                                            "when the collection has text)"),
                         keyword_weight: float | None = Query(None, ge=0.0, le=1000.0,
                                                              description=KEYWORD_WEIGHT_DOC),
                         min_score: float = Query(0.0, ge=0.0, le=1.0, description=MIN_SCORE_DOC),
                         knobs: Knobs = Depends(query_knobs),
                         after: str | None = Query(None, max_length=40, description="taken in or after (YYYY[-MM[-DD]])"),
                         before: str | None = Query(None, max_length=40, description="taken in or before (whole period)"),
                         folder: str | None = Query(None, max_length=4096, description="files under this folder"),
                         near: str | None = Query(None, max_length=100, description="LAT,LON,KM (EXIF GPS)"),
                         camera: str | None = Query(None, max_length=200, description="camera make/model contains"),
                         sort: Literal["relevance", "date"] = Query("relevance", description="order of the hits"),
                         state: ServerState = Depends(get_state)) -> dict:
        # async: a plain text waits for its batch without holding a worker thread; store work runs in the pool
        from ..request import Term, parse_query
        from ..tasks.search import answer

        if q is None and item is None:
            raise InputError("give q (text), item (an item id) or both, e.g. /search?q=a+red+car")
        terms = (parse_query(q) if q is not None else ()) + ((Term("item", item),) if item is not None else ())
        request = request_of(terms, target, k, mode, keyword_weight, min_score, knobs,
                             filters_of(after, before, folder, near, camera), sort)
        coll = state.collection
        if request.simple_text is not None:
            hits = await state.search_text(request)
        elif item is not None and q is None:
            hits = await run_in_threadpool(coll.search, request, exclude_items=(item,))
        else:
            hits = await run_in_threadpool(coll.search, request)
        return {**answer(request, hits), "mode": mode}

    @router.get("/items/{item_id}/similar", tags=["search"], summary="Images (or captions) similar to an item")
    def similar(item_id: int, k: int = K, target: Target = Query("images"),
                min_score: float = Query(0.0, ge=0.0, le=1.0, description=MIN_SCORE_DOC),
                knobs: Knobs = Depends(query_knobs), state: ServerState = Depends(get_state)) -> dict:
        from ..request import Term
        from ..tasks.search import answer

        request = request_of((Term("item", item_id),), target, k, "auto", None, min_score, knobs)
        return answer(request, state.collection.search(request, exclude_items=(item_id,)))

    @router.post("/search", tags=["search"], summary="Search by an uploaded image or a path inside the image roots")
    async def search_post(image: UploadFile | None = File(None, description="image file (content is checked)"),
                          path: str | None = Form(None, max_length=4096,
                                                     description="absolute path inside the image roots"),
                          url: str | None = Form(None, max_length=4096,
                                                    description="file:// URL inside the image roots"),
                          q: str | None = Form(None, max_length=2000,
                                               description="text terms to combine with the image ('-people')"),
                          k: int = Form(10, ge=1, le=max_k), target: Target = Form("images"),
                          min_score: float = Form(0.0, ge=0.0, le=1.0, description=MIN_SCORE_DOC),
                          knobs: Knobs = Depends(form_knobs),
                          state: ServerState = Depends(get_state)) -> dict:
        from ..request import Term, parse_query
        from ..tasks.search import answer

        if path and url:
            raise InputError("give 'path' or 'url', not both")

        def prepare():
            img, name, exclude = query_image(state, image, path or url)
            return state.encoder.preprocess(img.convert("RGB")), name, exclude

        pixels, name, exclude = await run_in_threadpool(prepare)
        vecs = await state.encoder.embed_pixels_async(pixels)
        terms = (Term("image", "upload"),) + (parse_query(q) if q and q.strip() else ())
        request = request_of(terms, target, k, "auto", None, min_score, knobs)
        # batched: image queries waiting together share one index call
        hits = await state.search_image(vecs, request, exclude)
        return {**answer(request, hits), "query": {"image": name, **({"text": q} if q and q.strip() else {})}}

    def caption(state: ServerState, image, path, item, k, generator, max_tokens, temperature, seed):
        from ..generate.base import GenerationParams
        from ..rag import caption_image

        img, name, exclude = query_image(state, image, path, item)
        gen = state.generator(generator)
        params = GenerationParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
        return caption_image(state.collection, img, k=k, generator=gen, params=params,
                             exclude_items=exclude, name=name).to_dict()

    gen_doc = "generator spec, one of those the server loaded (see /info)"

    @router.post("/caption", tags=["describe"], summary="Caption an image from its neighbours' captions (with provenance)")
    def caption_post(image: UploadFile | None = File(None), path: str | None = Form(None, max_length=4096),
                     item: int | None = Form(None), k: int = Form(5, ge=1, le=max_k),
                     generator: str | None = Form(None, max_length=200, description=gen_doc),
                     max_tokens: int = Form(48, ge=1, le=512), temperature: float = Form(0.0, ge=0.0, le=2.0),
                     seed: int | None = Form(None), state: ServerState = Depends(get_state)) -> dict:
        return caption(state, image, path, item, k, generator, max_tokens, temperature, seed)

    @router.post("/ask", tags=["describe"], summary="Answer a question about an image from retrieved evidence")
    def ask_post(question: str = Form(..., min_length=1, max_length=2000),
                 image: UploadFile | None = File(None), path: str | None = Form(None, max_length=4096),
                 item: int | None = Form(None), k: int = Form(5, ge=1, le=max_k),
                 generator: str | None = Form(None, max_length=200, description=gen_doc),
                 max_tokens: int = Form(48, ge=1, le=512), temperature: float = Form(0.0, ge=0.0, le=2.0),
                 seed: int | None = Form(None), ocr: bool | None = Form(None),
                 state: ServerState = Depends(get_state)) -> dict:
        """Same JSON as ``ravl ask --json``: answer, numbered evidence with ids/uris/scores, prompt,
        generator. Without a language model the answer says so and the evidence is still returned."""
        from ..generate.base import GenerationParams
        from ..rag.ask import AskOptions, ask_image

        if not question.strip():
            raise InputError("'question' must not be blank")
        img, name, exclude = query_image(state, image, path, item)
        params = GenerationParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
        return ask_image(state.collection, img, question, generator=state.generator(generator, "ask"),
                         options=AskOptions(k=k, params=params, ocr=ocr), exclude_items=exclude, name=name).to_dict()

    return router
