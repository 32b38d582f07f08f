"""`ravl serve` against hostile clients: ids past int64 are 404s, a client that stalls in its
request head or body is disconnected, and leftovers of killed writers are cleaned at start."""
from __future__ import annotations

import os
import socket
import time

import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources
from test_server_api import Server, assert_error

HUGE = "99999999999999999999"
#: `ravl serve` with the fast fake encoder registered (no model export: quick on busy cores)
BOOT = ("import sys, fakes; from ravl import registry; registry.register('encoders', 'testcolour', fakes.create); "
        "from ravl.cli.main import main; sys.exit(main(sys.argv[1:]))")


class FakeServer(Server):
    def __init__(self, collection, *args, log_dir):
        import subprocess
        import sys

        from test_server_api import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"serve-{self.port}.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
        cmd = [sys.executable, "-c", BOOT, "serve", "--collection", str(collection), "--port", str(self.port),
               "--log-level", "warning", "--generator", "consensus", *map(str, args)]
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        self._wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import fakes
    from ravl import registry

    registry.register("encoders", "testcolour", fakes.create)
    base = tmp_path_factory.mktemp("hard")
    for word, rgb in {"red": (250, 0, 0), "blue": (0, 0, 250)}.items():
        make_image(base / "photos" / f"{word}.png", rgb)
    coll = base / "coll"
    with open_collection(coll, encoder="testcolour", create=True) as c:
        index_sources(c, [base / "photos"])
    old = time.time() - 3600
    leftovers = [coll / "uploads" / "ab" / "orphan.png", coll / "uploads" / "ab" / ".x.png.123.tmp",
                 coll / "index" / "images.faiss.abc.tmp"]
    fresh = coll / "uploads" / "cd" / "in-flight.png"
    for path in [*leftovers, fresh]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
    for path in leftovers:
        os.utime(path, (old, old))
    srv = FakeServer(coll, "--allow-writes", "--header-timeout", "1", "--body-timeout", "1",
                     log_dir=base)
    yield srv, leftovers, fresh
    srv.stop()


def test_ids_past_int64_are_not_found(served):
    srv = served[0]
    with srv.client() as c:
        for path in (f"/items/{HUGE}", f"/items/{HUGE}/image", f"/items/{HUGE}/thumbnail", f"/items/-{HUGE}"):
            assert_error(c.get(path), 404)
        assert_error(c.get("/search", params={"item": HUGE, "k": 1}), 404)
        assert_error(c.delete(f"/items/{HUGE}"), 404)
        assert c.get("/health").status_code == 200


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_stalled_request_head_and_body_are_disconnected(served):
    srv = served[0]
    with socket.create_connection(("127.0.0.1", srv.port)) as slow_head:
        slow_head.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        assert closed_within(slow_head, 10)
    with socket.create_connection(("127.0.0.1", srv.port)) as slow_body:
        slow_body.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\n\r\n{\"text\": ")  # stalls inside its body
        assert closed_within(slow_body, 10)
    with socket.create_connection(("127.0.0.1", srv.port)) as idle:  # connects and says nothing
        assert closed_within(idle, 10)
    with srv.client() as c:  # the server itself is fine
        assert c.get("/health").status_code == 200


def test_leftovers_of_killed_writers_are_cleaned_at_start(served):
    _, leftovers, fresh = served
    assert not any(p.exists() for p in leftovers)
    assert fresh.exists()  # young: maybe another worker's upload in flight


def test_uploads_images_and_thumbnails_go_through_the_safe_path(served):
    import io

    from PIL import Image

    srv = served[0]
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (0, 200, 0)).save(buf, format="PNG")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with srv.client() as c:
        assert_error(c.post("/search", files={"image": ("x.jpg", eps, "image/jpeg")}), 415)
        assert_error(c.post("/items", files={"image": ("x.jpg", eps, "image/jpeg")}), 415)
        added = c.post("/items", files={"image": ("g.png", buf.getvalue(), "image/png")}, data={"captions": "green"})
        assert added.status_code == 201, added.text
        item = added.json()["item"]["id"]
        image = c.get(f"/items/{item}/image")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        thumb = c.get(f"/items/{item}/thumbnail")
        assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
        hits = c.post("/search", files={"image": ("q.png", buf.getvalue(), "image/png")}, data={"k": "1"})
        assert hits.status_code == 200, hits.text
