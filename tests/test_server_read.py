"""POST /read and the page's read panel: the real app (create_app) over a real collection, driven
through Starlette's TestClient; real Tesseract on a rendered sign, real Apertium when installed."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from conftest import make_image
from ravl.generate.translate.apertium import installed_modes

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def png(text: str) -> bytes:
    face = ImageFont.truetype(str(FONT), 48) if FONT.exists() else ImageFont.load_default(size=48)
    image = Image.new("RGB", (80 + 40 * len(text), 120), "white")
    ImageDraw.Draw(image).text((30, 30), text, font=face, fill="black")
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    pytest.importorskip("pytesseract")
    if not shutil.which("tesseract"):
        pytest.skip("tesseract is not installed (apt-get install tesseract-ocr)")
    from starlette.testclient import TestClient

    import fakes
    from ravl import registry
    from ravl.collection import open_collection
    from ravl.ingest.pipeline import index_sources
    from ravl.server.app import create_app
    from ravl.server.settings import ServerSettings
    from ravl.server.state import ServerState

    registry.register("encoders", "testcolour", fakes.create)
    root = tmp_path_factory.mktemp("imgs")
    make_image(root / "red.png", (250, 0, 0))
    (root / "red.txt").write_text("a red square")
    path = tmp_path_factory.mktemp("coll") / "c"
    with open_collection(path, encoder="testcolour", create=True) as coll:
        index_sources(coll, [root])
    settings = ServerSettings(collection=path, generators=("consensus",))
    with TestClient(create_app(settings, state=ServerState.open(settings))) as c:
        yield c


def test_read_returns_lines_and_translation_route(client):
    resp = client.post("/read", files={"image": ("sign.png", png("The dog is black"), "image/png")})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert [line["text"] for line in out["lines"]] == ["The dog is black"] and out["translation"] is None
    if ("eng", "spa") in installed_modes() and shutil.which("apertium"):
        out = client.post("/read", data={"translate_to": "es"},
                          files={"image": ("sign.png", png("The dog is black"), "image/png")}).json()
        assert out["lines"][0]["translation"] == "El perro es negro"
        assert out["translation"]["route"] == "apertium" and out["translation"]["source_lang"] == "eng"


def test_read_errors_name_what_to_do(client):
    resp = client.post("/read", data={"translate_to": "Japanese", "source": "en"},
                       files={"image": ("sign.png", png("EXIT"), "image/png")})
    assert resp.status_code == 400 and "installed Apertium pairs" in resp.json()["message"]
    resp = client.post("/read", data={"translate_to": "es", "generator": "nosuch"},
                       files={"image": ("sign.png", png("EXIT"), "image/png")})
    assert resp.status_code == 400 and "not loaded by this server" in resp.json()["message"]
    assert client.post("/read", data={"translator": "apertium?program=/bin/sh"},
                       files={"image": ("s.png", png("EXIT"), "image/png")}).status_code in (400, 422)


def test_page_has_the_read_panel(client):
    page = client.get("/").text
    assert 'id="read"' in page and "/static/read.js" in page
    script = client.get("/static/read.js")
    assert script.status_code == 200 and 'fetch("/read"' in script.text
