"""Generator backends against real processes: the openai backend against a minimal
OpenAI-compatible HTTP server run as a subprocess on loopback (tests/openai_stub_server.py),
streaming on the hf backend, and the llamacpp backend's dependency and file checks."""
from __future__ import annotations

import base64
import io
import socket
import time

import pytest
from PIL import Image

from openai_stub_server import StubHandle
from ravl.errors import ConfigError, GenerationError, MissingDependencyError, ModelNotAvailableError
from ravl.generate import GenerationParams, load_generator


@pytest.fixture(scope="module")
def stub():
    handle = StubHandle()
    yield handle
    handle.stop()


@pytest.fixture
def server(stub, monkeypatch):
    stub.reset()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return stub


def _gen(server, model="stub", **opts):
    query = "&".join(f"{k}={v}" for k, v in {"base_url": server.url, "backoff": 0, **opts}.items())
    return load_generator(f"openai:{model}?{query}")


def test_completion_passes_parameters_through(server, monkeypatch):
    gen = _gen(server)
    assert gen.is_language_model and not gen.supports_images
    out = gen.generate("What is shown?", params=GenerationParams(max_tokens=7, temperature=0.5, seed=42))
    assert out == "Echo: What is shown?"
    [request] = server.requests()
    body = request["body"]
    assert body["model"] == "stub" and body["messages"] == [{"role": "user", "content": "What is shown?"}]
    assert body["max_tokens"] == 7 and body["temperature"] == 0.5 and body["seed"] == 42
    assert "stream" not in body and "Authorization" not in request["headers"]
    # no seed -> no seed field; the key comes from the named environment variable
    monkeypatch.setenv("MY_KEY", "sk-test")
    gen = _gen(server, api_key_env="MY_KEY")
    gen.generate("hi")
    last = server.requests()[-1]
    assert "seed" not in last["body"] and last["headers"]["Authorization"] == "Bearer sk-test"


def test_retries_with_backoff_on_429_and_5xx(server):
    server.control(fail=[500, 429, 503], retry_after=0)
    out = _gen(server, retries=3).generate("hello")
    assert out == "Echo: hello" and len(server.requests()) == 4
    server.reset()
    server.control(fail=[502, 502, 502])
    start = time.perf_counter()
    with pytest.raises(GenerationError) as info:
        load_generator(f"openai:stub?base_url={server.url}&retries=2&backoff=0.2").generate("hello")
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert "502" in message and server.url + "/chat/completions" in message and "after 3 attempts" in message
    assert len(server.requests()) == 3
    assert elapsed >= 0.2 + 0.4 - 0.05  # exponential backoff: 0.2 s then 0.4 s


def test_dropped_connection_is_retried(server):
    server.control(fail=[0])
    assert _gen(server, retries=1).generate("again") == "Echo: again"
    assert len(server.requests()) == 2


def test_client_errors_are_not_retried_and_say_how_to_fix(server):
    server.control(fail=[401])
    with pytest.raises(GenerationError, match=r"answered 401.*\$OPENAI_API_KEY"):
        _gen(server, retries=3).generate("hi")
    assert len(server.requests()) == 1
    with pytest.raises(GenerationError, match=r"answered 404.*not found.*missing-model.*/v1"):
        _gen(server, model="missing-model").generate("hi")


def test_timeout_is_reported_not_retried(server):
    server.control(delay=1.5)
    start = time.perf_counter()
    with pytest.raises(GenerationError, match=r"did not answer within 0.3 s.*\?timeout="):
        _gen(server, timeout=0.3, retries=2).generate("slow")
    assert time.perf_counter() - start < 1.2
    assert len(server.requests()) == 1


def test_refused_connection_names_the_url():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    gen = load_generator(f"openai:m?base_url={url}&retries=1&backoff=0")
    with pytest.raises(GenerationError) as info:
        gen.generate("hi")
    message = str(info.value)
    assert "connection refused" in message and f"{url}/chat/completions" in message
    assert "after 2 attempts" in message and "base_url" in message


def test_streaming_yields_chunks_to_the_callback(server):
    server.control(reply="A red square on a white table [1].")
    chunks: list[str] = []
    out = _gen(server).generate("Describe it", params=GenerationParams(seed=3), on_text=chunks.append)
    assert out == "A red square on a white table [1]."
    assert len(chunks) > 3 and "".join(chunks) == out
    body = server.requests()[-1]["body"]
    assert body["stream"] is True and body["seed"] == 3
    # a stream that fails before it starts is retried like any request
    server.control(fail=[503])
    chunks.clear()
    assert _gen(server, retries=1).generate("x", on_text=chunks.append) == out and chunks


def test_vision_sends_the_image_as_a_data_url(server):
    image = Image.new("RGB", (2000, 500), (200, 30, 30))
    _gen(server, vision=1).generate("What colour?", image=image)
    content = server.requests()[-1]["body"]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "What colour?"}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (1024, 256)  # downscaled to the 1024-px limit, aspect kept
    r, g, b = sent.convert("RGB").getpixel((10, 10))
    assert r > 150 and g < 80 and b < 80
    # without vision=1 the image is not sent
    gen = _gen(server)
    assert not gen.supports_images
    gen.generate("What colour?", image=image)
    assert server.requests()[-1]["body"]["messages"][0]["content"] == "What colour?"


