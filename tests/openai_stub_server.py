"""A minimal OpenAI-compatible chat-completions server for tests, run as its own process.

    python openai_stub_server.py [--port 0]   # prints "PORT <n>" on stdout, then serves

``POST /v1/chat/completions`` answers with the reply set through ``POST /control`` (default:
``"Echo: "`` plus the last user text), as one JSON body or, with ``"stream": true``, as
server-sent events, one word per chunk. ``POST /control`` takes ``{"reply": str, "fail": [codes],
"delay": seconds, "retry_after": seconds, "reset": true}``: each queued code is answered once, in
order, before normal answers resume (``0`` drops the connection without an answer), and ``delay``
holds every answer back. ``GET /control`` returns the requests seen (headers and JSON bodies).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"reply": None, "fail": [], "delay": 0.0, "retry_after": None, "requests": []}
LOCK = threading.Lock()


def _last_user_text(messages) -> str:
    for message in reversed(messages or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
        return str(content)
    return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _json(self, code: int, obj, extra=None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def do_GET(self) -> None:
        if self.path == "/control":
            with LOCK:
                return self._json(200, {"requests": STATE["requests"]})
        if self.path == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
        self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        if self.path == "/control":
            body = self._body()
            with LOCK:
                if body.get("reset"):
                    STATE.update(reply=None, fail=[], delay=0.0, retry_after=None, requests=[])
                for key in ("reply", "fail", "delay", "retry_after"):
                    if key in body:
                        STATE[key] = body[key]
            return self._json(200, {"ok": True})
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        try:
            body = self._body()
        except ValueError:
            return self._json(400, {"error": {"message": "body is not JSON"}})
        with LOCK:
            STATE["requests"].append({"headers": dict(self.headers), "body": body})
            fail = STATE["fail"].pop(0) if STATE["fail"] else None
            delay, reply, retry_after = STATE["delay"], STATE["reply"], STATE["retry_after"]
        if delay:
            time.sleep(delay)
        if fail == 0:
            self.close_connection = True
            return
        if fail:
            extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return self._json(fail, {"error": {"message": f"stub failure {fail}", "type": "server_error"}}, extra)
        if not body.get("model") or not isinstance(body.get("messages"), list):
            return self._json(400, {"error": {"message": "model and messages are required"}})
        if body["model"] == "missing-model":
            return self._json(404, {"error": {"message": "model 'missing-model' not found"}})
        text = reply if reply is not None else "Echo: " + _last_user_text(body["messages"])
        if body.get("stream"):
            return self._stream(body["model"], text)
        self._json(200, {"id": "chatcmpl-stub", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": text}}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split())}})

    def _stream(self, model: str, text: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        words = text.split(" ")
        chunks = [{"role": "assistant", "content": ""}]
        chunks += [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
        for delta in chunks:
            event = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    sys.stdout.write(f"PORT {server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()


class StubHandle:
    """A running stub process (for tests): ``url`` is its API root; ``control`` sets behaviour."""

    def __init__(self, script: str | None = None) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, script or __file__], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"stub server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = self.root + "/v1"

    def _call(self, method: str, data=None):
        import urllib.request

        req = urllib.request.Request(self.root + "/control", method=method,
                                     data=None if data is None else json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as resp:
            return json.loads(resp.read())

    def control(self, **settings) -> None:
        self._call("POST", settings)

    def reset(self) -> None:
        self._call("POST", {"reset": True})

    def requests(self) -> list:
        return self._call("GET")["requests"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
