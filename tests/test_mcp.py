"""`ravl mcp` driven by the official MCP SDK's client: the server runs as a subprocess (stdio, and
streamable HTTP on loopback) over a small colour collection; every tool's answer equals the CLI's
--json; bad arguments come back as tool errors and the server keeps serving."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import socket
import subprocess
import time

import httpx
import pytest
from PIL import Image

from integration_helpers import LAUNCHER, TESTS, build_colour_collection, child_env, ravl_json

pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

KEY = "mcp-test-key-81d2"
READ_TOOLS = {"search", "similar", "describe", "ask", "read_text", "info"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_colour_collection(tmp_path_factory.mktemp("mcp"))


def stdio(coll, *args) -> Client:
    return Client(StdioServerParameters(command=LAUNCHER[0], args=[*LAUNCHER[1:], "mcp", "-c", str(coll),
                                                                    "-g", "consensus", *args], env=child_env()))


def data(result) -> dict:
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content  # text-only clients see the same
    return result.structured_content


def test_tools_answer_as_the_cli_does(built):
    images, coll = built
    red, blue = images / "red.png", images / "blue.png"
    calls = {
        "text": ("search", {"query": "red", "k": 3}, ("search", "-c", coll, "--text", "red", "-k", 3)),
        "arithmetic": ("search", {"query": "red", "subtract": ["yellow"], "k": 3, "target": "captions"},
                       ("search", "-c", coll, "--text", "red", "--subtract", "yellow", "-k", 3, "--target", "captions")),
        "image": ("search", {"image": str(red), "k": 3}, ("search", "-c", coll, "--image", red, "-k", 3)),
        "describe": ("describe", {"image": str(blue), "k": 3}, ("caption", "-c", coll, blue, "-k", 3, "-g", "consensus")),
        "ask": ("ask", {"question": "What colour is it?", "image": str(blue), "ocr": False},
                ("ask", "-c", coll, blue, "What colour is it?", "-g", "consensus", "--no-ocr")),
        "info": ("info", {}, ("info", "-c", coll)),
    }
    want = {name: ravl_json(*cli) for name, (_, _, cli) in calls.items()}
    want_similar = ravl_json("search", "-c", coll, "--image", red, "-k", 4)
    red_id = want_similar["results"][0]["id"]
    b64 = base64.b64encode((red).read_bytes()).decode()

    async def session():
        async with stdio(coll) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            got = {name: data(await client.call_tool(tool, args)) for name, (tool, args, _) in calls.items()}
            similar = data(await client.call_tool("similar", {"item": red_id, "k": 3}))
            by_b64 = data(await client.call_tool("search", {"image_base64": b64, "k": 3}))
            by_url = data(await client.call_tool("search", {"image_base64": "data:image/png;base64," + b64, "k": 3}))
            thumbs = await client.call_tool("search", {"query": "red", "k": 3, "thumbnails": 2})
            resource = await client.read_resource(f"ravl://item/{red_id}")
            return tools, got, similar, by_b64, by_url, thumbs, resource

    tools, got, similar, by_b64, by_url, thumbs, resource = asyncio.run(session())
    assert set(tools) == READ_TOOLS  # no imagine without an image generator, no index without --allow-writes
    for tool in tools.values():
        assert tool.description and len(tool.description) < 200
        assert tool.input_schema["type"] == "object"
    assert tools["search"].input_schema["properties"]["k"]["maximum"] == 100
    assert "question" in tools["ask"].input_schema["required"]
    for name in ("ask",):
        got[name].pop("seconds"), want[name].pop("seconds")
    for name in calls:
        assert got[name] == want[name], name
    assert got["text"]["results"][0]["uri"] == str(red)
    assert [(r["id"], r["score"]) for r in similar["results"]] == \
           [(r["id"], r["score"]) for r in want_similar["results"][1:]]
    assert by_b64["results"] == by_url["results"] == want["image"]["results"]
    pictures = [c for c in thumbs.content if c.type == "image"]
    assert len(pictures) == 2 and all(c.mime_type == "image/jpeg" for c in pictures)
    for c in pictures:
        assert max(Image.open(io.BytesIO(base64.b64decode(c.data))).size) <= 128
    item = json.loads(resource.contents[0].text)
    assert item["id"] == red_id and item["uri"] == str(red) and item["captions"] == ["a red square"]


@pytest.mark.skipif(not shutil.which("tesseract"), reason="Tesseract is not installed")
def test_read_text_answers_as_ravl_read(built, tmp_path):
    from PIL import ImageDraw, ImageFont

    sign = Image.new("RGB", (360, 120), "white")
    ImageDraw.Draw(sign).text((20, 30), "OPEN DAILY", fill="black", font=ImageFont.load_default(size=44))
    sign.save(tmp_path / "sign.png")
    want = ravl_json("read", tmp_path / "sign.png")

    async def session():
        async with stdio(built[1]) as client:
            return data(await client.call_tool("read_text", {"image": str(tmp_path / "sign.png")}))

    got = asyncio.run(session())
    got.pop("seconds"), want.pop("seconds")
    assert got == want and "OPEN" in got["text"]


def test_bad_arguments_are_tool_errors_and_the_server_keeps_serving(built, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")

    async def session():
        async with stdio(built[1]) as client:
            errors = {
                "nothing": await client.call_tool("search", {}),
                "k": await client.call_tool("search", {"query": "red", "k": 0}),
                "type": await client.call_tool("search", {"query": "red", "k": "many"}),
                "filter": await client.call_tool("search", {"query": "red", "after": "2019-13"}),
                "item": await client.call_tool("similar", {"item": 999999}),
                "two images": await client.call_tool("describe", {"image": "/x.png", "item": 1}),
                "base64": await client.call_tool("describe", {"image_base64": "%%%"}),
                "fake image": await client.call_tool("describe", {"image": str(tmp_path / "notes.png")}),
                "missing file": await client.call_tool("ask", {"question": "what?", "image": str(tmp_path / "no.png")}),
                "blank question": await client.call_tool("ask", {"question": "", "item": 1}),
                "unknown tool": await client.call_tool("index", {"paths": ["/tmp"]}),
            }
            after = data(await client.call_tool("info", {}))
            return errors, after

    errors, after = asyncio.run(session())
    for name, result in errors.items():
        assert result.is_error, name
        text = result.content[0].text
        assert text and "Traceback" not in text and "\n" not in text.strip(), (name, text)
    assert "give a query" in errors["nothing"].content[0].text
    assert "no item with id 999999" in errors["item"].content[0].text
    assert "2019-13" in errors["filter"].content[0].text
    assert errors["k"].content[0].text == "search: k: Input should be greater than or equal to 1 (see the tool's input schema)"
    assert "exactly one of" in errors["two images"].content[0].text
    assert "base64" in errors["base64"].content[0].text
    assert "notes.png" in errors["fake image"].content[0].text
    assert after["images"] == 5


def _wait_http(url: str, proc: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"ravl mcp --http did not answer: {log.read_text()}")


def test_streamable_http_with_writes_behind_the_key(built, tmp_path):
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    from test_server_api import free_port

    images, coll = built
    copy = tmp_path / "coll"
    shutil.copytree(coll, copy)
    extra = tmp_path / "more"
    extra.mkdir()
    Image.new("RGB", (64, 48), (240, 120, 10)).save(extra / "orange.png")
    (extra / "orange.txt").write_text("an orange square\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    log = tmp_path / "mcp.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([*LAUNCHER, "mcp", "-c", str(copy), "-g", "consensus", "--http", str(port),
                                 "--allow-writes", "--api-key-env", "RAVL_TEST_MCP_KEY"], stdout=fh,
                                stderr=subprocess.STDOUT, env=child_env(RAVL_TEST_MCP_KEY=KEY))
    try:
        _wait_http(url, proc, log)
        want = ravl_json("search", "-c", copy, "--text", "red", "-k", 3)

        async def session(headers):
            async with Client(streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                found = data(await c.call_tool("search", {"query": "red", "k": 3}))
                outside = await c.call_tool("search", {"image": str(tmp_path / "elsewhere.png")})
                index = await c.call_tool("index", {"paths": [str(extra)]})
                info = data(await c.call_tool("info", {}))
                return names, found, outside, index, info

        names, found, outside, refused, info = asyncio.run(session({}))
        assert names == READ_TOOLS | {"index"}
        assert found == want
        assert outside.is_error and "image roots" in outside.content[0].text
        assert refused.is_error and "Authorization: Bearer" in refused.content[0].text and info["images"] == 5
        _, _, _, added, info = asyncio.run(session({"Authorization": f"Bearer {KEY}"}))
        assert data(added)["collection"]["images"] == 6 and info["images"] == 6
    finally:
        proc.terminate()
        proc.wait(15)


def test_unsafe_http_settings_are_refused(built):
    from integration_helpers import ravl

    proc = ravl("mcp", "-c", built[1], "--http", "0", "--host", "0.0.0.0", "--allow-writes")
    assert proc.returncode == 2 and "loopback" in proc.stderr and "Traceback" not in proc.stderr
    proc = ravl("mcp", "-c", built[1], "--api-key-env", "RAVL_TEST_UNSET_VAR_X")
    assert proc.returncode == 2 and "RAVL_TEST_UNSET_VAR_X" in proc.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = ravl("mcp", "-c", built[1], "--http", taken.getsockname()[1])
    assert proc.returncode == 2 and "cannot listen" in proc.stderr and "Traceback" not in proc.stderr
    proc = ravl("mcp", "-c", built[1].parent / "nowhere")
    assert proc.returncode == 2 and "nowhere" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_imagine_tool_when_an_image_generator_is_configured(built, tmp_path):
    from openai_stub_server import StubHandle
    from ravl.tasks.imagine import read_provenance

    stub = StubHandle(str(TESTS / "image_stub_server.py"))
    spec = f"openai-images:stub-image?base_url={stub.url}&backoff=0"
    try:
        want = ravl_json("imagine", "a red square", "-c", built[1], "-g", spec, "--seed", "7", "--out", tmp_path / "x.png")

        async def session():
            async with stdio(built[1], "--image-generator", spec) as client:
                names = {t.name for t in (await client.list_tools()).tools}
                return names, await client.call_tool("imagine", {"prompt": "a red square", "seed": 7})

        names, result = asyncio.run(session())
    finally:
        stub.stop()
    assert names == READ_TOOLS | {"imagine"}
    got = data(result)
    for volatile in ("created_at", "timings", "output"):
        got.pop(volatile, None), want.pop(volatile, None)
    assert got == want and got["generator"].startswith("openai-images:stub-image")
    assert got["references"][0]["uri"].endswith("red.png")
    png = base64.b64decode([c for c in result.content if c.type == "image"][-1].data)
    assert read_provenance(png)["prompt"] == "a red square"


@pytest.mark.slow
def test_stdio_with_the_real_default_encoder(tmp_path_factory, skimage_photos):
    """Real models print nothing on stdout (the protocol's channel) and answer as the CLI does."""
    from test_server_api import build_collection, ravl_cli

    images, coll = build_collection(tmp_path_factory, skimage_photos)
    proc = ravl_cli("search", "-c", coll, "--text", "a cup of coffee", "-k", 3, "--json")
    assert proc.returncode == 0, proc.stderr
    want = json.loads(proc.stdout)
    params = StdioServerParameters(command=LAUNCHER[0], args=["-m", "ravl.cli.main", "mcp", "-c", str(coll), "-g",
                                                              "consensus"], env=child_env())

    async def session():
        async with Client(params) as client:
            found = data(await client.call_tool("search", {"query": "a cup of coffee", "k": 3}))
            described = data(await client.call_tool("describe", {"image": str(images / "coffee.jpg"), "k": 3}))
            return found, described

    found, described = asyncio.run(session())
    assert found == want and found["results"][0]["uri"].endswith("coffee.jpg")
    assert described["neighbours"] and described["caption"]
