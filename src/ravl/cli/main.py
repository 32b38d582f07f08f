"""Entry point: parse, run one command, turn errors into one line on stderr."""
from __future__ import annotations

import argparse
import os
import sys

from . import ask, backends, caption, demo, exchange, imagine, index, info, mcp, prune, read, reindex, search, serve, tune, watch
from . import eval as eval_cmd
from . import shards as shards_cmd
from .common import safe_streams

COMMANDS = (index, prune, watch, reindex, search, caption, ask, imagine, read, info, tune, exchange, eval_cmd, serve,
            shards_cmd, mcp, demo, backends)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="ravl", description="Retrieval-augmented vision-language toolkit: index "
                                     "images, search across text and images, caption from retrieved evidence.")
    parser.add_argument("--version", action="version", version=f"ravl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    safe_streams()
    args = build_parser().parse_args(argv)
    from ..errors import RavlError
    from ..progress import listen
    from .common import log

    try:
        with listen(log):  # first-time model preparation (caches, exports) says so on stderr
            return args.run(args) or 0
    except RavlError as exc:
        sys.stderr.write(f"ravl {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"ravl {args.command}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # never a traceback for users unless they ask for one
        if os.environ.get("RAVL_DEBUG"):
            raise
        sys.stderr.write(f"ravl {args.command}: internal error: {type(exc).__name__}: {exc} "
                         "(set RAVL_DEBUG=1 for a traceback)\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
