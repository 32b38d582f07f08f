"""The FastAPI app factory. The collection, encoder and generators load once, in the lifespan;
request handlers are plain (sync) functions run in worker threads."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import RavlError
from .errors import AuthError, BusyError, UploadTooLargeError, error_body, status_for
from .responses import SafeJSONResponse
from .routes_imagine import build_router as imagine_router
from .routes_items import build_router as items_router
from .routes_items import check_write
from .routes_openai import build_router as openai_router
from .routes_read import build_router as read_router
from .routes_search import build_router as search_router
from .settings import ServerSettings
from .state import ServerState

STATIC = Path(__file__).parent / "static"
#: slack above the upload cap for multipart framing and the small form fields
BODY_SLACK = 256 * 1024
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
log = logging.getLogger("ravl.server")


def _json(status: int, body: dict, headers: dict | None = None) -> JSONResponse:
    return SafeJSONResponse(body, status_code=status, headers=headers)


def _error_response(exc: BaseException) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
    if isinstance(exc, BusyError):
        headers = {"Retry-After": str(exc.retry_after)}
    return _json(status_for(exc), error_body(exc), headers)


async def _drain(receive, budget: int) -> None:
    """Read and drop the rest of a request body, at most ``budget`` bytes (a lingering close)."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body"):
            return


class GuardMiddleware:
    """Pure ASGI, outermost: refuses unauthorised writes and oversize bodies before any byte of the
    body is read, and adds security headers to every response."""

    def __init__(self, app, *, settings: ServerSettings, api_key: str | None):
        self.app, self.settings, self.api_key = app, settings, api_key
        self.limit = settings.max_upload_bytes + BODY_SLACK
        self.drain_max = max(4 * self.limit, 32 * 2**20)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if (method == "POST" and path.rstrip("/") == "/items") or (method == "DELETE" and path.startswith("/items/")):
            try:
                check_write(self.settings.write_mode(), self.api_key, headers.get("authorization"))
            except RavlError as exc:
                return await _error_response(exc)(scope, receive, send)
        if method == "POST" and path.rstrip("/") == "/imagine" and self.api_key:  # generation is costly: key first
            try:
                check_write("key", self.api_key, headers.get("authorization"))
            except RavlError as exc:
                return await _error_response(exc)(scope, receive, send)
        too_big = UploadTooLargeError(f"request body over the {self.settings.max_upload_bytes / 2**20:.1f} MiB "
                                      "upload limit; send a smaller image")
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = 0
        if length > self.limit:
            if length <= self.drain_max and headers.get("expect", "").lower() != "100-continue":
                await _drain(receive, length)  # so the client reads the 413 instead of a reset
            return await _error_response(too_big)(scope, receive, send)
        received, exceeded = 0, False

        async def limited_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    if message.get("more_body"):
                        await _drain(receive, self.drain_max)
                    raise too_big
            return message

        page = path == "/" or path.startswith("/static/")
        replaced = False

        async def guarded_send(message):
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                if exceeded:  # whatever the app made of the cut-off body, the answer is 413
                    resp = _error_response(too_big)
                    await send({"type": "http.response.start", "status": 413, "headers": resp.raw_headers})
                    await send({"type": "http.response.body", "body": resp.body})
                    replaced = True
                    return
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY")]
                if page:
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not replaced:
                raise


def _swagger_assets():
    """Swagger UI 5's files as shipped in the fastapi-offline wheel, or None (FastAPI's CDN page)."""
    from importlib.resources import files

    try:
        folder = files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        return None
    return str(folder) if (folder / "swagger-ui-bundle.js").is_file() else None


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RavlError)
    async def ravl_error(request: Request, exc: RavlError):
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path"))
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return _json(400, {"type": "InputError", "message": "; ".join(parts) + " (see /docs for the parameters)"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kinds = {404: "NotFoundError", 405: "MethodNotAllowedError", 413: "UploadTooLargeError"}
        message = {404: f"no route {request.url.path}; see /docs for the API",
                   405: f"{request.method} is not allowed on {request.url.path}; see /docs"}.get(exc.status_code,
                                                                                              str(exc.detail))
        return _json(exc.status_code, {"type": kinds.get(exc.status_code, "HTTPError"), "message": message},
                     getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _json(500, {"type": "InternalError", "message": f"{type(exc).__name__}: {exc} (see the server log)"})


def create_app(settings: ServerSettings, *, state: ServerState | None = None) -> FastAPI:
    """A FastAPI app serving ``settings.collection``; raises ConfigError for unsafe settings.

    Nothing heavy happens here: the lifespan opens the collection and loads the models when the
    server starts (or takes ``state``, opened by the caller with :meth:`ServerState.open`), so one
    load serves every request.
    """
    settings.check()
    api_key = settings.api_key()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from starlette.concurrency import run_in_threadpool

        opened = state or await run_in_threadpool(ServerState.open, settings)
        app.state.ravl = opened
        try:
            yield
        finally:
            if opened is not None:
                opened.close()

    assets = _swagger_assets()
    app = FastAPI(title="ravl", version=__version__, lifespan=lifespan, docs_url=None if assets else "/docs",
                  default_response_class=SafeJSONResponse,
                  description="Search a ravl collection by text or image, caption images from retrieved "
                              "evidence, and generate images guided by retrieved ones (/imagine). Every error is "
                              "JSON {type, message}.")
    app.state.api_key = api_key
    app.add_middleware(GuardMiddleware, settings=settings, api_key=api_key)
    _install_handlers(app)
    app.include_router(search_router(settings))
    app.include_router(items_router())
    app.include_router(imagine_router(settings))
    app.include_router(read_router())
    app.include_router(openai_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if assets:  # interactive docs from files shipped in a wheel: they work offline
        from fastapi.openapi.docs import get_swagger_ui_html

        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        def docs():
            return get_swagger_ui_html(openapi_url="/openapi.json", title="ravl API",
                                       swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                       swagger_css_url="/docs-assets/swagger-ui.css",
                                       swagger_favicon_url="/docs-assets/favicon.png")

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --workers N``: settings come from the RAVL_SERVE_SETTINGS variable."""
    return create_app(ServerSettings.from_env())

