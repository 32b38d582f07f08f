"""MCP results from ravl's JSON answers: the JSON as structured content and as text (clients
that read only text see it too), plus small JPEG thumbnails of the hits as image content, so an
assistant can show what it found. Errors are tool errors carrying ravl's one-line message."""
from __future__ import annotations

import base64
import io
import json

from mcp.types import CallToolResult, ImageContent, TextContent

from ..errors import RavlError


def thumbnail(uri: str, size: int) -> ImageContent | None:
    """A JPEG no larger than ``size`` on each side, or None when the file cannot be read."""
    from ..images import load_image

    try:
        img = load_image(uri, min_side=size).image
    except RavlError:
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=80)
    return ImageContent(type="image", data=base64.b64encode(buf.getvalue()).decode("ascii"), mime_type="image/jpeg")


def result(body: dict, *, uris: list[str] = (), size: int = 128, png: bytes | None = None) -> CallToolResult:  # type: ignore[assignment]
    """``body`` as structured + text content, then thumbnails of ``uris`` (best first) and a PNG."""
    content: list = [TextContent(type="text", text=json.dumps(body, ensure_ascii=False))]
    for uri in dict.fromkeys(uris):
        thumb = thumbnail(uri, size)
        if thumb is not None:
            content.append(thumb)
    if png is not None:
        content.append(ImageContent(type="image", data=base64.b64encode(png).decode("ascii"), mime_type="image/png"))
    return CallToolResult(content=content, structured_content=body)


def error(exc: BaseException) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)


def hit_uris(answer: dict, n: int) -> list[str]:
    """The files of the first ``n`` hits of a search answer (images or captions)."""
    return [r["uri"] for r in answer.get("results", [])[:n] if r.get("uri")]
