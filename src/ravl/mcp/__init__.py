"""The MCP front door (``ravl mcp``): ravl's jobs as Model Context Protocol tools for AI
assistants, over stdio or streamable HTTP, built on the official ``mcp`` SDK
(``pip install 'ravl[mcp]'``). Like the CLI and the HTTP server it only parses, calls a task
(:mod:`ravl.tasks`) and renders; :mod:`.state` holds what the server keeps open, :mod:`.tools`
the tools and :mod:`.render` the results (JSON plus small thumbnails)."""
