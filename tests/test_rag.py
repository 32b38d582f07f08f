"""Retrieval-augmented captioning around the generator contract (fake colour encoder, real LMs)."""
from __future__ import annotations

import pytest
from PIL import Image

from conftest import make_image
from ravl.collection import open_collection
from ravl.errors import GenerationError
from ravl.generate.base import GenerationParams, Generator, load_generator
from ravl.ingest.pipeline import index_sources
from ravl.rag import caption_image


class Recording(Generator):
    """A generator that records its prompt and answers with a fixed text or fails."""
    spec = "recording"

    def __init__(self, answer="", fail=False):
        self.answer, self.fail, self.prompts = answer, fail, []

    def execute(self, prompt, *, params, image, on_text):
        self.prompts.append(prompt)
        if self.fail:
            raise GenerationError("backend timed out")
        return self.answer


def _collection(tmp_path, spec):
    root = tmp_path / "imgs"
    shades = {"red1": (250, 0, 0), "red2": (230, 20, 10), "red3": (240, 10, 0), "blue": (0, 0, 255)}
    caps = {"red1": ["a red square", "red tile"], "red2": ["a red square"], "red3": ["a red block"],
            "blue": ["a blue square"]}
    for name, rgb in shades.items():
        make_image(root / f"{name}.png", rgb)
        (root / f"{name}.txt").write_text("\n".join(caps[name]))
    coll = open_collection(tmp_path / "c", encoder=spec, create=True)
    index_sources(coll, [root])
    return coll


def test_consensus_caption_with_provenance(tmp_path, colour_spec):
    coll = _collection(tmp_path, colour_spec)
    result = caption_image(coll, Image.new("RGB", (8, 8), (245, 5, 5)), k=3)
    assert result.method == "consensus" and result.generator == "consensus"
    assert result.caption == "a red square"  # agreed on by two neighbours
    assert [n.uri.rsplit("/", 1)[-1] for n in result.neighbours] == ["red3.png", "red1.png", "red2.png"] or \
        {n.uri.rsplit("/", 1)[-1] for n in result.neighbours} == {"red1.png", "red2.png", "red3.png"}
    assert {c["caption"] for c in result.candidates} == {"a red square", "red tile", "a red block"}
    d = result.to_dict()
    assert d["neighbours"][0]["captions"] and d["prompt"] is None
    # leave-one-out: excluding an item keeps it out of the neighbours
    red1 = coll.item_by_uri(str((tmp_path / "imgs" / "red1.png").resolve())).id
    again = caption_image(coll, Image.new("RGB", (8, 8), (245, 5, 5)), k=3, exclude_items=[red1])
    assert red1 not in [n.id for n in again.neighbours]


def test_generator_gets_smallcap_prompt_and_failure_keeps_evidence(tmp_path, colour_spec):
    coll = _collection(tmp_path, colour_spec)
    gen = Recording("a shiny red square")
    result = caption_image(coll, Image.new("RGB", (8, 8), (245, 5, 5)), k=3, generator=gen)
    assert result.caption == "a shiny red square" and result.method == "generator"
    assert gen.prompts[0].startswith("Similar images show\n\na red square") and "This image shows" in gen.prompts[0]
    assert result.prompt == gen.prompts[0]
    failing = caption_image(coll, Image.new("RGB", (8, 8), (245, 5, 5)), k=3, generator=Recording(fail=True))
    assert failing.caption == "a red square" and "timed out" in failing.error and failing.neighbours
    for stub in ("a", " The.", "an\n"):  # a model that stops after an article wrote no caption
        cut = caption_image(coll, Image.new("RGB", (8, 8), (245, 5, 5)), k=3, generator=Recording(stub))
        assert cut.caption == "a red square" and cut.method == "consensus" and "wrote only" in cut.error


@pytest.mark.slow
def test_caption_with_a_real_tiny_language_model(tmp_path, colour_spec, tiny_lm):
    coll = _collection(tmp_path, colour_spec)
    gen = load_generator("hf:" + tiny_lm["plain"])
    params = GenerationParams(max_tokens=5)
    a = caption_image(coll, Image.new("RGB", (8, 8), (245, 5, 5)), k=3, generator=gen, params=params)
    b = caption_image(coll, Image.new("RGB", (8, 8), (245, 5, 5)), k=3, generator=gen, params=params)
    assert a.generator.startswith("hf:") and a.prompt and a.caption == b.caption
    assert a.neighbours and (a.method == "generator" or a.error)
