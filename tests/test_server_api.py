"""`ravl serve`: the HTTP API of real server processes on loopback, with the real default encoder.

Covers every endpoint and its errors, write access (key, no key, --allow-writes), upload limits
(size, fake images, decompression bombs), path traversal, and 20 concurrent clients.
"""
from __future__ import annotations

import http.client
import io
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

TESTS = Path(__file__).resolve().parent
PHOTOS = {"chelsea": "a tabby cat sitting on a floor", "coffee": "a cup of espresso coffee on a saucer",
          "rocket": "a rocket launching into the sky", "motorcycle": "a parked motor scooter",
          "astronaut": "a woman astronaut in a space suit", "camera": "a man with a camera on a tripod"}
SHAPES = {"red-circle": ((220, 30, 30), "ellipse"), "blue-square": ((30, 60, 220), "rectangle"),
          "green-circle": ((30, 180, 60), "ellipse"), "yellow-square": ((240, 220, 40), "rectangle")}
KEY = "test-key-3f9a1c"

pytestmark = pytest.mark.slow  # a real server process with the real default encoder


# --- helpers, shared with test_server_browser.py -----------------------------------------------
def ravl_cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ravl.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def make_photos(root: Path, photos: dict, names=None) -> Path:
    """Six scikit-image photos and four drawn shapes, each with a caption sidecar (``names``: only
    those of them; test_shards.py splits them between shards)."""
    root.mkdir(parents=True, exist_ok=True)
    wanted = set(names if names is not None else [*PHOTOS, *SHAPES])
    for name, caption in PHOTOS.items():
        if name not in wanted:
            continue
        photos[name].save(root / f"{name}.jpg", quality=90)
        (root / f"{name}.txt").write_text(caption + "\n")
    for name, (rgb, shape) in SHAPES.items():
        if name not in wanted:
            continue
        img = Image.new("RGB", (160, 120), (245, 245, 240))
        getattr(ImageDraw.Draw(img), shape)((30, 15, 130, 105), fill=rgb)
        img.save(root / f"{name}.png")
        colour, kind = name.split("-")
        (root / f"{name}.txt").write_text(f"a {colour} {kind} on a white background\n")
    return root


_BUILT: dict = {}


