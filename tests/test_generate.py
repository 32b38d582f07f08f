"""Generation: prompt text (pinned), template files, consensus re-ranking and the hf backend
run on a real tiny causal LM built from config and saved locally."""
from __future__ import annotations

import numpy as np
import pytest

from ravl.errors import ConfigError, GenerationError, InputError, ModelNotAvailableError, UnknownBackendError
from ravl.generate import GenerationParams, load_generator
from ravl.generate.consensus import consensus_select, ngram_similarity
from ravl.generate.prompts import Evidence, caption_prompt, load_template, question_prompt

# A fixed retrieval result: the captions of the 3 nearest images, the image's top labels and
# text read from it.
CAPTIONS = [
    "A cat sleeping on a red sofa",
    "a tabby cat lies on the couch.",
    "Two cats\non a sofa",
]
EVIDENCE = [
    Evidence("caption", "A cat sleeping on a red sofa", 0.8312, item_id=7, uri="/photos/7.jpg"),
    Evidence("caption", "a tabby cat lies on the couch.", 0.79, item_id=3, uri="/photos/3.jpg"),
    Evidence("label", "tabby", 0.17),
    Evidence("ocr", "FRESH\n  MILK"),
]


# --- prompts ------------------------------------------------------------------------------------
def test_caption_prompt_is_smallcap_wording():
    assert caption_prompt(CAPTIONS) == (
        "Similar images show\n"
        "\n"
        "A cat sleeping on a red sofa\n"
        "\n"
        "a tabby cat lies on the couch.\n"
        "\n"
        "Two cats on a sofa.\n"
        "\n"
        "This image shows"
    )
    # A final full stop is not doubled; empty captions are skipped.
    assert caption_prompt(["a dog.", "  "]) == "Similar images show\n\na dog.\n\nThis image shows"


def test_caption_prompt_needs_captions():
    with pytest.raises(InputError, match="no retrieved captions"):
        caption_prompt([])
    with pytest.raises(InputError):
        caption_prompt("a single string")


def test_question_prompt_pinned():
    assert question_prompt("What is   the animal?", EVIDENCE) == (
        "Answer a question about an image using only the numbered evidence below. The evidence was "
        "found automatically and may be incomplete or wrong.\n"
        "\n"
        "Evidence:\n"
        "[1] caption of a similar image (score 0.83): A cat sleeping on a red sofa\n"
        "[2] caption of a similar image (score 0.79): a tabby cat lies on the couch.\n"
        "[3] label for this image (score 0.17): tabby\n"
        '[4] text read from this image: "FRESH MILK"\n'
        "\n"
        "Question: What is the animal?\n"
        "\n"
        "Answer in one or two short sentences and cite the evidence numbers you used, like [1]. "
        "If the evidence does not support an answer, say that you cannot tell from the evidence.\n"
        "Answer:"
    )


def test_question_prompt_without_evidence_and_bad_input():
    assert "Evidence:\n(no evidence was found)\n" in question_prompt("What is it?", [])
    with pytest.raises(InputError, match="question is empty"):
        question_prompt("  ", EVIDENCE)
    with pytest.raises(InputError, match="evidence kind"):
        Evidence("tag", "x")


def test_template_file_override(tmp_path):
    cap = tmp_path / "caption.txt"
    cap.write_text("Neighbours: {captions}\nCaption {not a placeholder}:\n", encoding="utf-8")
    template = load_template(cap)
    assert caption_prompt(["a dog", "a puppy"], template) == (
        "Neighbours: a dog\n\na puppy.\nCaption {not a placeholder}:"
    )
    qa = tmp_path / "qa.txt"
    qa.write_text("{evidence}\nQ: {question}\nA:", encoding="utf-8")
    # Evidence text holding a placeholder is not substituted again.
    ev = [Evidence("ocr", "{question}")]
    assert question_prompt("why?", ev, load_template(qa)) == (
        '[1] text read from this image: "{question}"\nQ: why?\nA:'
    )


