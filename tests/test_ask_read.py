"""Grounded questions (ravl ask), reading text (ravl read) and storing it at index time (--ocr):
with the fake colour encoder for retrieval, and real backends for the rest: a tiny causal LM and a
tiny vision-language model built from config and saved locally, Tesseract on rendered text, and
the OpenAI-compatible stub server process for translation and streaming."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

import fakes
from conftest import make_image
from openai_stub_server import StubHandle
from ravl import registry
from ravl.cli import ask as ask_cmd
from ravl.cli import main as cli_main
from ravl.cli import read as read_cmd
from ravl.collection import open_collection
from ravl.errors import GenerationError, MissingDependencyError
from ravl.generate.base import GenerationParams, Generator, load_generator
from ravl.ingest.ocr_hook import ocr_collection
from ravl.ingest.pipeline import index_sources
from ravl.ocr import parse_translation, read_image_text, read_text, translate_lines, translate_prompt
from ravl.rag import NO_MODEL_ANSWER, AskOptions, ask_image, citations
from ravl.specs import parse_spec

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def render(lines, size=(640, 240), background=(250, 250, 240)) -> Image.Image:
    """Dark text on a light background, one line per 90 px, in a large TrueType font."""
    font = ImageFont.truetype(str(FONT), 48) if FONT.exists() else ImageFont.load_default(size=48)
    img = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(img)
    for i, text in enumerate(lines):
        draw.text((30, 40 + 90 * i), text, font=font, fill=(10, 10, 10))
    return img


class Recording(Generator):
    spec = "recording"

    def __init__(self, answer="", fail=None):
        self.answer, self.fail, self.calls = answer, fail, []

    def execute(self, prompt, *, params, image, on_text):
        self.calls.append((prompt, image))
        if self.fail:
            raise self.fail
        return self.answer


class LabelledEncoder(fakes.ColourEncoder):
    """The colour encoder plus ImageNet-style class labels, as the default encoder has."""

    def top_labels(self, images, k=5):
        return [[("tile", 0.6), ("ladybug", 0.2), ("pizza", 0.01)][:k] for _ in images]


@pytest.fixture
def coll(tmp_path, colour_spec):
    root = tmp_path / "imgs"
    shades = {"red1": (250, 0, 0), "red2": (230, 20, 10), "blue": (0, 0, 255)}
    caps = {"red1": ["a red square", "red tile"], "red2": ["a red square"], "blue": ["a blue square"]}
    for name, rgb in shades.items():
        make_image(root / f"{name}.png", rgb)
        (root / f"{name}.txt").write_text("\n".join(caps[name]))
    c = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    index_sources(c, [root])
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub():
    handle = StubHandle()
    yield handle
    handle.stop()


RED = Image.new("RGB", (8, 8), (245, 5, 5))


# --- ask ---------------------------------------------------------------------------------------
def test_ask_without_a_model_is_honest_and_keeps_evidence(coll):
    result = ask_image(coll, RED, "What colour is it?", options=AskOptions(k=2, ocr=False))
    assert result.answer == NO_MODEL_ANSWER and result.method == "no-model" and result.generator == "consensus"
    assert result.error is None and result.citations == []
    red = {n.uri.rsplit("/", 1)[-1]: n for n in result.neighbours}
    assert set(red) == {"red1.png", "red2.png"}
    first, second = result.evidence
    # one caption per neighbour: red1's consensus-best caption is the one red2 shares
    assert {first["text"], second["text"]} == {"a red square"}
    assert first["kind"] == "caption" and first["item_id"] == result.neighbours[0].id
    assert first["uri"] == result.neighbours[0].uri and first["score"] == pytest.approx(result.neighbours[0].score, abs=1e-6)
    assert result.prompt == (
        "Answer a question about an image using only the numbered evidence below. The evidence was "
        "found automatically and may be incomplete or wrong.\n\nEvidence:\n"
        f"[1] caption of a similar image (score {first['score']:.2f}): a red square\n"
        f"[2] caption of a similar image (score {second['score']:.2f}): a red square\n\n"
        "Question: What colour is it?\n\n"
        "Answer in one or two short sentences and cite the evidence numbers you used, like [1]. "
        "If the evidence does not support an answer, say that you cannot tell from the evidence.\nAnswer:"
    )
    assert json.loads(json.dumps(result.to_dict()))["evidence"][0]["uri"] == first["uri"]


def test_ask_adds_labels_and_citations_and_template(tmp_path):
    registry.register("encoders", "testlabels", lambda spec: LabelledEncoder(spec))
    make_image(tmp_path / "imgs" / "a.png", (250, 0, 0))
    (tmp_path / "imgs" / "a.txt").write_text("a red tile")
    with open_collection(tmp_path / "c", encoder="testlabels", create=True) as c:
        index_sources(c, [tmp_path / "imgs"])
        gen = Recording("It is a red tile [1][2], not a bug [9].")
        options = AskOptions(k=1, labels=3, ocr=False, template="{evidence}\nQ: {question}\nA:")
        result = ask_image(c, RED, "What is it?", generator=gen, options=options)
    assert gen.calls[0][0] == result.prompt == (
        "[1] caption of a similar image (score 1.00): a red tile\n"
        "[2] label for this image (score 0.60): tile\n"
        "[3] label for this image (score 0.20): ladybug\nQ: What is it?\nA:"
    )  # the 0.01 label is below the threshold
    assert gen.calls[0][1] is None  # a text-only model is not given the image
    assert result.answer.startswith("It is a red tile") and result.method == "generator"
    assert result.citations == [1, 2] == citations(result.answer, 3)
    assert [e["kind"] for e in result.evidence] == ["caption", "label", "label"]


def test_failing_generator_still_returns_the_evidence(coll):
    result = ask_image(coll, RED, "What is it?", options=AskOptions(k=2, ocr=False),
                       generator=Recording(fail=GenerationError("server at http://x timed out")))
    assert result.method == "failed" and result.answer == "" and "timed out" in result.error
    assert len(result.evidence) == 2 and result.prompt and result.neighbours


@pytest.mark.slow
def test_ask_with_a_real_tiny_language_model(coll, tiny_lm):
    gen = load_generator("hf:" + tiny_lm["plain"])
    params = GenerationParams(max_tokens=6)
    a = ask_image(coll, RED, "What colour is it?", generator=gen, options=AskOptions(k=2, params=params, ocr=False))
    b = ask_image(coll, RED, "What colour is it?", generator=gen, options=AskOptions(k=2, params=params, ocr=False))
    assert a.method == "generator" and a.generator == gen.spec and a.answer and a.answer == b.answer
    assert a.evidence and "Question: What colour is it?" in a.prompt


@pytest.mark.slow
def test_ask_reads_text_in_the_image(coll):
    sign = render(["FRESH MILK"])
    result = ask_image(coll, sign, "What does the sign say?", options=AskOptions(k=1, ocr=True))
    ocr = [e for e in result.evidence if e["kind"] == "ocr"]
    assert len(ocr) == 1 and ocr[0]["text"] == "FRESH MILK"
    assert ocr[0]["lines"][0]["confidence"] > 0.8 and len(ocr[0]["lines"][0]["box"]) == 4
    assert '[2] text read from this image: "FRESH MILK"' in result.prompt


# --- a tiny vision-language model ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    """A 2-layer LLaVA (CLIP vision tower, Llama text model) with the MiniLM tokenizer."""
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from ravl.encoders.text_minilm import model_path as minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                       bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok, patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template="{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
                      "<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
                      "{% if add_generation_prompt %}assistant:{% endif %}")
    path = tmp_path_factory.mktemp("tiny-vlm")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.mark.slow
def test_tiny_vlm_sees_the_image(coll, tiny_vlm):
    gen = load_generator("hf:" + tiny_vlm)
    assert type(gen).__name__ == "HFVisionGenerator" and gen.supports_images and gen.use_chat
    assert gen.render_prompt("Q?") == "user: <image>\nQ?assistant:"
    inputs = gen.build_inputs("What is it?", RED)
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 32, 32)
    assert int((inputs["input_ids"] == gen.model.config.image_token_index).sum()) == 16  # 4x4 patches
    params = GenerationParams(max_tokens=5)
    first = gen.generate("What is it?", image=RED, params=params)
    assert first and first == gen.generate("What is it?", image=RED, params=params)
    assert gen.generate("What is it?", params=params)  # text only works too
    result = ask_image(coll, RED, "What colour is it?", generator=gen, options=AskOptions(k=2, params=params, ocr=False))
    assert result.method == "generator" and result.answer and result.generator == "hf:" + tiny_vlm


# --- read: OCR and translation -------------------------------------------------------------------
def test_tesseract_reads_rendered_text_with_boxes():
    lines = read_text(render(["FRESH MILK", "Open daily 9 to 5"]))
    assert [line.text for line in lines] == ["FRESH MILK", "Open daily 9 to 5"]
    first, second = lines
    assert all(line.confidence > 0.8 for line in lines)
    left, top, width, height = first.box
    assert 20 <= left <= 45 and 35 <= top <= 65 and 250 <= width <= 400 and 25 <= height <= 60
    assert second.box[1] > top + 60
    assert read_text(Image.new("RGB", (300, 100), "white")) == []


def test_missing_tesseract_names_the_package(monkeypatch):
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    with pytest.raises(MissingDependencyError, match="apt-get install tesseract-ocr"):
        read_text(render(["HELLO"]), engine="tesseract")
    with pytest.raises(MissingDependencyError, match="tesseract-ocr-xyz"):
        monkeypatch.undo()
        read_text(render(["HELLO"]), engine="tesseract", lang="xyz")


def test_translation_prompt_and_parsing():
    assert translate_prompt(["Lait  frais", "Sortie"], "English") == (
        "Translate each numbered line of text, read from an image, into English. Answer with one line per "
        "input line, numbered the same way (\"1. ...\"), and nothing else. Copy names, numbers and lines "
        "already in English unchanged.\n\n1. Lait frais\n2. Sortie\n\nTranslation:"
    )
    assert parse_translation("1. Fresh milk\n2) Exit\n", 2) == ["Fresh milk", "Exit"]
    assert parse_translation("[2] Exit", 2) == [None, "Exit"]
    assert parse_translation("Fresh milk", 1) == ["Fresh milk"]
    with pytest.raises(GenerationError, match="needs a language model"):
        translate_lines(["Sortie"], "English", load_generator("consensus"))


@pytest.mark.slow
def test_translate_through_the_openai_server(stub):
    stub.reset()
    stub.control(reply="1. LAIT FRAIS\n2. Ouvert tous les jours de 9 à 5")
    gen = load_generator(f"openai:stub?base_url={stub.url}")
    result = read_image_text(render(["FRESH MILK", "Open daily 9 to 5"]), translate_to="French", generator=gen)
    assert [line.text for line in result.lines] == ["FRESH MILK", "Open daily 9 to 5"]
    assert result.translations == ["LAIT FRAIS", "Ouvert tous les jours de 9 à 5"]
    sent = stub.requests()[-1]["body"]["messages"][0]["content"]
    assert sent == result.prompt and "into French" in sent and "1. FRESH MILK\n2. Open daily 9 to 5" in sent
    # a failing model leaves the text read, with the error
    stub.control(fail=[500])
    failed = read_image_text(render(["FRESH MILK"]), translate_to="French",
                             generator=load_generator(f"openai:stub?base_url={stub.url}&retries=0"))
    assert failed.lines[0].text == "FRESH MILK" and failed.translations == [None] and "500" in failed.error


# --- the CLI ---------------------------------------------------------------------------------------
@pytest.fixture
def cli():
    """``ravl`` run in-process."""
    assert ask_cmd in cli_main.COMMANDS and read_cmd in cli_main.COMMANDS
    return cli_main.main


@pytest.mark.slow
def test_cli_ask_json_and_stream(coll, cli, stub, tmp_path, capsys):
    image = make_image(tmp_path / "q.png", (245, 5, 5), size=(8, 8))
    spec = f"openai:stub?base_url={stub.url}"
    stub.reset()
    stub.control(reply="It is a red square [1].")
    assert cli(["ask", "-c", str(coll.path), str(image), "What is it?", "-g", spec, "--k", "2",
                "--no-ocr", "--json", "--seed", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "It is a red square [1]." and out["generator"] == str(parse_spec(spec)) and out["citations"] == [1]
    assert [e["kind"] for e in out["evidence"]] == ["caption", "caption"]
    assert all(e["item_id"] and e["uri"].endswith(".png") and e["score"] > 0.9 for e in out["evidence"])
    assert out["prompt"] == stub.requests()[-1]["body"]["messages"][0]["content"]
    assert stub.requests()[-1]["body"]["seed"] == 5
    assert cli(["ask", "-c", str(coll.path), str(image), "What is it?", "-g", spec, "--no-ocr", "--stream"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Answer: It is a red square [1].\nEvidence:\n  [1] caption (")
    assert stub.requests()[-1]["body"]["stream"] is True
    # consensus (asked for: the default is the bundled LM when installed): the evidence and an honest
    # answer; an unknown backend lists the known ones
    assert cli(["ask", "-c", str(coll.path), str(image), "What is it?", "--no-ocr", "-g", "consensus"]) == 0
    assert "cannot answer without a language model" in capsys.readouterr().out
    assert cli(["ask", "-c", str(coll.path), str(image), "What is it?", "-g", "nosuch:x"]) == 2
    err = capsys.readouterr().err
    assert "unknown generator backend 'nosuch'" in err and "openai" in err and "llamacpp" in err


@pytest.mark.slow
def test_cli_read_and_translate(cli, stub, tmp_path, capsys):
    path = tmp_path / "sign.png"
    render(["FRESH MILK"]).save(path)
    assert cli(["read", str(path)]) == 0
    conf, box, text = capsys.readouterr().out.strip().split("\t")
    assert text == "FRESH MILK" and float(conf) > 0.8 and len(box.split(",")) == 4
    stub.reset()
    stub.control(reply="1. LAIT FRAIS")
    assert cli(["read", str(path), "--translate-to", "French", "-g", f"openai:stub?base_url={stub.url}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lines"][0]["text"] == "FRESH MILK" and out["lines"][0]["translation"] == "LAIT FRAIS"
    assert out["target_lang"] == "French" and out["error"] is None
    assert cli(["read", str(path), "--translate-to", "French"]) == 2
    assert "--generator" in capsys.readouterr().err


# --- index --ocr ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ocr_captions_make_printed_words_searchable(tmp_path, colour_spec):
    root = tmp_path / "imgs"
    root.mkdir()
    render(["GREEN"]).save(root / "green-sign.png")
    render(["BLUE"]).save(root / "blue-sign.png")
    make_image(root / "plain.png", (250, 250, 240), size=(200, 100))
    (root / "plain.txt").write_text("a plain white card")
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as c:
        index_sources(c, [root])
        report = ocr_collection(c)
        assert report.items_read == 3 and report.items_with_text == 2 and report.captions_added == 2
        hits = c.search_text(["green"], target="captions", k=1)[0]
        assert hits[0].caption == "GREEN" and hits[0].uri.endswith("green-sign.png")
        again = ocr_collection(c)
        assert again.items_read == 0 and again.already_read == 3
        # OCR captions are not offered as a neighbour's caption when asking
        result = ask_image(c, Image.open(root / "green-sign.png"), "What is it?", options=AskOptions(k=3, ocr=False))
        assert [e["text"] for e in result.evidence] == ["a plain white card"]
