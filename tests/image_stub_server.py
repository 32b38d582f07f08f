"""A stub image server for tests, run as its own process on loopback: the OpenAI images API
(``/v1/images/generations``, ``/v1/images/edits``) and AUTOMATIC1111's (``/sdapi/v1/txt2img``,
``/sdapi/v1/img2img``) in one.

    python image_stub_server.py   # prints "PORT <n>" on stdout, then serves

Images are deterministic: a flat colour from the prompt and seed (so the same seed gives the same
image), or, for edits and img2img, the mean colour of the uploaded init image. ``POST /control``
takes ``{"fail": [codes], "retry_after": s, "malform": "json"|"empty"|"not_image"|"url", "reset": true}``:
queued codes are answered once each (``0`` drops the connection), ``malform`` shapes every answer
until reset. ``GET /control`` returns the requests seen (path, headers, JSON body or multipart parts).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

STATE = {"fail": [], "retry_after": None, "malform": None, "requests": []}
LOCK = threading.Lock()


def colour_image(key: str, width: int, height: int) -> bytes:
    digest = hashlib.sha256(key.encode()).digest()
    buf = io.BytesIO()
    Image.new("RGB", (width, height), tuple(digest[:3])).save(buf, format="PNG")
    return buf.getvalue()


def mean_colour_image(data: bytes, width: int, height: int) -> bytes:
    img = Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1), Image.Resampling.BOX)
    buf = io.BytesIO()
    Image.new("RGB", (width, height), img.getpixel((0, 0))).save(buf, format="PNG")
    return buf.getvalue()


def parse_multipart(content_type: str, body: bytes) -> tuple[dict, list]:
    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields, files = {}, []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if part.get_filename():
            files.append({"field": name, "filename": part.get_filename(), "bytes": payload})
        else:
            fields[name] = payload.decode()
    return fields, files


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, data: bytes, ctype: str = "application/json", extra=None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, code: int, obj, extra=None) -> None:
        self._send(code, json.dumps(obj).encode(), extra=extra)

    def do_GET(self) -> None:
        if self.path == "/control":
            with LOCK:
                return self._json(200, {"requests": STATE["requests"]})
        if self.path.startswith("/files/"):
            return self._send(200, colour_image(self.path, 64, 64), "image/png")
        self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/control":
            body = json.loads(raw or b"{}")
            with LOCK:
                if body.get("reset"):
                    STATE.update(fail=[], retry_after=None, malform=None, requests=[])
                for key in ("fail", "retry_after", "malform"):
                    if key in body:
                        STATE[key] = body[key]
            return self._json(200, {"ok": True})
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            fields, files = parse_multipart(ctype, raw)
            seen = {"fields": fields, "files": [{"field": f["field"], "size": len(f["bytes"])} for f in files]}
        else:
            fields, files = json.loads(raw or b"{}"), []
            seen = {"json": {k: (v if k != "init_images" else [len(x) for x in v]) for k, v in fields.items()}}
        with LOCK:
            STATE["requests"].append({"path": self.path, "headers": dict(self.headers), **seen})
            fail = STATE["fail"].pop(0) if STATE["fail"] else None
            retry_after, malform = STATE["retry_after"], STATE["malform"]
        if fail == 0:
            self.close_connection = True
            return
        if fail:
            extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return self._json(fail, {"error": {"message": f"stub failure {fail}"}}, extra)
        if malform == "json":
            return self._send(200, b"<html>gateway page</html>", "text/html")
        if self.path.startswith("/v1/images/"):
            return self._openai(fields, files, malform)
        if self.path.startswith("/sdapi/v1/"):
            return self._a1111(fields, malform)
        self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _openai(self, fields: dict, files: list, malform) -> None:
        if fields.get("model") == "missing-model":
            return self._json(404, {"error": {"message": "model 'missing-model' not found"}})
        width, height = (int(v) for v in str(fields.get("size", "64x64")).split("x"))
        if malform == "empty":
            return self._json(200, {"created": 0, "data": []})
        if malform == "url":
            return self._json(200, {"created": 0, "data": [{"url": "/files/result.png"}]})
        if self.path.endswith("/edits"):
            png = mean_colour_image(files[0]["bytes"], width, height)
        else:
            png = colour_image(fields.get("prompt", ""), width, height)
        b64 = base64.b64encode(png if malform != "not_image" else b"<html>not an image</html>").decode()
        self._json(200, {"created": 0, "data": [{"b64_json": b64, "revised_prompt": "stub: " + fields.get("prompt", "")}]})

    def _a1111(self, body: dict, malform) -> None:
        if malform == "empty":
            return self._json(200, {"images": [], "parameters": body, "info": "{}"})
        width, height = int(body.get("width", 512)), int(body.get("height", 512))
        seed = body.get("seed", -1)
        seed = 1234 if seed in (-1, None) else seed
        if self.path.endswith("img2img"):
            png = mean_colour_image(base64.b64decode(body["init_images"][0]), width, height)
        else:
            png = colour_image(f"{body.get('prompt')}|{seed}", width, height)
        b64 = base64.b64encode(png if malform != "not_image" else b"<html>oops</html>").decode()
        info = {"seed": seed, "sampler_name": body.get("sampler_name", "Euler a"), "sd_model_name": "stub-model"}
        self._json(200, {"images": [b64], "parameters": {}, "info": json.dumps(info)})


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
