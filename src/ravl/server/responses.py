"""The server's JSON response class."""
from __future__ import annotations

import json

from fastapi.responses import JSONResponse


class SafeJSONResponse(JSONResponse):
    """JSON that is valid UTF-8 even when it holds a file name that is not (as \\udcXX escapes)."""

    def render(self, content) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")
