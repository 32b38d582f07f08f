"""ravl serve --collection DIR [--host H] [--port P] [--api-key-env VAR] [--workers N] [--allow-writes]"""
from __future__ import annotations

from .common import add_collection_arg, log


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a collection over HTTP: JSON API and a search page",
                       description="Start an HTTP server with a JSON API (docs at /docs) and a web page at / for "
                                   "searching and describing a collection. Reads are open; writes (POST /items, "
                                   "DELETE /items/ID) need a Bearer key from --api-key-env, or --allow-writes on "
                                   "a loopback host.")
    add_collection_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key-env", metavar="VAR", default=None,
                   help="name of an environment variable holding the API key that write endpoints require")
    p.add_argument("--allow-writes", action="store_true",
                   help="allow writes without a key (refused unless --host is a loopback address)")
    p.add_argument("--workers", type=int, default=1, help="server processes, each loading the models (default 1)")
    p.add_argument("--generator", "-g", metavar="SPEC", action="append", default=None,
                   help="generator(s) for /caption, loaded at start-up; repeat to offer several (default consensus)")
    p.add_argument("--image-generator", metavar="SPEC", default=None,
                   help="image generator for POST /imagine, loaded at start-up (default $RAVL_IMAGE_GENERATOR; "
                        "none: /imagine answers 503 with the nearest images)")
    p.add_argument("--imagine-concurrency", type=int, default=1,
                   help="images generated at once; more requests get 429 + Retry-After (default 1)")
    p.add_argument("--max-upload-mb", type=float, default=16.0, help="upload size cap in MiB (default 16)")
    p.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for (default 100)")
    p.add_argument("--thumbnail-size", type=int, default=256, help="thumbnail side in pixels (default 256)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads per model call (default 1: best under concurrent requests); passed to the "
                        "encoder as its threads= spec option when it has one")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="server log level (default info)")
    p.set_defaults(run=run)


def _check_port_free(host: str, port: int) -> None:
    import socket

    from ..errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host") from None


def run(args) -> int:
    import os

    import uvicorn

    from ..collection import open_collection
    from ..imagine import resolve_generator_spec
    from ..server.settings import SETTINGS_ENV, ServerSettings

    settings = ServerSettings(collection=args.collection, host=args.host, port=args.port,
                              api_key_env=args.api_key_env, allow_writes=args.allow_writes, workers=args.workers,
                              max_upload_bytes=int(args.max_upload_mb * 2**20), max_k=args.max_k,
                              thumbnail_size=args.thumbnail_size, model_threads=args.threads,
                              generators=tuple(args.generator or ("consensus",)),
                              image_generator=resolve_generator_spec(args.image_generator),
                              imagine_concurrency=args.imagine_concurrency).check()
    with open_collection(settings.collection, readonly=True) as coll:  # fail fast, before any model loads
        counts = coll.counts()
    _check_port_free(settings.host, settings.port)
    mode = {"key": f"need 'Authorization: Bearer' with ${settings.api_key_env}", "open": "open (loopback only)",
            "disabled": "disabled"}[settings.write_mode()]
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    log(f"ravl serve: {settings.collection} ({counts['images']} images, {counts['captions']} captions) at "
        f"http://{shown}:{settings.port}/  API docs /docs; writes {mode}; loading models...")
    common = dict(host=settings.host, port=settings.port, log_level=args.log_level, proxy_headers=False,
                  server_header=False, timeout_graceful_shutdown=5)
    if settings.workers == 1:
        from ..server.app import create_app
        from ..server.state import ServerState

        state = ServerState.open(settings)  # load here, so a failure is one clean error line
        log("ravl serve: models loaded")
        uvicorn.run(create_app(settings, state=state), **common)
    else:
        os.environ[SETTINGS_ENV] = settings.to_json()
        uvicorn.run("ravl.server.app:create_app_from_env", factory=True, workers=settings.workers, **common)
    return 0
