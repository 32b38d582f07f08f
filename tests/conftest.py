"""Shared fixtures. Tests never touch the network: hub libraries are forced offline and any
socket connection to a non-loopback address fails the test that tried it."""
from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One cache home for the whole session (the exported ONNX model is reused across tests).
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="ravl-home-"))
os.environ["RAVL_HOME"] = str(_SESSION_HOME)

sys.path.insert(0, str(Path(__file__).parent))
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkAccessError(RuntimeError):
    pass


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0]
    return host in ("localhost", "::1") or str(host).startswith("127.")


def _guard(real):
    def connect(self, address):
        if not _is_local(address):
            raise NetworkAccessError(f"test tried to reach the network: {address!r}")
        return real(self, address)

    return connect


socket.socket.connect = _guard(_real_connect)
socket.socket.connect_ex = _guard(_real_connect_ex)


STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")


@pytest.fixture
def ravl_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty RAVL_HOME for tests that must not see the session cache."""
    home = tmp_path / "ravl-home"
    monkeypatch.setenv("RAVL_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def skimage_photos() -> dict:
    """scikit-image's bundled photos as RGB PIL images, by name."""
    import skimage.data
    from PIL import Image

    out = {}
    for name in ("chelsea", "coffee", "rocket", "astronaut", "camera", "cat"):
        fn = getattr(skimage.data, name, None)
        if fn is None:
            continue
        arr = fn()
        img = Image.fromarray(arr)
        out[name] = img.convert("RGB")
    motor = skimage.data.stereo_motorcycle()[0]
    out["motorcycle"] = Image.fromarray(motor).convert("RGB")
    return out


@pytest.fixture
def colour_spec() -> str:
    """Registers the fast fake encoder family 'testcolour' and returns a spec for it."""
    import fakes
    from ravl import registry

    registry.register("encoders", "testcolour", fakes.create)
    return "testcolour"


def make_image(path: Path, colour, size=(32, 24), mode="RGB", fmt=None) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, format=fmt)
    return path


CHAT_TEMPLATE = (
    "{% for m in messages %}[CLS] {{ m['role'] }}: {{ m['content'] }} [SEP] {% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """Folders holding a 2-layer Llama (hidden 32) with the MiniLM BERT tokenizer; one with a chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ravl.encoders.text_minilm import model_path as minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    plain = tmp_path_factory.mktemp("tiny-lm")
    model.save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    chat = tmp_path_factory.mktemp("tiny-chat-lm")
    model.save_pretrained(chat)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(chat)
    return {"plain": str(plain), "chat": str(chat)}


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> dict:
    """A tiny random Stable-Diffusion pipeline folder (64x64 output) with a tiny IP-Adapter beside
    it, loaded by tests through the same ``diffusers:`` spec as a user's folder."""
    pytest.importorskip("diffusers")
    from tiny_diffusers import build_tiny_sd

    folder = build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"), ip_adapter=True)
    ip = folder / "ip-adapter" / "ip-adapter.safetensors"
    return {"path": str(folder), "spec": f"diffusers:{folder}",
            "ip_spec": f"diffusers:{folder}?ip_adapter={ip}", "ip_adapter": str(ip)}


COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20)}


@pytest.fixture(scope="session")
def colour_collection(tmp_path_factory):
    """Four coloured squares indexed with the fast fake colour encoder ('red' finds the red one)."""
    import fakes
    from ravl import registry
    from ravl.collection import open_collection
    from ravl.ingest.pipeline import index_sources

    registry.register("encoders", "testcolour", fakes.create)
    base = tmp_path_factory.mktemp("imagine")
    for name, rgb in COLOURS.items():
        make_image(base / "images" / f"{name}.png", rgb, size=(48, 40))
        (base / "images" / f"{name}.txt").write_text(f"a {name} square\n")
    with open_collection(base / "coll", encoder="testcolour", create=True) as coll:
        index_sources(coll, [str(base / "images")])
    coll = open_collection(base / "coll", readonly=True)
    yield coll
    coll.close()


@pytest.fixture(scope="session")
def imagine_server(tmp_path_factory, skimage_photos, tiny_sd):
    """A `ravl serve` process with the tiny diffusers pipeline (+ IP-Adapter) for POST /imagine, an
    API key (RAVL_TEST_KEY) and one generation slot, on its own copy of the shared test collection."""
    import shutil

    from test_server_api import KEY, Server, build_collection

    images, coll = build_collection(tmp_path_factory, skimage_photos)
    copy = tmp_path_factory.mktemp("imagine-serve") / "coll"
    shutil.copytree(coll, copy, ignore=shutil.ignore_patterns("thumbnails", "uploads"))
    srv = Server(copy, "--image-generator", tiny_sd["ip_spec"], "--api-key-env", "RAVL_TEST_KEY",
                 "--imagine-concurrency", "1", env={"RAVL_TEST_KEY": KEY, "RAVL_THREADS": "1"},
                 log_dir=tmp_path_factory.mktemp("imagine-logs"), wait=300)
    srv.key = KEY
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def smol(tmp_path_factory):
    """The real bundled SmolLM2, built into a fresh RAVL_HOME (cold: de-quantise and cache) once per
    session; ``home`` is that RAVL_HOME (set only while building: tests that need it set it again),
    ``folder`` the verified cache in it."""
    from ravl.generate import smollm2
    from ravl.generate.base import load_generator

    home = tmp_path_factory.mktemp("smollm2-home")
    before = os.environ.get("RAVL_HOME")
    os.environ["RAVL_HOME"] = str(home)
    try:
        folder, rebuilt = smollm2.cached_model_folder()
        gen = load_generator("smollm2")
    finally:
        if before is None:
            os.environ.pop("RAVL_HOME", None)
        else:
            os.environ["RAVL_HOME"] = before
    return {"gen": gen, "folder": folder, "rebuilt": rebuilt, "home": home}


@pytest.fixture(scope="session")
def tiny_open_clip(tmp_path_factory):
    """A registered tiny open_clip architecture, its model, and its weights saved as a file and as a folder."""
    from tiny_models import build_tiny_open_clip

    return build_tiny_open_clip(tmp_path_factory.mktemp("open_clip"))


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    """Tiny CLIP and SigLIP folders as save_pretrained writes them, with the MiniLM BERT tokenizer."""
    from tiny_models import build_tiny_hf

    return build_tiny_hf(tmp_path_factory.mktemp("hf"))
