"""One HTTP client for every server-backed generator (text and image): POST with retries and
backoff on 429/5xx and on refused or dropped connections, one-line errors that name the URL,
and loopback servers reached without any configured proxy. Standard library only.

A timeout is not retried (a slow model would only be asked again); ``Retry-After`` is honoured,
capped at 30 s. Client errors (4xx other than 408/409/429) fail at once with the hint the caller
gives for that status code.
"""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..errors import GenerationError, GenerationTimeoutError, GeneratorUnreachableError
from ..specs import Option, Spec

MAX_WAIT = 30.0
RETRY_STATUS = (408, 409, 429)

Hint = Callable[[int], str]


def server_message(body: bytes) -> str:
    """The error text an OpenAI-style server put in its body, on one line."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict):
            text = err.get("message") or err.get("detail") or err.get("error") or text
        else:
            text = str(err)
    except (ValueError, AttributeError):
        pass
    return " ".join(str(text).split())[:300] or "no details"


def is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


class Retryable(Exception):
    def __init__(self, message: str, wait: float | None = None):
        super().__init__(message)
        self.wait = wait


def _default_hint(code: int) -> str:
    return "check the request parameters"


class HttpClient:
    """POSTs to one server for the backend named ``spec`` (used in every message)."""

    def __init__(self, spec: str, *, timeout: float, retries: int, backoff: float,
                 api_key_env: str | None = None, hint: Hint = _default_hint,
                 start_hint: str = "is the server running and is the URL right?",
                 timeout_hint: str = "raise it with ?timeout=SECONDS") -> None:
        self.spec = spec
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.api_key_env = api_key_env
        self.hint, self.start_hint, self.timeout_hint = hint, start_hint, timeout_hint
        self._openers: dict[bool, Any] = {}

    def opener(self, url: str) -> Any:
        local = is_local(url)
        if local not in self._openers:
            handlers = [urllib.request.ProxyHandler({})] if local else []
            self._openers[local] = urllib.request.build_opener(*handlers)
        return self._openers[local]

    def headers(self, content_type: str = "application/json",
                accept: str = "application/json") -> dict[str, str]:
        headers = {"Content-Type": content_type, "Accept": accept, "User-Agent": "ravl"}
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _http_error(self, url: str, exc: urllib.error.HTTPError) -> Exception:
        try:
            detail = server_message(exc.read())
        except OSError:
            detail = exc.reason or "no details"
        where = f"{self.spec!r}: the server at {url} answered {exc.code}"
        if exc.code >= 500 or exc.code in RETRY_STATUS:
            wait = None
            try:
                wait = float(exc.headers.get("Retry-After", ""))
            except (TypeError, ValueError):
                pass
            return Retryable(f"{where} ({detail})", wait)
        return GenerationError(f"{where} ({detail}); {self.hint(exc.code)}")

    def timeout_error(self, url: str) -> GenerationError:
        return GenerationTimeoutError(f"{self.spec!r}: the server at {url} did not answer within {self.timeout:g} s; "
                                      f"{self.timeout_hint}")

    def post(self, url: str, data: bytes, headers: dict[str, str]) -> Any:
        """POST ``data``, retrying 429/5xx and refused or dropped connections with backoff;
        returns the open response (read it with :meth:`read`)."""
        attempts = self.retries + 1
        error: Exception = GenerationError(f"{self.spec!r}: no request was made to {url}")
        unreachable = False  # the last attempt got no answer at all (refused, dropped)
        for attempt in range(attempts):
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                return self.opener(url).open(request, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                error, unreachable = self._http_error(url, exc), False
                if isinstance(error, GenerationError):
                    raise error from None
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                    raise self.timeout_error(url) from None
                reason = exc.reason
                if isinstance(reason, ConnectionRefusedError):
                    what = "connection refused"
                elif isinstance(reason, socket.gaierror):
                    raise GenerationError(f"{self.spec!r}: cannot resolve the host of {url} ({reason}); "
                                          "check the URL in the spec") from None
                else:
                    what = f"connection failed: {reason}"
                error, unreachable = Retryable(f"{self.spec!r}: cannot connect to {url} ({what}); {self.start_hint}"), True
            except TimeoutError:
                raise self.timeout_error(url) from None
            except (ConnectionError, OSError) as exc:  # dropped mid-answer, reset, ...
                error, unreachable = Retryable(f"{self.spec!r}: the connection to {url} failed ({exc})"), True
            if attempt + 1 < attempts:
                wait = getattr(error, "wait", None)
                wait = self.backoff * (2 ** attempt) if wait is None else wait
                time.sleep(min(max(wait, 0.0), MAX_WAIT))
        tries = f"after {attempts} attempts" if attempts > 1 else "(retries=0)"
        raise (GeneratorUnreachableError if unreachable else GenerationError)(f"{error} {tries}")

    def read(self, response: Any, url: str) -> bytes:
        try:
            with response:
                return response.read()
        except TimeoutError:
            raise self.timeout_error(url) from None
        except (ConnectionError, OSError) as exc:
            raise GenerationError(f"{self.spec!r}: the connection to {url} broke while reading the answer ({exc})") from None

    def read_json(self, response: Any, url: str, what: str = "an OpenAI-compatible API root") -> Any:
        raw = self.read(response, url)
        try:
            return json.loads(raw)
        except ValueError:
            raise GenerationError(f"{self.spec!r}: the server at {url} did not answer with JSON "
                                  f"({server_message(raw)[:120]!r}); is the URL {what}?") from None

    def post_json(self, url: str, body: dict, what: str = "an OpenAI-compatible API root") -> Any:
        response = self.post(url, json.dumps(body).encode("utf-8"), self.headers())
        return self.read_json(response, url, what)


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body: ``fields`` as text parts, ``files`` as (field, file name, bytes,
    content type) parts; returns (body, Content-Type header)."""
    import uuid

    boundary = "ravl-" + uuid.uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").encode()
        out += str(value).encode("utf-8") + b"\r\n"
    for name, filename, data, ctype in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                f"Content-Type: {ctype}\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


OPENAI_BASE_URL = "https://api.openai.com/v1"


def retry_options(timeout: float, waits_for: str) -> tuple[Option, ...]:
    """The ``timeout``/``retries``/``backoff`` options every HTTP backend declares."""
    return (Option("timeout", float, timeout, f"seconds to wait for {waits_for}", minimum=0.001),
            Option("retries", int, 2, "further attempts after a 429, a 5xx or a refused/dropped connection", minimum=0),
            Option("backoff", float, 0.5, "seconds before the first retry, doubling each time", minimum=0))


def openai_endpoint(spec: Spec, opts: dict[str, Any], example: str) -> tuple[str, str]:
    """``(base_url, api_key_env)`` of an OpenAI-compatible backend: ``?base_url=``, else
    ``$OPENAI_BASE_URL``, else OpenAI's; an ``?api_key_env=`` naming an unset variable is an error."""
    from ..errors import ConfigError

    base_url = opts["base_url"] or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"base_url {base_url!r} in {str(spec)!r} must be an http(s) URL such as {example}")
    api_key_env = opts["api_key_env"]
    if "api_key_env" in spec.opts and not os.environ.get(api_key_env):
        raise ConfigError(f"{str(spec)!r} reads its API key from ${api_key_env}, which is not set; export it first")
    return base_url, api_key_env
