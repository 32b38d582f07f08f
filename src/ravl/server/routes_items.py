"""Item endpoints: metadata, original image, cached thumbnail; add (upload) and delete, which need
write access (see :func:`check_write`)."""
from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse

from ..errors import InputError
from ..images import MEDIA_TYPES, read_head, sniff_format
from .errors import AuthError, WritesDisabledError
from .responses import SafeJSONResponse
from .routes_search import get_state
from .state import ServerState

MAX_CAPTIONS = 50
MAX_CAPTION_CHARS = 1000


def check_write(mode: str, key: str | None, authorization: str | None) -> None:
    """Raise unless this request may write: ``mode`` is ServerSettings.write_mode()."""
    if mode == "disabled":
        raise WritesDisabledError("write endpoints are disabled on this server; restart it with --api-key-env VAR "
                                  "(VAR holding a secret key) or, on a loopback host only, --allow-writes")
    if mode == "key":
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), (key or "").encode()):
            raise AuthError("missing or wrong API key; send the header 'Authorization: Bearer <key>'")


def item_json(row) -> dict:
    return {"id": row.id, "uri": row.uri, "sha256": row.sha256, "size": row.size, "width": row.width,
            "height": row.height, "metadata": row.metadata, "captions": list(row.captions),
            "image_url": f"/items/{row.id}/image", "thumbnail_url": f"/items/{row.id}/thumbnail"}


def require_write(request: Request) -> None:
    state: ServerState = request.app.state.ravl
    check_write(state.settings.write_mode(), request.app.state.api_key, request.headers.get("authorization"))


def build_router() -> APIRouter:
    router = APIRouter(tags=["items"])

    @router.get("/items/{item_id}", summary="One item: file facts, metadata and captions")
    def get_item(item_id: int, state: ServerState = Depends(get_state)) -> dict:
        return item_json(state.collection.get_item(item_id))

    @router.get("/items/{item_id}/image", summary="The item's original image file",
                response_class=FileResponse)
    def get_image(item_id: int, state: ServerState = Depends(get_state)):
        path = state.item_file(item_id)
        head = read_head(path)  # a regular file (never a FIFO or device swapped in since indexing)
        try:
            media = MEDIA_TYPES[sniff_format(head, path.name)]
        except InputError:
            media = "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/items/{item_id}/thumbnail", summary="A cached JPEG thumbnail of the item",
                response_class=FileResponse)
    def get_thumbnail(item_id: int, state: ServerState = Depends(get_state)):
        return FileResponse(state.thumbnail(item_id), media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=86400"})

    @router.post("/items", status_code=201, dependencies=[Depends(require_write)],
                 summary="Add an uploaded image with captions (needs write access)")
    def add_item(image: UploadFile | None = File(None, description="image file (content is checked)"),
                 captions: list[str] = Form([], description="one caption per field; newlines also split"),
                 state: ServerState = Depends(get_state)):
        from ..ingest.pipeline import index_records
        from ..ingest.sources import Record

        data, name = state.read_upload(image)
        state.decode_upload(data, name)  # refuse anything that is not a safe, decodable image first
        texts = [" ".join(line.split()) for c in captions for line in c.splitlines()]
        texts = list(dict.fromkeys(t for t in texts if t))
        if len(texts) > MAX_CAPTIONS or any(len(t) > MAX_CAPTION_CHARS for t in texts):
            raise InputError(f"at most {MAX_CAPTIONS} captions of at most {MAX_CAPTION_CHARS} characters each")
        with state.write_lock:
            path = state.save_upload(data, name)
            record = Record(path, texts, {"source": "upload", "filename": name})
            report = index_records(state.collection, [record], workers=1, keep_missing=True)  # add only
            row = state.collection.item_by_uri(str(path))
        if row is None:
            reason = report.skipped[0][1] if report.skipped else "unknown reason"
            raise InputError(f"{name}: could not be indexed ({reason})")
        status = 201 if report.added else 200
        return SafeJSONResponse({"item": item_json(row), "added": bool(report.added),
                                 "captions_added": report.captions_added}, status_code=status)

    @router.delete("/items/{item_id}", dependencies=[Depends(require_write)],
                   summary="Delete an item and its captions (needs write access)")
    def delete_item(item_id: int, state: ServerState = Depends(get_state)) -> dict:
        with state.write_lock:
            row = state.collection.get_item(item_id)
            state.collection.delete([item_id])
            state.collection.refresh_indexes()
        removed_file = False
        try:  # an uploaded file is the server's own copy: remove it with the item
            path = Path(row.uri).resolve()
            if path.is_relative_to(state.upload_dir.resolve()):
                path.unlink(missing_ok=True)
                removed_file = True
        except OSError:
            pass
        return {"deleted": item_id, "file_removed": removed_file}

    return router