def test_openai_spec_errors(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match="needs a model name"):
        load_generator("openai")
    with pytest.raises(ConfigError, match="unknown option.*known: base_url"):
        load_generator("openai:m?baseurl=http://x")
    with pytest.raises(ConfigError, match="http"):
        load_generator("openai:m?base_url=localhost:8080")
    with pytest.raises(ConfigError, match=r"\$NO_SUCH_KEY_VAR"):
        load_generator("openai:m?base_url=http://127.0.0.1:9/v1&api_key_env=NO_SUCH_KEY_VAR")
    with pytest.raises(ConfigError, match="timeout"):
        load_generator("openai:m?base_url=http://127.0.0.1:9/v1&timeout=soon")


def test_bad_generation_params_fail_before_sending(server):
    with pytest.raises(ConfigError, match="max_tokens"):
        _gen(server).generate("x", params=GenerationParams(max_tokens=0))
    assert server.requests() == []


# --- hf streaming -----------------------------------------------------------------------------
@pytest.mark.slow
def test_hf_streams_the_same_text_it_returns(tiny_lm):
    gen = load_generator("hf:" + tiny_lm["plain"])
    assert gen.supports_streaming
    pieces: list[str] = []
    params = GenerationParams(max_tokens=8)
    out = gen.generate("Similar images show a cat.", params=params, on_text=pieces.append)
    assert out == gen.generate("Similar images show a cat.", params=params)
    assert pieces and "".join(pieces).strip() == out


# --- llamacpp -----------------------------------------------------------------------------------
def test_llamacpp_checks_file_and_names_the_extra(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="no GGUF file"):
        load_generator(f"llamacpp:{tmp_path / 'missing.gguf'}")
    with pytest.raises(ConfigError, match="unknown option"):
        load_generator("llamacpp:/x.gguf?ctx=5")
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 60)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match=r"pip install 'ravl\[llamacpp\]'"):
            load_generator(f"llamacpp:{fake}")
    else:
        with pytest.raises(ModelNotAvailableError, match="could not load"):
            load_generator(f"llamacpp:{fake}")


def write_tiny_gguf(path, seed=0) -> None:
    """A 1-layer Llama (hidden 64) with a tiny SentencePiece-style vocabulary, written as GGUF."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    words = ["▁a", "▁red", "▁square", "▁cat", "▁the", "▁is", "▁it", "▁what", "▁dog", "▁blue", "▁on", "."]
    letters = list("abcdefghijklmnopqrstuvwxyz")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + ["▁"] + words + letters
    normal = 1 + len(words) + len(letters)
    n_vocab, n_embd, n_ff, n_head = len(tokens), 64, 128, 4
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(512)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(normal)])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * normal)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_chat_template("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:")

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    w.add_tensor("token_embd.weight", weight(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor("output.weight", weight(n_vocab, n_embd))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        w.add_tensor(f"blk.0.{name}.weight", weight(n_embd, n_embd))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor("blk.0.ffn_gate.weight", weight(n_ff, n_embd))
    w.add_tensor("blk.0.ffn_up.weight", weight(n_ff, n_embd))
    w.add_tensor("blk.0.ffn_down.weight", weight(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.slow
def test_llamacpp_runs_a_tiny_gguf(tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'ravl[llamacpp]')")
    pytest.importorskip("gguf", reason="the gguf package writes the test model (pip install gguf)")
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    gen = load_generator(f"llamacpp:{path}?n_ctx=256&n_threads=2")
    assert gen.is_language_model and gen.use_chat and not gen.supports_images
    params = GenerationParams(max_tokens=6)
    first = gen.generate("what is it", params=params)
    assert isinstance(first, str) and first == gen.generate("what is it", params=params)  # greedy
    sampled = GenerationParams(max_tokens=6, temperature=1.0, seed=7)
    assert gen.generate("what is it", params=sampled) == gen.generate("what is it", params=sampled)
    pieces: list[str] = []
    assert gen.generate("what is it", params=params, on_text=pieces.append) == first
    assert "".join(pieces).strip() == first
    plain = load_generator(f"llamacpp:{path}?n_ctx=256&chat=0")
    assert not plain.use_chat and isinstance(plain.generate("a red", params=params), str)


@pytest.mark.slow
def test_openai_backend_against_llama_cpp_server(tmp_path):
    """The same backend against a real OpenAI-compatible server: llama-cpp-python's, on the tiny GGUF."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'ravl[llamacpp]')")
    pytest.importorskip("gguf", reason="the gguf package writes the test model (pip install gguf)")
    for module in ("sse_starlette", "starlette_context", "pydantic_settings", "uvicorn", "fastapi"):
        pytest.importorskip(module, reason="llama-cpp-python's server extras are not installed "
                                           "(pip install 'llama-cpp-python[server]')")
    import subprocess
    import sys
    import urllib.request

    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "256", "--n_threads", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.time() + 60
        while True:
            try:
                opener.open(f"http://127.0.0.1:{port}/v1/models", timeout=2).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("llama_cpp.server did not start")
                time.sleep(0.3)
        gen = load_generator(f"openai:tiny?base_url=http://127.0.0.1:{port}/v1&timeout=30")
        params = GenerationParams(max_tokens=6, temperature=0.8, seed=11)
        first = gen.generate("what is it", params=params)
        assert isinstance(first, str) and first == gen.generate("what is it", params=params)  # seeded
        pieces: list[str] = []
        streamed = gen.generate("what is it", params=GenerationParams(max_tokens=6), on_text=pieces.append)
        assert "".join(pieces).strip() == streamed
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
