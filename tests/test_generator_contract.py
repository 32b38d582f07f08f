"""The generator contract, run over every generator family the tests can build: ``generate``
returns the new text, ``on_text`` receives exactly that text (in pieces from streaming backends,
once and whole from the others), greedy decoding repeats itself, and failures arrive as
:class:`GenerationError` whatever the backend's own exceptions were."""
from __future__ import annotations

import pytest

from openai_stub_server import StubHandle
from ravl.errors import GenerationError, GenerationTimeoutError, GeneratorUnreachableError
from ravl.generate import GenerationParams, load_generator
from ravl.generate.base import Generator, generation_errors
from ravl.server.state import LockedGenerator

PARAMS = GenerationParams(max_tokens=6)


class Plain(Generator):
    """A backend that cannot stream; ``fail`` is raised from ``execute`` as the library would."""

    spec = "plain"

    def __init__(self, answer: str = "a red square", fail: BaseException | None = None):
        self.answer, self.fail = answer, fail

    def execute(self, prompt, *, params, image, on_text):
        assert on_text is None  # the base keeps on_text from a backend that cannot stream
        if self.fail is not None:
            raise self.fail
        return self.answer


@pytest.fixture(scope="module")
def stub():
    handle = StubHandle()
    yield handle
    handle.stop()


@pytest.fixture(params=["plain", "openai", pytest.param("hf", marks=pytest.mark.slow),
                        pytest.param("locked-hf", marks=pytest.mark.slow)])
def language_model(request, stub) -> Generator:
    if request.param == "plain":
        return Plain()
    if request.param == "openai":
        stub.reset()
        return load_generator(f"openai:stub?base_url={stub.url}&backoff=0")
    tiny_lm = request.getfixturevalue("tiny_lm")
    gen = load_generator("hf:" + tiny_lm["plain"])
    return LockedGenerator(gen) if request.param == "locked-hf" else gen


def test_generate_returns_the_text_and_on_text_sees_all_of_it(language_model):
    gen = language_model
    assert gen.is_language_model and isinstance(gen.spec, str) and gen.spec
    whole = gen.generate("Similar images show a cat.", params=PARAMS)
    assert isinstance(whole, str) and whole
    pieces: list[str] = []
    streamed = gen.generate("Similar images show a cat.", params=PARAMS, on_text=pieces.append)
    assert streamed == whole  # greedy decoding repeats itself, streaming or not
    assert "".join(pieces).strip() == whole
    if not gen.supports_streaming:
        assert pieces == [whole]


def test_load_generator_takes_an_instance_or_a_spec(language_model):
    assert load_generator(language_model) is language_model
    assert load_generator("consensus").spec == "consensus"


def test_consensus_writes_nothing_and_says_so():
    gen = load_generator("consensus")
    assert not gen.is_language_model
    with pytest.raises(GenerationError, match="cannot write"):
        gen.generate("anything")


@pytest.mark.parametrize(("raised", "expected"), [
    (TimeoutError("read timed out"), GenerationTimeoutError),
    (ConnectionRefusedError("refused"), GeneratorUnreachableError),
    (RuntimeError("CUDA out of memory"), GenerationError),
    (OSError("broken pipe"), GenerationError),
    (GenerationError("already mapped"), GenerationError),
])
def test_backend_exceptions_arrive_as_one_family(raised, expected):
    with pytest.raises(expected) as info:
        Plain(fail=raised).generate("x")
    assert "plain" in str(info.value) or str(info.value) == "already mapped"
    with pytest.raises(expected):  # the same mapping is there for backends to use inside execute
        with generation_errors("plain"):
            raise raised


def test_programming_errors_are_not_disguised():
    with pytest.raises(KeyError):
        Plain(fail=KeyError("bug")).generate("x")


def test_unreachable_openai_server_is_a_generation_error():
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = load_generator(f"openai:stub?base_url=http://127.0.0.1:{port}/v1&retries=0")
    with pytest.raises(GeneratorUnreachableError, match="cannot connect"):
        gen.generate("hello")
