"""Grounded answers, enforced after generation (ravl.rag.grounding): an answer whose words no
evidence supports or entails is replaced by an honest fallback with grounded: false; repeated lines
are cut; a supported answer cites the evidence that supports it. WordNet is Debian's wordnet-base
(scripts/setup-system.sh installs it); the ask tests run the real pipeline on a real collection."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from conftest import make_image
from ravl.collection import open_collection
from ravl.errors import ConfigError
from ravl.generate.base import Generator
from ravl.ingest.pipeline import index_sources
from ravl.rag import AskOptions, ask_image, wordnet
from ravl.rag.grounding import CANNOT_TELL, KEYWORDS, STRICT, check_answer, cut_repeats, fallback_answer

needs_wordnet = pytest.mark.skipif(not wordnet.available(), reason="WordNet missing: apt-get install wordnet-base")

EVIDENCE = [{"number": 1, "kind": "caption", "text": "a duck swimming on a pond", "score": 0.8},
            {"number": 2, "kind": "label", "text": "drake", "score": 0.88},
            {"number": 3, "kind": "caption", "text": "a mug of coffee", "score": 0.5}]


def test_an_invented_word_is_unsupported():
    check = check_answer("The evidence for the image is a dragonfly.", EVIDENCE, mode=STRICT)
    assert not check.grounded and check.unsupported == ["dragonfly"]  # "evidence", "image" claim nothing
    assert check_answer("The evidence is a mug.", EVIDENCE).support == {"mug": [3]}


@needs_wordnet
def test_evidence_entails_synonyms_and_hypernyms():
    assert check_answer("It is a bird.", EVIDENCE).support["bird"] == [1, 2]  # duck -> bird; drake -> duck -> bird
    assert check_answer("An animal [2].", EVIDENCE).grounded
    assert not check_answer("A mallard.", EVIDENCE).grounded  # more specific than the evidence: not entailed
    assert "duck" in wordnet.expand("drake") and "mouse" in wordnet.base_forms("mice")
    tabby = [{"number": 1, "kind": "label", "text": "tabby", "score": 0.5}]  # ImageNet's tabby cat, n02123045
    assert check_answer("A cat.", tabby).grounded


def test_repeated_lines_are_cut_and_yes_no_claims_what_was_asked():
    text, cut = cut_repeats("[1] The image of a doe is a cat.\n[1] The image of a doe is a cat.\n"
                            "[2] The image of a doe is a cat!")
    assert text == "[1] The image of a doe is a cat." and cut == 2
    assert check_answer("Yes.", EVIDENCE, question="Is this a duck?").grounded
    assert not check_answer("Yes.", EVIDENCE, question="Is this a cat?").grounded
    assert not check_answer("No.", EVIDENCE, question="Is this a cat?").grounded  # a bare "no" cannot be checked
    assert not check_answer("The evidence for the image is [1].", EVIDENCE).grounded  # names nothing
    listing = check_answer("A duck.\nA mug of coffee.\nA pond.", EVIDENCE, mode=STRICT)
    assert listing.answer == "A duck." and listing.cut == 2  # strict keeps the first line
    # a wh-question's own words are free; a yes/no or "or" question's are the claim
    holding = [{"number": 1, "kind": "label", "text": "tripod", "score": 0.4}]
    assert check_answer("The man is holding a tripod.", holding, question="What is this man holding?").grounded
    assert not check_answer("It is a cat.", EVIDENCE, question="Is this a cat or a dog?").grounded
    quoting = 'The evidence for the answer to the question "What animal is this?" is a duck.'
    assert check_answer(quoting, EVIDENCE, question="What animal is this?").grounded
    # quoted text keeps its words, negation included
    sign = [{"number": 1, "kind": "ocr", "text": "NO PARKING", "score": None}]
    assert check_answer('The sign says "No Parking"', sign, question="What does the sign say?").grounded
    assert not check_answer('The sign says "No smoking"', sign, question="What does the sign say?").grounded
    # a negated word claims nothing; the rest must still be supported
    assert check_answer("A duck, not a goose.", EVIDENCE).grounded


@needs_wordnet
def test_keywords_mode_checks_only_nouns():
    answer = "A duck happily swimming."
    assert not check_answer(answer, EVIDENCE, mode=STRICT).grounded  # "happily" is in no evidence
    assert check_answer(answer, EVIDENCE, mode=KEYWORDS).grounded


def test_fallback_quotes_the_evidence_and_cites_it():
    text, cited = fallback_answer(EVIDENCE, "What is this?")
    assert text.startswith("I can't tell from the evidence; the closest matches are ") and cited
    assert all(f"[{n}]" in text for n in cited) and "drake [2]" in text
    assert fallback_answer([], "What is this?") == (CANNOT_TELL, [])
    ram = [{"number": 1, "kind": "caption", "text": "A ram."}, {"number": 2, "kind": "label", "text": "ram", "score": 0.4}]
    assert fallback_answer(ram, "What is this?") == ("I can't tell from the evidence; the closest match is a ram [1].", [1])
    ocr = [*EVIDENCE, {"number": 4, "kind": "ocr", "text": "NO PARKING", "score": None}]
    assert fallback_answer(ocr, "What does the sign say?")[0].split("are ")[1].startswith("NO PARKING [4]")


class Writes(Generator):
    """A real generator that writes a fixed answer (the model is not under test: the check is)."""

    spec = "writes"

    def __init__(self, answer: str, grounding: str = "keywords"):
        self.answer, self.grounding = answer, grounding

    def execute(self, prompt, *, params, image, on_text):
        return self.answer


@pytest.fixture
def coll(tmp_path, colour_spec):
    root = tmp_path / "imgs"
    for name, rgb, caption in (("red1", (250, 0, 0), "a red square"), ("red2", (230, 20, 10), "a red tile"),
                               ("blue", (0, 0, 255), "a blue square")):
        make_image(root / f"{name}.png", rgb)
        (root / f"{name}.txt").write_text(caption)
    c = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    index_sources(c, [root])
    yield c
    c.close()


RED = Image.new("RGB", (8, 8), (245, 5, 5))


def test_ask_replaces_an_unsupported_answer(coll):
    gen = Writes("The evidence for the image is a dragonfly. [1]\nThe evidence for the image is a dragonfly.",
                 grounding="strict")
    result = ask_image(coll, RED, "What is it?", generator=gen, options=AskOptions(k=2, ocr=False))
    assert result.grounded is False and result.grounding == "strict"
    assert result.model_answer.startswith("The evidence for the image is a dragonfly.")
    assert result.answer.startswith("I can't tell from the evidence; the closest match is a red")
    assert result.citations and all(f"[{n}]" in result.answer for n in result.citations)
    assert any("'dragonfly'" in note and "replaced" in note for note in result.notes)
    out = json.loads(json.dumps(result.to_dict()))
    assert out["grounded"] is False and out["model_answer"] == result.model_answer


def test_ask_keeps_a_supported_answer_and_cites_its_support(coll):
    result = ask_image(coll, RED, "What is it?", generator=Writes("A red square."), options=AskOptions(k=2, ocr=False))
    assert result.grounded is True and result.citations and result.answer.startswith("A red square.")
    assert result.answer.endswith("".join(f"[{n}]" for n in result.citations))  # ravl added what supports it
    wrong_cite = ask_image(coll, RED, "What is it?", generator=Writes("A square [9]."),
                           options=AskOptions(k=2, ocr=False))
    assert wrong_cite.grounded and wrong_cite.citations and "[9]" not in wrong_cite.answer
    off = ask_image(coll, RED, "What is it?", generator=Writes("A dragonfly."),
                    options=AskOptions(k=2, ocr=False, grounding="off"))
    assert off.answer == "A dragonfly." and off.grounded is None
    with pytest.raises(ConfigError, match="grounding"):
        ask_image(coll, RED, "What is it?", generator=Writes("x"), options=AskOptions(grounding="sometimes"))


def test_caption_naming_what_no_neighbour_says_keeps_the_consensus_caption(coll):
    from ravl.rag import caption_image

    kept = caption_image(coll, RED, k=2, generator=Writes("A red square.", grounding="strict"))
    assert kept.method == "generator" and kept.grounded is True and kept.caption == "A red square."
    replaced = caption_image(coll, RED, k=2, generator=Writes("A dragonfly on a red square.", grounding="strict"))
    assert replaced.method == "consensus" and replaced.grounded is False
    assert replaced.caption in ("a red square", "a red tile") and replaced.error is None
    assert any("'dragonfly'" in note for note in replaced.notes)
    assert replaced.to_dict()["grounded"] is False
    other = caption_image(coll, RED, k=2, generator=Writes("A dragonfly."))  # other models' captions: unchecked
    assert other.caption == "A dragonfly." and other.grounded is None
