"""Run ``ravl mcp``: open the collection once, build the tools, serve stdio or streamable HTTP."""
from __future__ import annotations

from .state import McpSettings, McpState


def serve(settings: McpSettings, *, log_level: str = "WARNING") -> None:
    """Blocks until the client disconnects (stdio) or the process is stopped (HTTP)."""
    from ..errors import MissingDependencyError

    settings.check()
    try:
        from .tools import build_server
    except ImportError as exc:
        raise MissingDependencyError(f"ravl mcp needs the MCP SDK ({exc}); pip install 'ravl[mcp]'") from None
    state = McpState(settings)
    try:
        server = build_server(state, log_level.upper())
        if settings.http_port is None:
            server.run("stdio")
        else:
            server.run("streamable-http", host=settings.host, port=settings.http_port)
    finally:
        state.close()