def build_collection(tmp_path_factory, photos: dict) -> tuple[Path, Path]:
    """(images folder, collection) indexed with `ravl index`; built once per test session."""
    if not _BUILT:
        base = tmp_path_factory.mktemp("serve")
        images = make_photos(base / "images", photos)
        proc = ravl_cli("index", images, "--collection", base / "coll", "--json")
        assert proc.returncode == 0, proc.stderr
        _BUILT["dirs"] = (images, base / "coll")
    return _BUILT["dirs"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `ravl serve` process on a free loopback port, waited for until /health answers."""

    def __init__(self, collection: Path, *args, env=None, log_dir: Path, wait: float = 120,
                 launcher: list[str] | None = None, generator: str | None = "consensus"):
        """``generator``: passed as ``--generator`` unless ``args`` name one; consensus by default, so
        these tests do not load the bundled LM (serve's own default); None: serve's default."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"serve-{self.port}.log"
        cmd = [*(launcher or [sys.executable, "-m", "ravl.cli.main"]), "serve", "--collection", str(collection),
               "--port", str(self.port),
               "--log-level", "warning", *map(str, args)]
        if generator and "--generator" not in cmd:
            cmd += ["--generator", generator]
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self._wait(wait)

    def _wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                httpx.get(self.url + "/health", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"server did not answer /health in {timeout}s: {self.log.read_text()}")

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def assert_error(resp: httpx.Response, status: int, type_: str | None = None) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) >= {"type", "message"} and body["message"], body
    if type_:
        assert body["type"] == type_, body
    return body


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A ~100-byte PNG whose header claims width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory, skimage_photos):
    return build_collection(tmp_path_factory, skimage_photos)


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    """Writes need the Bearer key; uploads capped at 1 MiB; k capped at 50."""
    srv = Server(built[1], "--api-key-env", "RAVL_TEST_KEY", "--max-upload-mb", "1", "--max-k", "50",
                 env={"RAVL_TEST_KEY": KEY}, log_dir=tmp_path_factory.mktemp("logs"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def ids(client) -> dict:
    """file stem -> item id."""
    hits = client.get("/search", params={"q": "anything", "k": 50}).json()["results"]
    return {Path(h["uri"]).stem: h["id"] for h in hits}


def jpeg_bytes(photos, name: str, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    photos[name].save(buf, format=fmt)
    return buf.getvalue()


# --- read endpoints -----------------------------------------------------------------------------
def test_health_info_page_and_openapi(client, built):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["images"] == 10 and info["captions"] == 10 and info["encoder"] == "default"
    assert info["writes"] == "key" and info["max_k"] == 50 and info["version"]
    assert info["image_roots"] == [str(built[0].resolve())]
    page = client.get("/")
    assert page.status_code == 200 and "<title>ravl</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    docs = client.get("/docs")  # Swagger UI from local files, no CDN
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/health", "/info", "/search", "/caption", "/ask", "/items", "/items/{item_id}",
              "/items/{item_id}/image", "/items/{item_id}/thumbnail", "/items/{item_id}/similar"):
        assert p in paths


def test_text_search_images_and_captions(client, ids):
    body = client.get("/search", params={"q": "a red circle", "k": 3}).json()
    assert body["query"] == {"text": "a red circle"} and len(body["results"]) == 3
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert set(body["results"][0]) == {"id", "uri", "score", "captions", "found_by", "vector_score", "keyword_score"}
    assert all(0 <= s <= 1 for s in scores) and body["good_match"] == (scores[0] >= 0.5)
    caps = client.get("/search", params={"q": "a cat", "target": "captions", "k": 4}).json()["results"]
    assert len(caps) == 4 and {"id", "caption", "image_id", "uri", "score", "found_by"} <= set(caps[0])
    minus = client.get("/search", params={"q": "a cat -cat", "k": 3}).json()  # arithmetic over HTTP
    assert all("cat" not in " ".join(r["captions"]).lower() for r in minus["results"])
    assert minus["query"]["terms"][1] == {"kind": "text", "value": "cat", "weight": -1.0}
    for mode in ("vector", "keyword", "hybrid"):
        body = client.get("/search", params={"q": "a red circle", "k": 3, "mode": mode, "keyword_weight": 2}).json()
        assert body["mode"] == mode and all(set(r["found_by"]) <= {"vector", "keyword"} for r in body["results"])
        assert all(set(r["found_by"]) == {mode} for r in body["results"]) or mode == "hybrid"
    assert client.get("/search", params={"q": "x", "mode": "fuzzy"}).status_code == 400
    assert caps[0]["caption"] in PHOTOS.values() or "background" in caps[0]["caption"]


def test_search_knobs_are_per_query_parameters(client, ids):
    plain = client.get("/search", params={"q": "a red circle", "k": 3}).json()
    knobs = client.get("/search", params={"q": "a red circle", "k": 3, "ef_search": 8, "nprobe": 2, "rerank": 4}).json()
    assert knobs["results"] == plain["results"]  # an exact index has no knobs: same answers
    similar = client.get(f"/items/{ids['chelsea']}/similar", params={"k": 2, "ef_search": 16}).json()
    assert len(similar["results"]) == 2
    for bad in ({"ef_search": 0}, {"nprobe": 70000}, {"nprobe": "many"}, {"rerank": 5000}):
        assert_error(client.get("/search", params={"q": "x", **bad}), 400)


def test_search_by_item_and_similar(client, ids):
    a = client.get("/search", params={"item": ids["chelsea"], "k": 5}).json()
    b = client.get(f"/items/{ids['chelsea']}/similar", params={"k": 5}).json()
    assert a["results"] == b["results"] and len(a["results"]) == 5
    assert ids["chelsea"] not in [r["id"] for r in a["results"]]
    caps = client.get(f"/items/{ids['coffee']}/similar", params={"target": "captions", "k": 2}).json()
    assert len(caps["results"]) == 2


def test_image_upload_search_finds_the_same_photo(client, ids, skimage_photos):
    files = {"image": ("query.jpg", jpeg_bytes(skimage_photos, "rocket"), "image/jpeg")}
    body = client.post("/search", files=files, data={"k": "3"}).json()
    assert body["query"] == {"image": "query.jpg"}
    assert body["results"][0]["id"] == ids["rocket"] and body["results"][0]["score"] > 0.95
    caps = client.post("/search", files=files, data={"k": "2", "target": "captions"}).json()
    assert len(caps["results"]) == 2 and "caption" in caps["results"][0]


def test_search_by_path_inside_roots(client, built, ids):
    path = str(built[0] / "coffee.jpg")
    for field, value in (("path", path), ("url", "file://" + path)):
        body = client.post("/search", data={field: value, "k": "3"}).json()
        assert body["query"] == {"image": path}
        assert ids["coffee"] not in [r["id"] for r in body["results"]]  # the item itself is left out


def test_caption_with_provenance(client, ids, skimage_photos):
    files = {"image": ("cat.png", jpeg_bytes(skimage_photos, "chelsea"), "image/png")}
    body = client.post("/caption", files=files, data={"k": "3"}).json()
    assert body["method"] == "consensus" and body["generator"] == "consensus" and body["caption"]
    assert len(body["neighbours"]) == 3 and body["neighbours"][0]["id"] == ids["chelsea"]
    assert body["candidates"] and all({"caption", "caption_id", "image_id", "score"} <= set(c) for c in body["candidates"])
    assert body["caption"] in [c for n in body["neighbours"] for c in n["captions"]]
    by_item = client.post("/caption", data={"item": str(ids["chelsea"]), "k": "3"}).json()
    assert ids["chelsea"] not in [n["id"] for n in by_item["neighbours"]]
    assert_error(client.post("/caption", files=files, data={"generator": "hf:/etc"}), 400, "ConfigError")


def test_ask_without_language_model_returns_evidence(client, skimage_photos):
    files = {"image": ("cat.jpg", jpeg_bytes(skimage_photos, "chelsea"), "image/jpeg")}
    res = client.post("/ask", files=files, data={"question": "what animal is this?", "ocr": "false"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["question"] == "what animal is this?" and body["method"] == "no-model"
    assert "language model" in body["answer"] and body["generator"] == "consensus"
    captions = [e for e in body["evidence"] if e["kind"] == "caption"]
    assert captions and all(e["uri"] and e["item_id"] for e in captions)
    assert any(e["kind"] == "label" for e in body["evidence"])  # the default encoder's ImageNet labels
    assert_error(client.post("/ask", files=files), 400, "InputError")  # no question


def test_items_metadata_image_and_thumbnail(client, ids, built, tmp_path):
    item = client.get(f"/items/{ids['rocket']}").json()
    assert item["captions"] == [PHOTOS["rocket"]] and item["uri"].endswith("rocket.jpg")
    original = client.get(item["image_url"])
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    assert original.content == (built[0] / "rocket.jpg").read_bytes()
    thumb = client.get(item["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    (tmp_path / "t.jpg").write_bytes(thumb.content)
    with Image.open(tmp_path / "t.jpg") as im:
        assert max(im.size) == 256
    assert (built[1] / "thumbnails" / item["sha256"][:2] / f"{item['sha256']}-256.jpg").read_bytes() == thumb.content
    assert client.get(item["thumbnail_url"]).content == thumb.content  # from the cache
    png = client.get(f"/items/{ids['red-circle']}/image")
    assert png.headers["content-type"] == "image/png" and png.headers["x-content-type-options"] == "nosniff"


# --- errors -------------------------------------------------------------------------------------
def test_errors_are_json_with_the_right_status(client, ids):
    assert_error(client.get("/items/999999"), 404, "ItemNotFoundError")
    assert_error(client.get("/items/999999/image"), 404)
    assert_error(client.get("/items/999999/thumbnail"), 404)
    assert_error(client.get("/items/999999/similar"), 404)
    assert_error(client.get("/items/abc"), 400, "InputError")
    assert_error(client.get("/no/such/route"), 404, "NotFoundError")
    assert_error(client.put("/search"), 405, "MethodNotAllowedError")
    assert_error(client.get("/search"), 400, "InputError")  # neither q nor item
    both = client.get("/search", params={"q": "x", "item": 1}).json()  # text and item terms combine
    assert [t["kind"] for t in both["query"]["terms"]] == ["text", "item"]
    assert_error(client.get("/search", params={"q": "-x"}), 400, "ConfigError")  # only subtracts
    assert_error(client.get("/search", params={"q": "   "}), 400, "ConfigError")
    assert_error(client.get("/search", params={"q": "x", "target": "videos"}), 400)
    body = assert_error(client.get("/search", params={"q": "x", "k": 51}), 400, "InputError")
    assert "k" in body["message"] and "50" in body["message"]
    assert_error(client.get("/search", params={"q": "x", "k": 0}), 400)
    assert_error(client.post("/search", data={"k": "3"}), 400, "InputError")  # nothing to search with
    assert_error(client.post("/search", data={"url": "http://example.com/cat.jpg"}), 400, "InputError")
    assert_error(client.post("/caption", files={"image": ("e.jpg", b"", "image/jpeg")}), 400, "InputError")


def test_uploads_must_be_real_images_by_content(client, tmp_path):
    fake = b"<html><script>alert(1)</script></html>" * 10
    for name, data in (("photo.jpg", fake), ("doc.png", b"%!PS-Adobe-3.0 EPSF-3.0\n" + b"x" * 100),
                       ("cut.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 200)):
        body = assert_error(client.post("/search", files={"image": (name, data, "image/jpeg")}), 415)
        assert name in body["message"]
    body = assert_error(client.post("/caption", files={"image": ("bomb.png", png_bomb(), "image/png")}), 415,
                        "ImageError")
    assert "decompression bomb" in body["message"]


def test_upload_size_cap(client, skimage_photos):
    big = os.urandom(2 * 2**20)  # over the 1 MiB cap given at start-up
    body = assert_error(client.post("/search", files={"image": ("big.jpg", b"\xff\xd8\xff" + big, "image/jpeg")}),
                        413, "UploadTooLargeError")
    assert "MiB" in body["message"]
    # a body under the request cap whose file is over the per-file cap
    just_over = b"\xff\xd8\xff" + os.urandom(2**20)
    assert_error(client.post("/search", files={"image": ("b.jpg", just_over, "image/jpeg")}), 413)
    # chunked upload without Content-Length is cut off too
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="c.jpg"\r\n\r\n\xff\xd8\xff'
    chunks = iter([head] + [b"x" * 65536] * 40)
    resp = client.post("/search", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"})
    assert_error(resp, 413)
    assert client.get("/health").status_code == 200


def test_path_traversal_is_404(client, server, built, ids):
    root = built[0]
    for path in ("/etc/passwd", f"{root}/../../../../etc/passwd", "file:///etc/passwd", "relative/x.jpg",
                 str(built[1] / "ravl.sqlite"), f"{root}/missing.jpg", f"{root}/\x00.jpg"):
        assert_error(client.post("/search", data={"path": path}), 404, "NotFoundError")
    (root / "link.jpg").symlink_to("/etc/hostname")
    assert_error(client.post("/search", data={"path": str(root / "link.jpg")}), 404)
    # raw request lines that httpx would normalise
    for raw in ("/static/../../../../etc/passwd", "/static/..%2f..%2f..%2fsettings.py", "/items/1/..%2f..%2fetc"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", raw)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        assert resp.status in (400, 404) and b"root:" not in data and b"ServerSettings" not in data, raw


def test_item_file_swapped_for_a_symlink_is_404(client, built):
    root = built[0]
    Image.new("RGB", (40, 40), (9, 9, 9)).save(root / "victim.png")
    up = client.post("/items", files={"image": ("v.png", (root / "victim.png").read_bytes(), "image/png")},
                     headers={"Authorization": f"Bearer {KEY}"})
    assert up.status_code == 201
    item = up.json()["item"]
    stored = Path(item["uri"])
    stored.unlink()
    stored.symlink_to("/etc/passwd")
    assert_error(client.get(f"/items/{item['id']}/image"), 404, "NotFoundError")
    assert_error(client.get(f"/items/{item['id']}/thumbnail"), 404, "NotFoundError")
    assert client.delete(f"/items/{item['id']}", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


# --- writes -------------------------------------------------------------------------------------
def test_writes_need_the_key(client, skimage_photos, ids):
    files = {"image": ("new.jpg", jpeg_bytes(skimage_photos, "coffee"), "image/jpeg")}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic " + KEY}):
        resp = client.post("/items", files=files, data={"captions": "x"}, headers=headers)
        assert_error(resp, 401, "AuthError")
        assert resp.headers["www-authenticate"] == "Bearer"
        assert_error(client.delete(f"/items/{ids['coffee']}", headers=headers), 401)
    assert client.get(f"/items/{ids['coffee']}").status_code == 200


def test_add_search_and_delete_an_item(client, skimage_photos):
    auth = {"Authorization": f"Bearer {KEY}"}
    data = jpeg_bytes({"m": skimage_photos["astronaut"].transpose(Image.Transpose.FLIP_LEFT_RIGHT)}, "m", "PNG")
    files = {"image": ("mirror.png", data, "image/png")}
    resp = client.post("/items", files=files, data={"captions": ["an astronaut, mirrored", "a portrait\nsecond line"]},
                       headers=auth)
    assert resp.status_code == 201, resp.text
    item = resp.json()["item"]
    assert item["captions"] == ["an astronaut, mirrored", "a portrait", "second line"]
    assert item["metadata"] == {"source": "upload", "filename": "mirror.png"} and "/uploads/" in item["uri"]
    again = client.post("/items", files=files, headers=auth)
    assert again.status_code == 200 and again.json()["item"]["id"] == item["id"]
    assert client.get("/info").json()["images"] == 11
    hits = client.post("/search", files=files, data={"k": "1"}).json()["results"]
    assert hits[0]["id"] == item["id"]
    assert client.get(f"/items/{item['id']}/image").content == data
    assert_error(client.post("/items", files={"image": ("x.jpg", b"not an image", "image/jpeg")}, headers=auth), 415)
    gone = client.delete(f"/items/{item['id']}", headers=auth).json()
    assert gone == {"deleted": item["id"], "file_removed": True} and not Path(item["uri"]).exists()
    assert_error(client.get(f"/items/{item['id']}"), 404)
    assert_error(client.delete(f"/items/{item['id']}", headers=auth), 404)
    assert client.get("/info").json()["images"] == 10


def test_without_key_writes_are_403_and_allow_writes_needs_loopback(built, tmp_path, skimage_photos):
    files = {"image": ("c.jpg", jpeg_bytes(skimage_photos, "camera"), "image/jpeg")}
    ro = Server(built[1], log_dir=tmp_path)
    try:
        with ro.client() as c:
            assert c.get("/info").json()["writes"] == "disabled"
            assert_error(c.post("/items", files=files), 403, "WritesDisabledError")
            assert_error(c.delete("/items/1"), 403, "WritesDisabledError")
            assert c.get("/search", params={"q": "a camera"}).status_code == 200
    finally:
        ro.stop()
    refused = ravl_cli("serve", "--collection", built[1], "--host", "0.0.0.0", "--allow-writes", timeout=60)
    assert refused.returncode == 2 and "loopback" in refused.stderr and "Traceback" not in refused.stderr
    unset = ravl_cli("serve", "--collection", built[1], "--api-key-env", "RAVL_NO_SUCH_VAR_X", timeout=60)
    assert unset.returncode == 2 and "RAVL_NO_SUCH_VAR_X" in unset.stderr
    missing = ravl_cli("serve", "--collection", tmp_path / "nothing", timeout=60)
    assert missing.returncode == 2 and "ravl index" in missing.stderr


def test_allow_writes_on_loopback(built, tmp_path, skimage_photos):
    srv = Server(built[1], "--allow-writes", "--workers", "2", log_dir=tmp_path)
    try:
        with srv.client() as c:
            assert c.get("/info").json()["writes"] == "open"
            files = {"image": ("c.png", jpeg_bytes(skimage_photos, "camera"), "image/png")}
            resp = c.post("/items", files=files, data={"captions": "a photographer"})
            assert resp.status_code == 201, resp.text
            new_id = resp.json()["item"]["id"]
            for _ in range(4):  # both worker processes see the new item
                assert c.get(f"/items/{new_id}").status_code == 200
            assert c.delete(f"/items/{new_id}").status_code == 200
    finally:
        srv.stop()


# --- concurrency --------------------------------------------------------------------------------
def test_concurrent_clients_get_the_single_client_results(server, ids, skimage_photos):
    uploads = {n: jpeg_bytes(skimage_photos, n) for n in ("coffee", "astronaut")}
    queries = [("text", q) for q in ("a cat", "a red circle", "a rocket", "coffee", "a square", "a vehicle")]
    queries += [("item", ids[n]) for n in ("chelsea", "blue-square", "motorcycle")]
    queries += [("captions", "espresso"), ("captions", "a woman")]
    queries += [("upload", n) for n in uploads]

    def ask(c: httpx.Client, q) -> list:
        kind, value = q
        if kind == "upload":
            r = c.post("/search", files={"image": (f"{value}.jpg", uploads[value], "image/jpeg")}, data={"k": "5"})
        elif kind == "item":
            r = c.get(f"/items/{value}/similar", params={"k": 5})
        else:
            r = c.get("/search", params={"q": value, "k": 5, "target": "captions" if kind == "captions" else "images"})
        r.raise_for_status()
        return r.json()["results"]

    with server.client() as c:
        expected = {q: ask(c, q) for q in queries}  # one client, one query at a time

    def worker(n: int) -> list:
        out = []
        with server.client() as c:
            for i in range(50):
                q = queries[(n * 7 + i) % len(queries)]
                out.append((q, ask(c, q)))
        return out

    with ThreadPoolExecutor(20) as pool:
        runs = list(pool.map(worker, range(20)))
    assert sum(len(r) for r in runs) == 1000
    for run in runs:
        for q, got in run:
            want = expected[q]
            assert [h["id"] for h in got] == [h["id"] for h in want], q
            assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(got, want)), q
    assert server.proc.poll() is None


def test_imagine_without_generator_is_503_with_the_references(server, client):
    with server.client() as anonymous:  # a key is configured: /imagine needs it before anything else
        assert_error(anonymous.post("/imagine", data={"prompt": "a rocket"}), 401, "AuthError")
    resp = client.post("/imagine", data={"prompt": "a rocket launching", "k": 3},
                       headers={"Authorization": f"Bearer {KEY}"})
    body = assert_error(resp, 503, "NoImageGeneratorError")
    assert "--image-generator" in body["message"] and len(body["references"]) == 3
    assert body["references"][0]["uri"].endswith("rocket.jpg")
    assert client.get("/info").json()["image_generator"] is None
