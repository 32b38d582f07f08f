"""ravl mcp --collection DIR [--http PORT] [--allow-writes] [--generator SPEC] [--image-generator SPEC]"""
from __future__ import annotations

from .common import add_collection_arg


def add_parser(sub) -> None:
    p = sub.add_parser("mcp", help="serve a collection to AI assistants as an MCP server (stdio or HTTP)",
                       description="A Model Context Protocol server over one collection: tools search, similar, "
                                   "describe, ask, read_text and info (imagine with an image generator; index with "
                                   "--allow-writes) and resources ravl://item/ID. Speaks stdio (for clients that "
                                   "start it) or streamable HTTP at http://HOST:PORT/mcp with --http PORT. "
                                   "Registering it with a client: docs/integrations.md.")
    add_collection_arg(p)
    p.add_argument("--http", type=int, metavar="PORT", default=None,
                   help="serve streamable HTTP on this port (path /mcp) instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="--http: interface to listen on (default 127.0.0.1)")
    p.add_argument("--allow-writes", action="store_true",
                   help="offer the index tool; over --http without --api-key-env only on a loopback host")
    p.add_argument("--api-key-env", metavar="VAR", default=None,
                   help="--http: environment variable holding the key that writes need ('Authorization: Bearer')")
    p.add_argument("--generator", "-g", metavar="SPEC", default=None,
                   help="language model for describe, ask and translation (default: as 'ravl caption' and "
                        "'ravl ask': the bundled SmolLM2 when installed, else consensus)")
    p.add_argument("--image-generator", metavar="SPEC", default=None,
                   help="image generator for the imagine tool (default $RAVL_IMAGE_GENERATOR; none: no imagine tool)")
    p.add_argument("--thumbnail-size", type=int, default=128,
                   help="longest side of the thumbnails attached to results (default 128, at most 512)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                   help="log level on stderr (default warning)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..mcp.run import serve
    from ..mcp.state import McpSettings
    from .serve import _check_port_free

    settings = McpSettings(collection=args.collection, http_port=args.http, host=args.host,
                           allow_writes=args.allow_writes, api_key_env=args.api_key_env, generator=args.generator,
                           image_generator=args.image_generator, thumbnail_size=args.thumbnail_size,
                           any_path=args.http is None).check()
    if args.http:
        _check_port_free(args.host, args.http)  # before the models load, with a one-line error
    serve(settings, log_level=args.log_level)
    return 0
