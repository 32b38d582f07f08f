"""POST /v1/embeddings on `ravl serve`, in the OpenAI shape: texts get the collection's query
vectors, images (data: URLs, file:// URLs, paths inside the image roots) their shared-space
embedding with the tuned bridge applied; equal to ravl's own within 1e-6."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from integration_helpers import LAUNCHER, build_colour_collection
from ravl.collection import open_collection
from test_server_api import Server, assert_error


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_colour_collection(tmp_path_factory.mktemp("embed"))


@pytest.fixture(scope="module")
def server(built, tmp_path_factory, colour_spec_module):
    srv = Server(built[1], log_dir=tmp_path_factory.mktemp("embed-logs"), launcher=LAUNCHER)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def colour_spec_module():
    import fakes
    from ravl import registry

    registry.register("encoders", "testcolour", fakes.create)


def data_url(path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_texts_and_images_get_the_vectors_search_uses(built, server):
    images, coll_dir = built
    red, blue, green = images / "red.png", images / "blue.png", images / "green.png"
    with server.client() as c:
        one = c.post("/v1/embeddings", json={"input": "a red square", "model": "text-embedding-3-small"}).json()
        many = c.post("/v1/embeddings", json={"input": ["red", data_url(red), str(blue), f"file://{green}"]}).json()
        packed = c.post("/v1/embeddings", json={"input": ["red", str(blue)], "encoding_format": "base64"}).json()
        models = c.get("/v1/models").json()
    with open_collection(coll_dir, readonly=True) as coll:
        model = coll.active_fingerprint
        texts = coll.encoder.encode_texts(["a red square", "red"])
        pictures = [Image.open(p).convert("RGB") for p in (red, blue, green)]
        shared = coll.encoder.embed_images(pictures).embedding  # through the tuned bridge
        base = coll.base_encoder.embed_images(pictures)
    assert "+tuned-linear-" in model
    assert one["object"] == "list" and one["model"] == model and one["usage"]["prompt_tokens"] == 3
    assert one["data"][0]["object"] == "embedding" and one["data"][0]["index"] == 0
    np.testing.assert_allclose(one["data"][0]["embedding"], texts[0], atol=1e-6)
    got = np.array([d["embedding"] for d in many["data"]], np.float32)
    assert [d["index"] for d in many["data"]] == [0, 1, 2, 3] and got.shape == (4, coll.dim)
    np.testing.assert_allclose(got[0], texts[1], atol=1e-6)
    np.testing.assert_allclose(got[1:], shared, atol=1e-6)
    assert np.abs(got[1:] - base.embedding).max() > 1e-2  # the bridge is applied, and these are not the features
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in packed["data"]]
    np.testing.assert_allclose(decoded, got[[0, 2]], atol=1e-7)
    assert [m["id"] for m in models["data"]] == [model]


def test_bad_inputs_get_one_line_errors(built, server, tmp_path):
    images, _ = built
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    with server.client() as c:
        assert_error(c.post("/v1/embeddings", json={"input": []}), 400, "InputError")
        assert_error(c.post("/v1/embeddings", json={"input": [""]}), 400)
        assert_error(c.post("/v1/embeddings", json={"input": [[1, 2, 3]]}), 400)  # token arrays: not supported
        assert_error(c.post("/v1/embeddings", json={"input": "red", "dimensions": 7}), 400)
        assert_error(c.post("/v1/embeddings", json={"input": str(outside)}), 404)
        assert_error(c.post("/v1/embeddings", json={"input": f"{images}/../../etc/passwd.png"}), 404)
        assert "does not fetch" in assert_error(c.post("/v1/embeddings", json={"input": "https://x.org/a.png"}),
                                                400)["message"]
        assert_error(c.post("/v1/embeddings", json={"input": "data:image/png;base64,%%%"}), 415)
        assert_error(c.post("/v1/embeddings", json={"input": "data:text/plain;base64,aGVsbG8="}), 415)
        fake = "data:image/png;base64," + base64.b64encode(b"not a png at all").decode()
        assert_error(c.post("/v1/embeddings", json={"input": fake}), 415)
        ok = c.post("/v1/embeddings", json={"input": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()})
        assert ok.status_code == 200, ok.text


@pytest.mark.slow
def test_real_default_encoder_vectors_match_within_1e6(tmp_path_factory, skimage_photos):
    """The served (batched, one-thread) default encoder gives ravl's own vectors."""
    from test_server_api import build_collection

    images, coll_dir = build_collection(tmp_path_factory, skimage_photos)
    srv = Server(coll_dir, log_dir=tmp_path_factory.mktemp("embed-real"))
    try:
        with srv.client() as c:
            body = c.post("/v1/embeddings", json={"input": ["a cup of coffee", str(images / "coffee.jpg")]}).json()
    finally:
        srv.stop()
    with open_collection(coll_dir, readonly=True) as coll:
        text = coll.encoder.encode_texts(["a cup of coffee"])[0]
        image = coll.encoder.embed_images([Image.open(images / "coffee.jpg").convert("RGB")]).embedding[0]
        assert body["model"] == coll.active_fingerprint
    got = np.array([d["embedding"] for d in body["data"]], np.float32)
    assert got.shape == (2, coll.dim)
    np.testing.assert_allclose(got[0], text, atol=1e-6)
    np.testing.assert_allclose(got[1], image, atol=1e-6)


def test_the_openai_python_client_reads_them(built, server):
    """The official client asks for base64 by default and decodes it; its vectors are ravl's."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    images, coll_dir = built
    got = client.embeddings.create(input=["red", str(images / "blue.png")], model="anything")
    with open_collection(coll_dir, readonly=True) as coll:
        assert got.model == coll.active_fingerprint
        np.testing.assert_allclose(got.data[0].embedding, coll.encoder.encode_texts(["red"])[0], atol=1e-6)
        blue = coll.encoder.embed_images([Image.open(images / "blue.png").convert("RGB")]).embedding[0]
        np.testing.assert_allclose(got.data[1].embedding, blue, atol=1e-6)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(input=[], model="anything")
