"""The jobs every front door (CLI, HTTP, MCP) shares: each door parses, calls one task, renders."""
