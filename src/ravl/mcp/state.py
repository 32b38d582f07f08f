"""What ``ravl mcp`` keeps open: its settings, the collection with its encoder, the generators
(loaded on first use), the image roots an HTTP client's paths must lie in, and one lock so tool
calls (run in worker threads by the SDK) use the models one at a time."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError

#: longest side of a thumbnail sent as MCP image content, and the most a result carries
MAX_THUMBNAIL_SIZE = 512
MAX_THUMBNAILS = 10


@dataclass(frozen=True)
class McpSettings:
    collection: Path
    #: streamable HTTP on this port (None: stdio)
    http_port: int | None = None
    host: str = "127.0.0.1"
    #: the indexing tool (writes); over HTTP without an API key only on a loopback host
    allow_writes: bool = False
    #: name of the environment variable holding the key HTTP clients send as 'Authorization: Bearer'
    api_key_env: str | None = None
    #: text generator for describe/ask/read_text's translation (None: the CLI's defaults per task)
    generator: str | None = None
    #: image generator for the imagine tool (None: $RAVL_IMAGE_GENERATOR, else no imagine tool)
    image_generator: str | None = None
    thumbnail_size: int = 128
    #: over stdio a client may name any readable image file (it runs as the user, like the CLI);
    #: over HTTP only files inside the collection's image roots
    any_path: bool = field(default=True)

    def __post_init__(self):
        object.__setattr__(self, "collection", Path(self.collection).expanduser().resolve())

    def api_key(self) -> str | None:
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None

    def check(self) -> McpSettings:
        from ..server.settings import is_loopback

        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise ConfigError(f"--http must be a port between 0 and 65535, got {self.http_port}")
        if not 16 <= self.thumbnail_size <= MAX_THUMBNAIL_SIZE:
            raise ConfigError(f"--thumbnail-size must be between 16 and {MAX_THUMBNAIL_SIZE}, got {self.thumbnail_size}")
        if self.api_key_env and not self.api_key():
            raise ConfigError(f"--api-key-env {self.api_key_env} names an unset or empty environment variable; "
                              f"export {self.api_key_env}=<a long random key> or leave --api-key-env out")
        if self.api_key_env and self.http_port is None:
            raise ConfigError("--api-key-env applies to --http; over stdio the client that starts ravl is trusted")
        if self.http_port is not None and self.allow_writes and not self.api_key() and not is_loopback(self.host):
            raise ConfigError(f"--allow-writes without an API key is only allowed on a loopback host, not "
                              f"{self.host!r}; use --host 127.0.0.1, or set a key with --api-key-env VAR")
        return self

    def write_mode(self) -> str:
        """As :meth:`ravl.server.settings.ServerSettings.write_mode`: "key", "open" or "disabled"."""
        if self.http_port is not None and self.api_key():
            return "key"
        return "open" if self.allow_writes else "disabled"


class McpState:
    """Opened once when the server starts; shared by every tool call."""

    def __init__(self, settings: McpSettings):
        from ..collection import open_collection
        from ..tasks.imagine import resolve_generator_spec

        self.settings = settings.check()
        writes = settings.write_mode() != "disabled"
        self.collection = open_collection(settings.collection, readonly=not writes)
        self.collection.encoder.encode_texts(["warm-up"])  # load the model now, not in the first tool call
        self.lock = threading.RLock()
        self._generators: dict[str, Any] = {}
        self.image_generator_spec = resolve_generator_spec(settings.image_generator)
        self._image_generator: Any = None

    def close(self) -> None:
        self.collection.close()

    # --- models ----------------------------------------------------------------------------------
    def generator(self, task: str):
        """The configured text generator, or the CLI's default for ``task``, loaded once."""
        from ..generate.base import load_generator
        from ..generate.defaults import default_generator

        spec = self.settings.generator or default_generator(task)
        with self.lock:
            if spec not in self._generators:
                self._generators[spec] = load_generator(spec)
            return self._generators[spec]

    def image_generator(self):
        from ..generate.images.base import load_image_generator

        if not self.image_generator_spec:
            return None
        with self.lock:
            if self._image_generator is None:
                self._image_generator = load_image_generator(self.image_generator_spec)
            return self._image_generator

    # --- images --------------------------------------------------------------------------------
    def image_roots(self) -> tuple[Path, ...]:
        """The folders the collection's items live in (smallest covering set), per db generation."""
        return self.collection.image_roots()

    def image_file(self, path: str) -> Path:
        """A client's image path: any file over stdio; over HTTP only inside the image roots."""
        p = Path(path).expanduser()
        if self.settings.any_path:
            return p.resolve()
        try:
            real = p.resolve()
            inside = p.is_absolute() and any(real.is_relative_to(r) for r in self.image_roots())
        except (OSError, ValueError, RuntimeError):
            inside = False
        if not inside or not real.is_file():
            raise InputError(f"{path}: no image at that path inside the collection's image roots; send the image "
                             "as image_base64 instead")
        return real

    def load(self, path: str | None = None, data: str | None = None, item: int | None = None):
        """Exactly one of a path, base64 (or a data: URL) or an item id -> (RGB image, name, item
        ids to leave out of the neighbours)."""
        from ..images import MAX_FILE_BYTES, decode_data_url, decode_image, load_image

        given = [x is not None and x != "" for x in (path, data, item)]
        if sum(given) != 1:
            raise InputError("give exactly one of: image (a file path), image_base64 (base64 or a data:image/... URL) "
                             "or item (an item id)")
        if item is not None:
            row = self.collection.get_item(item)
            real = self.image_file(row.uri) if not self.settings.any_path else Path(row.uri)
            return load_image(real).image, row.uri, (item,)
        if path:
            real = self.image_file(path)
            return load_image(real).image, str(real), ()  # as `ravl caption FILE`: nothing left out
        assert data is not None
        raw = decode_data_url(data, max_bytes=min(MAX_FILE_BYTES, 32 * 2**20), name="image_base64")
        image, _, _ = decode_image(raw, name="image_base64")
        return image, "image_base64", ()
