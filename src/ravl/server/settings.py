"""Server settings: one frozen dataclass, checked before anything is loaded."""
from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError

#: environment variable that carries the settings to ``uvicorn --workers N`` worker processes
SETTINGS_ENV = "RAVL_SERVE_SETTINGS"


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``; False for 0.0.0.0 and real interfaces."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings:
    """What ``ravl serve`` needs. Write access is decided once, by :meth:`write_mode`."""

    collection: Path
    host: str = "127.0.0.1"
    port: int = 8000
    #: name of the environment variable holding the API key for write endpoints (never the key itself)
    api_key_env: str | None = None
    #: allow writes without a key (only on a loopback host)
    allow_writes: bool = False
    workers: int = 1
    max_upload_bytes: int = 16 * 1024 * 1024
    max_k: int = 100
    thumbnail_size: int = 256
    #: generator specs loaded at start-up; requests may pick only these. The first is the default for
    #: POST /caption (the page's "describe"); POST /ask defaults to the CLI's ask default when loaded.
    #: Empty: the CLI's defaults (:func:`ravl.generate.defaults.server_generators`): the bundled
    #: SmolLM2 when installed, plus consensus.
    generators: tuple[str, ...] = ()
    #: encoder spec; None uses the one the collection was built with
    encoder: str | None = None
    #: torch intra-op threads in the server process, also given to the encoder as its ``threads=``
    #: spec option when it declares one (None leaves the defaults). One thread per model call is
    #: much faster under concurrent load: spinning thread teams fight over the cores.
    model_threads: int | None = 1
    #: dynamic batching: a model call serves up to this many queued requests (1: no batching) ...
    batch_size: int = 32
    #: ... collected for at most this long after the first one (requests queued during a call join the next)
    batch_wait_ms: float = 2.0
    #: where thumbnails are cached; None: ``<collection>/thumbnails`` or, if not writable, RAVL_HOME
    thumbnail_dir: Path | None = None
    #: image generator spec for POST /imagine (None: /imagine answers 503 with the references)
    image_generator: str | None = None
    #: images generated at once; further /imagine requests get 429 + Retry-After
    imagine_concurrency: int = 1
    #: seconds a client has to send a complete request head; longest pause inside a request body
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    #: folders the server keeps the collection in step with (``ravl serve --watch DIR``)
    watch: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "collection", Path(self.collection).expanduser().resolve())
        if not self.generators:
            from ..generate.defaults import server_generators

            object.__setattr__(self, "generators", server_generators())
        object.__setattr__(self, "generators", tuple(self.generators))
        object.__setattr__(self, "watch", tuple(str(Path(w).expanduser().resolve()) for w in self.watch))
        if self.thumbnail_dir is not None:
            object.__setattr__(self, "thumbnail_dir", Path(self.thumbnail_dir).expanduser().resolve())

    def api_key(self) -> str | None:
        """The configured key, read from the environment now (None when no key is configured)."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None

    def write_mode(self) -> str:
        """``"key"`` (Bearer key required), ``"open"`` (loopback, --allow-writes) or ``"disabled"``."""
        if self.api_key():
            return "key"
        return "open" if self.allow_writes else "disabled"

    def check(self) -> ServerSettings:
        """Raise :class:`ConfigError` for settings that must not start a server."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {self.port}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        for name, value in (("max_upload_bytes", self.max_upload_bytes), ("max_k", self.max_k),
                            ("imagine_concurrency", self.imagine_concurrency),
                            ("thumbnail_size", self.thumbnail_size), ("model_threads", self.model_threads or 1),
                            ("--batch-size", self.batch_size)):
            if value < 1:
                raise ConfigError(f"{name} must be positive, got {value}")
        for flag, seconds in (("--header-timeout", self.header_timeout), ("--body-timeout", self.body_timeout)):
            if not (isinstance(seconds, (int, float)) and 0 < seconds <= 3600):  # also refuses NaN
                raise ConfigError(f"{flag} must be between 0 and 3600 seconds, got {seconds}")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ConfigError(f"--batch-wait-ms must be between 0 and 1000, got {self.batch_wait_ms:g}")
        if self.api_key_env and not self.api_key():
            raise ConfigError(f"--api-key-env {self.api_key_env} names an unset or empty environment variable; "
                              f"export {self.api_key_env}=<a long random key> or leave --api-key-env out")
        if self.watch and self.workers > 1:
            raise ConfigError("--watch needs --workers 1 (one process follows the folders and writes)")
        for folder in self.watch:
            if not Path(folder).is_dir():
                raise ConfigError(f"--watch {folder}: not a folder")
        if self.allow_writes and not self.api_key() and not is_loopback(self.host):
            raise ConfigError(f"--allow-writes without an API key is only allowed on a loopback host, not "
                              f"{self.host!r}; use --host 127.0.0.1, or set a key with --api-key-env VAR")
        return self

    # --- hand-over to worker processes (uvicorn --workers) -------------------------------------
    def to_json(self) -> str:
        d = asdict(self)
        d["collection"] = str(self.collection)
        d["thumbnail_dir"] = str(self.thumbnail_dir) if self.thumbnail_dir else None
        d["generators"] = list(self.generators)
        d["watch"] = list(self.watch)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        d = json.loads(text)
        d["generators"] = tuple(d.get("generators") or ())
        d["watch"] = tuple(d.get("watch") or ())
        return cls(**d)

    @classmethod
    def from_env(cls) -> ServerSettings:
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise ConfigError(f"{SETTINGS_ENV} is not set; start the server with 'ravl serve --collection DIR'")
        return cls.from_json(text)

