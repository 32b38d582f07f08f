"""ravl serve --collection DIR [--host H] [--port P] [--api-key-env VAR] [--workers N] [--allow-writes]
[--batch-size N] [--batch-wait-ms T]"""
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
                   help="generator(s) loaded at start-up; repeat to offer several. The first captions (the page's "
                        "'describe'); /ask prefers the ask default when loaded (default: the bundled SmolLM2 when "
                        "installed, as 'ravl caption' and 'ravl ask' use it, plus consensus; else consensus)")
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
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="S",
                   help="seconds a client has to send a complete request head (default 10)")
    p.add_argument("--body-timeout", type=float, default=60.0, metavar="S",
                   help="longest pause, in seconds, while a client sends a request body (default 60)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="dynamic batching: one model call answers up to N queued queries (default 32; 1 = off)")
    p.add_argument("--batch-wait-ms", type=float, default=2.0,
                   help="how long a batch waits for more queries after the first (default 2 ms); queries that "
                        "arrive while the model runs join the next batch anyway")
    p.add_argument("--watch", metavar="DIR", action="append", default=None,
                   help="keep the collection in step with this folder while serving (as 'ravl watch'; repeatable; "
                        "needs --workers 1 and pip install 'ravl[watch]')")
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
    import math
    import os

    import uvicorn

    from ..collection import open_collection
    from ..errors import ConfigError
    from ..server.protocol import timed_protocol
    from ..server.settings import SETTINGS_ENV, ServerSettings
    from ..tasks.imagine import resolve_generator_spec

    if not (math.isfinite(args.max_upload_mb) and 0 < args.max_upload_mb <= 4096):
        raise ConfigError(f"--max-upload-mb must be between 0 and 4096, got {args.max_upload_mb}")
    settings = ServerSettings(collection=args.collection, host=args.host, port=args.port,
                              api_key_env=args.api_key_env, allow_writes=args.allow_writes, workers=args.workers,
                              max_upload_bytes=int(args.max_upload_mb * 2**20), max_k=args.max_k,
                              thumbnail_size=args.thumbnail_size, model_threads=args.threads,
                              batch_size=args.batch_size, batch_wait_ms=args.batch_wait_ms,
                              generators=tuple(args.generator or ()),
                              image_generator=resolve_generator_spec(args.image_generator),
                              imagine_concurrency=args.imagine_concurrency,
                              header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                              watch=tuple(args.watch or ())).check()
    with open_collection(settings.collection, readonly=True) as coll:  # fail fast, before any model loads
        counts = coll.counts()
    _check_port_free(settings.host, settings.port)
    mode = {"key": f"need 'Authorization: Bearer' with ${settings.api_key_env}", "open": "open (loopback only)",
            "disabled": "disabled"}[settings.write_mode()]
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    if not args.generator:
        from ..generate.defaults import fallback_note

        note = fallback_note()
        if note:
            log(f"ravl serve: {note}")
    log(f"ravl serve: describe with {settings.generators[0]} (loaded: {', '.join(settings.generators)})")
    log(f"ravl serve: {settings.collection} ({counts['images']} images, {counts['captions']} captions) at "
        f"http://{shown}:{settings.port}/  API docs /docs; writes {mode}; loading models...")
    common = dict(host=settings.host, port=settings.port, log_level=args.log_level, proxy_headers=False,
                  server_header=False, timeout_graceful_shutdown=5,
                  http=timed_protocol(settings.header_timeout, settings.body_timeout))
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
