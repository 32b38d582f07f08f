"""POST /imagine on a real `ravl serve` process with the tiny diffusers pipeline: the key is
required when configured, JSON and PNG answers carry the provenance, bad input is a one-line 400,
and past the generation slots the answer is 429 with Retry-After."""
from __future__ import annotations

import base64
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from ravl.tasks.imagine import read_provenance
from test_server_api import assert_error

pytest.importorskip("diffusers")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(imagine_server):
    with imagine_server.client(headers={"Authorization": f"Bearer {imagine_server.key}"}) as c:
        yield c


def decode(data_url: str) -> bytes:
    assert data_url.startswith("data:image/png;base64,")
    return base64.b64decode(data_url.split(",", 1)[1])


def test_imagine_needs_the_key_and_returns_png_with_provenance(imagine_server, client):
    info = client.get("/info").json()
    assert info["image_generator"].startswith("diffusers:") and info["imagine_modes"] == ["text", "init", "reference"]
    assert info["imagine_needs_key"] is True
    with imagine_server.client() as anonymous:
        assert_error(anonymous.post("/imagine", data={"prompt": "a cup of coffee"}), 401, "AuthError")
    form = {"prompt": "a cup of coffee", "mode": "init", "k": 3, "steps": 4, "seed": 5, "strength": 0.5}
    body = client.post("/imagine", data=form).json()
    assert body["mode"] == "init" and body["seed"] == 5 and body["steps"] == 4 and body["size"] == "64x64"
    refs = body["references"]
    assert refs[0]["uri"].endswith("coffee.jpg") and refs[0]["used"] and not refs[1]["used"]
    assert refs[0]["thumbnail_url"] == f"/items/{refs[0]['id']}/thumbnail"
    assert client.get(refs[0]["thumbnail_url"]).status_code == 200
    assert body["alignment"]["of"] == 4 and set(body["timings"]) >= {"retrieve_s", "generate_s", "total_s"}
    png = decode(body["image"])
    prov = read_provenance(png)
    assert prov["prompt"] == "a cup of coffee" and prov["seed"] == "5" and prov["mode"] == "init"
    assert [r["id"] for r in prov["references"]] == [r["id"] for r in refs]
    # the same request again gives the same pixels; response=png gives the PNG itself
    raw = client.post("/imagine", data={**form, "response": "png"})
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    header = json.loads(raw.headers["x-ravl-provenance"])
    assert header["seed"] == 5 and header["references"][0]["used"] is True
    same = np.asarray(Image.open(io.BytesIO(raw.content)))
    assert np.array_equal(same, np.asarray(Image.open(io.BytesIO(png))))
    assert read_provenance(raw.content)["ravl"]["alignment"] == header["alignment"]
    ref = client.post("/imagine", data={"prompt": "a red circle", "mode": "reference", "k": 2, "steps": 2}).json()
    assert [r["used"] for r in ref["references"]] == [True, True] and isinstance(ref["seed"], int)


def test_bad_input_is_a_one_line_400(client):
    for form, message in (({"prompt": "x", "size": "65x64"}, "multiple of 8"),
                          ({"prompt": "x", "size": "4096x4096"}, "too large"),
                          ({"prompt": "x", "strength": 0}, "strength must be in"),
                          ({"prompt": "x", "strength": 1.5}, "strength must be in"),
                          ({"prompt": "   "}, "prompt is empty"),
                          ({"prompt": "x", "mode": "inpaint"}, "mode"),
                          ({"prompt": "x", "k": 1000}, "k")):
        body = assert_error(client.post("/imagine", data=form), 400)
        assert message in body["message"] and "\n" not in body["message"], body


def test_past_the_slots_the_answer_is_429_with_retry_after(imagine_server, client):
    """Two long generations at once on a one-slot server: one is made, the other refused."""
    results = []

    def long_request():
        with imagine_server.client(headers={"Authorization": f"Bearer {imagine_server.key}"}) as c:
            results.append(c.post("/imagine", data={"prompt": "a rocket", "steps": 200, "seed": 1}, timeout=300))

    workers = [threading.Thread(target=long_request) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(r.status_code for r in results) == [200, 429], [r.text[:200] for r in results]
    busy = next(r for r in results if r.status_code == 429)
    body = assert_error(busy, 429, "BusyError")
    assert int(busy.headers["retry-after"]) >= 1 and "busy" in body["message"]
    assert client.post("/imagine", data={"prompt": "a rocket", "steps": 1}).status_code == 200  # slot freed
