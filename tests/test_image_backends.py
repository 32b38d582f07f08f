"""Server-backed image generators against a stub image server run as a real process on loopback
(tests/image_stub_server.py): OpenAI-compatible images (generations, edits) and AUTOMATIC1111
(txt2img, img2img): parameters sent, retries with backoff on 429/5xx and dropped connections,
malformed and non-image answers, unreachable servers, and provenance through ravl imagine."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openai_stub_server import StubHandle
from ravl.errors import ConfigError, GenerationError
from ravl.generate.images import ImageParams, load_image_generator
from ravl.tasks.imagine import imagine, read_provenance


@pytest.fixture(scope="module")
def stub():
    handle = StubHandle(str(Path(__file__).with_name("image_stub_server.py")))
    yield handle
    handle.stop()


@pytest.fixture
def server(stub, monkeypatch):
    stub.reset()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return stub


def openai(server, model="stub-image", **opts):
    query = "&".join(f"{k}={v}" for k, v in {"base_url": server.url, "backoff": 0, **opts}.items())
    return load_image_generator(f"openai-images:{model}?{query}")


def a1111(server, **opts):
    query = "&".join(f"{k}={v}" for k, v in {"backoff": 0, **opts}.items())
    return load_image_generator(f"a1111:{server.root}?{query}")


def colour_of(image: Image.Image) -> tuple:
    return tuple(int(v) for v in np.asarray(image.convert("RGB")).reshape(-1, 3).mean(axis=0).round())


# --- openai-images --------------------------------------------------------------------------------
def test_openai_text_init_and_reference(server, colour_collection, monkeypatch):
    monkeypatch.setenv("MY_IMAGE_KEY", "sk-img")
    gen = openai(server, api_key_env="MY_IMAGE_KEY")
    assert gen.modes == ("text", "init", "reference") and not gen.seeded
    assert gen.spec.startswith("openai-images:stub-image?")
    result = imagine(colour_collection, "a red square", gen, k=2, params=ImageParams(width=64, height=48, seed=3))
    assert result.image.size == (64, 48) and result.seed is None and not result.seeded
    [req] = server.requests()
    assert req["path"] == "/v1/images/generations" and req["headers"]["Authorization"] == "Bearer sk-img"
    body = req["json"]
    assert body == {"model": "stub-image", "prompt": "a red square", "n": 1, "size": "64x48",
                    "response_format": "b64_json"}
    assert result.extra["not_used"] == ["seed"] and result.extra["revised_prompt"] == "stub: a red square"
    prov = read_provenance(result.png_bytes())
    assert prov["ravl"]["seeded"] is False and prov["references"][0]["uri"].endswith("red.png")
    # init: the best reference goes to /images/edits; the stub answers with its mean colour
    init = imagine(colour_collection, "a blue square", gen, mode="init", k=2, params=ImageParams(width=32, height=32))
    req = server.requests()[-1]
    assert req["path"] == "/v1/images/edits" and [f["field"] for f in req["files"]] == ["image"]
    assert req["fields"]["prompt"] == "a blue square" and req["fields"]["size"] == "32x32"
    r, g, b = colour_of(init.image)
    assert b > 150 and r < 60 and g < 60  # it came from the blue reference
    # reference: every reference as image[]
    ref = imagine(colour_collection, "a green square", gen, mode="reference", k=3)
    req = server.requests()[-1]
    assert [f["field"] for f in req["files"]] == ["image[]"] * 3 and len(ref.used_references) == 3
    assert ref.image.size == (1024, 1024)  # the endpoint's default size when none is asked for


def test_openai_retries_429_and_5xx_then_fails_with_attempts(server):
    server.control(fail=[429, 500, 503], retry_after=0)
    image = openai(server, retries=3).generate("x", params=ImageParams(width=16, height=16)).image
    assert image.size == (16, 16) and len(server.requests()) == 4
    server.reset()
    server.control(fail=[502, 502, 502])
    start = time.perf_counter()
    with pytest.raises(GenerationError) as info:
        openai(server, retries=2, backoff=0.1).generate("x")
    message = str(info.value)
    assert "502" in message and "/v1/images/generations" in message and "after 3 attempts" in message
    assert time.perf_counter() - start >= 0.1 + 0.2 - 0.05 and len(server.requests()) == 3
    server.reset()
    server.control(fail=[0])  # dropped connection: retried
    assert openai(server, retries=1).generate("y", params=ImageParams(width=8, height=8)).image.size == (8, 8)
    server.reset()
    with pytest.raises(GenerationError, match=r"answered 404.*missing-model.*/v1"):
        openai(server, model="missing-model", retries=3).generate("z")
    assert len(server.requests()) == 1  # client errors are not retried


@pytest.mark.parametrize("malform,message", [("json", "did not answer with JSON"),
                                             ("empty", "answered without an image"),
                                             ("not_image", "did not send an image")])
def test_openai_malformed_answers_are_one_line_errors(server, malform, message):
    server.control(malform=malform)
    with pytest.raises(GenerationError, match=message) as info:
        openai(server).generate("x", params=ImageParams(width=16, height=16))
    assert "\n" not in str(info.value) and server.url in str(info.value)


def test_openai_url_answers_are_fetched(server):
    server.control(malform="url")
    assert openai(server).generate("x").image.size == (64, 64)


# --- a1111 ------------------------------------------------------------------------------------------
def test_a1111_txt2img_img2img_and_seeds(server, colour_collection):
    gen = a1111(server, sampler="Euler a")
    assert gen.modes == ("text", "init") and gen.seeded
    params = ImageParams(width=64, height=32, steps=6, guidance=5.5, seed=42, negative_prompt="blurry")
    first = imagine(colour_collection, "a red square", gen, k=2, params=params)
    req = server.requests()[-1]
    assert req["path"] == "/sdapi/v1/txt2img"
    body = req["json"]
    assert (body["prompt"], body["negative_prompt"], body["steps"], body["cfg_scale"]) == ("a red square", "blurry", 6, 5.5)
    assert (body["width"], body["height"], body["seed"], body["sampler_name"]) == (64, 32, 42, "Euler a")
    assert first.seed == 42 and first.steps == 6 and first.guidance == 5.5 and first.extra["sd_model_name"] == "stub-model"
    again = imagine(colour_collection, "a red square", gen, k=2, params=params)
    other = imagine(colour_collection, "a red square", gen, k=2, params=ImageParams(width=64, height=32, seed=43))
    assert colour_of(again.image) == colour_of(first.image) != colour_of(other.image)
    # no seed: ravl draws one, sends it and records it
    drawn = imagine(colour_collection, "a red square", gen, k=1, params=ImageParams(width=8, height=8))
    assert drawn.seed == server.requests()[-1]["json"]["seed"] and drawn.seed >= 0
    init = imagine(colour_collection, "a yellow square", gen, mode="init", k=2,
                   params=ImageParams(width=32, height=32, strength=0.35, seed=1))
    req = server.requests()[-1]
    assert req["path"] == "/sdapi/v1/img2img" and req["json"]["denoising_strength"] == 0.35
    assert len(req["json"]["init_images"]) == 1
    r, g, b = colour_of(init.image)
    assert r > 150 and g > 150 and b < 80  # the yellow reference was the init image
    assert read_provenance(init.png_bytes())["strength"] == "0.35"
    with pytest.raises(ConfigError, match="cannot do mode 'reference'.*ControlNet"):
        imagine(colour_collection, "x", gen, mode="reference")


def test_a1111_retries_and_malformed_answers(server):
    server.control(fail=[503, 0], retry_after=0)
    assert a1111(server, retries=2).generate("x", params=ImageParams(width=8, height=8)).image.size == (8, 8)
    assert len(server.requests()) == 3
    server.reset()
    for malform, message in (("json", "did not answer with JSON.*--api"), ("empty", "answered without images"),
                             ("not_image", "did not send an image")):
        server.control(malform=malform)
        with pytest.raises(GenerationError, match=message):
            a1111(server).generate("x", params=ImageParams(width=8, height=8))
    server.reset()
    wrong = load_image_generator(f"a1111:{server.root}/wrong?backoff=0")
    with pytest.raises(GenerationError, match=r"answered 404.*started with --api"):
        wrong.generate("x")


def test_unreachable_servers_and_bad_specs():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for spec, url in ((f"a1111:http://127.0.0.1:{port}?retries=1&backoff=0", f"http://127.0.0.1:{port}/sdapi/v1/txt2img"),
                      (f"openai-images:m?base_url=http://127.0.0.1:{port}/v1&retries=1&backoff=0",
                       f"http://127.0.0.1:{port}/v1/images/generations")):
        with pytest.raises(GenerationError) as info:
            load_image_generator(spec).generate("x")
        message = str(info.value)
        assert "connection refused" in message and url in message and "after 2 attempts" in message
    for spec, message in (("a1111:localhost:7860", "must name the web UI's URL"),
                          ("a1111:http://127.0.0.1:7860?steps=3", "unknown option"),
                          ("openai-images", "needs a model name"),
                          ("openai-images:m?base_url=ftp://x", "http"),
                          ("sdcpp:/no/such/model.gguf", "no model file")):
        with pytest.raises(Exception, match=message):
            load_image_generator(spec)