def test_bad_template_says_which_placeholder(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Q: {question}\nA:", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lacks the \{evidence\} placeholder"):
        load_template(bad)
    bad.write_text("Describe the image:", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lacks the \{captions\} placeholder"):
        load_template(bad, kind="caption")
    with pytest.raises(ConfigError, match=r"\{question\}, \{evidence\}"):
        load_template(bad, kind="question")
    with pytest.raises(ConfigError, match=r"\{captions\}"):
        caption_prompt(["a dog"], "no placeholder here")
    with pytest.raises(ConfigError, match="cannot read prompt template"):
        load_template(tmp_path / "missing.txt")


# --- consensus ----------------------------------------------------------------------------------
NEAR_DUPES = ["a man riding a horse on a beach", "a person rides a horse on the beach",
              "a man on a horse at the beach"]
OUTLIER = "a plate of pasta with tomato sauce"


def test_consensus_with_vectors():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    rows = [rng.normal(size=16)]  # the outlier first, so a naive argmax over rank would be wrong
    rows += [centre + 0.3 * rng.normal(size=16) for _ in range(2)]
    rows += [centre + 0.05 * rng.normal(size=16)]  # the one closest to the centre of the cluster
    vecs = np.stack(rows)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    best, scores = consensus_select([OUTLIER, *NEAR_DUPES], vecs.astype(np.float32))
    assert best == 3
    assert scores.shape == (4,)
    assert int(np.argmin(scores)) == 0
    sims = vecs @ vecs.T
    assert scores[1] == pytest.approx((sims[1].sum() - sims[1, 1]) / 3, abs=1e-6)


def test_consensus_tokens_and_ties():
    best, scores = consensus_select([OUTLIER, *NEAR_DUPES], None)
    assert best == 1 and scores[0] < scores[1:].min()
    assert best == int(np.argmax(scores))
    assert ngram_similarity("A dog.", "a dog") == pytest.approx(1.0)
    assert ngram_similarity("a dog", "pasta") == 0.0
    # Ties go to the first (best retrieved) candidate.
    best, scores = consensus_select(["a red car", "a red car", "a red car"], None)
    assert best == 0 and np.allclose(scores, 1.0)
    eye = np.eye(3, dtype=np.float32)
    assert consensus_select(["x", "y", "z"], eye)[0] == 0
    assert consensus_select(["only one"], None) == (0, pytest.approx(np.zeros(1)))
    with pytest.raises(InputError, match="one vector per candidate"):
        consensus_select(["a", "b"], eye)
    with pytest.raises(InputError):
        consensus_select([], None)


def test_consensus_generator_contract():
    gen = load_generator("consensus")
    assert gen.is_language_model is False and gen.spec == "consensus"
    assert gen.select(NEAR_DUPES + [OUTLIER])[0] in (0, 1, 2)
    with pytest.raises(GenerationError, match="cannot write answers"):
        gen.generate("Question: what is it?")
    with pytest.raises(ConfigError):
        load_generator("consensus:some-model")


def test_unknown_generator_lists_known_ones():
    with pytest.raises(UnknownBackendError) as info:
        load_generator("nosuch:model")
    message = str(info.value)
    assert "nosuch" in message and "consensus" in message and "hf" in message


# --- hf backend on a real tiny causal LM -----------------------------------------------------------
@pytest.mark.slow
def test_hf_generator_greedy_and_bounds(tiny_lm):
    gen = load_generator("hf:" + tiny_lm["plain"])
    assert gen.is_language_model and not gen.use_chat
    prompt = caption_prompt(CAPTIONS)
    first = gen.generate(prompt)
    assert isinstance(first, str) and first
    assert gen.generate(prompt) == first  # greedy is deterministic
    assert "similar images show" not in first.lower()  # only the new text comes back
    short = gen.generate(prompt, params=GenerationParams(max_tokens=3))
    assert len(short.split()) <= 3 and len(short) < len(first)
    assert first.startswith(short)


@pytest.mark.slow
def test_hf_generator_seeded_sampling(tiny_lm):
    spec = "hf:" + tiny_lm["plain"] + "?dtype=float32&device=cpu"
    one, two = load_generator(spec), load_generator(spec)
    prompt = question_prompt("What is the animal?", EVIDENCE)
    params = GenerationParams(max_tokens=12, temperature=1.0, seed=1234)
    sampled = one.generate(prompt, params=params)
    assert sampled == two.generate(prompt, params=params)
    others = {one.generate(prompt, params=GenerationParams(max_tokens=12, temperature=1.0, seed=s))
              for s in range(4)}
    assert len(others) > 1  # the seed really drives the sampling


@pytest.mark.slow
def test_hf_generator_chat_template(tiny_lm):
    gen = load_generator("hf:" + tiny_lm["chat"])
    assert gen.use_chat
    rendered = gen.render_prompt("What is it?")
    assert rendered == "[CLS] user: What is it? [SEP] assistant:"
    out = gen.generate("What is it?", params=GenerationParams(max_tokens=8))
    assert isinstance(out, str) and "assistant" not in out.lower()
    plain = load_generator("hf:" + tiny_lm["chat"] + "?chat=0")
    assert not plain.use_chat and plain.render_prompt("What is it?") == "What is it?"


@pytest.mark.slow
def test_hf_generator_errors(tmp_path):
    with pytest.raises(ModelNotAvailableError, match=r"hf:/path/to/model"):
        load_generator("hf:no-such-org/no-such-model")
    with pytest.raises(ModelNotAvailableError, match="save_pretrained"):
        load_generator("hf:" + str(tmp_path))  # a folder with no model in it
    with pytest.raises(ConfigError, match="unknown option"):
        load_generator("hf:some/model?temprature=1")
    with pytest.raises(ConfigError, match="dtype"):
        load_generator("hf:some/model?dtype=float8")
