"""ravl imagine with a real (tiny, random) diffusers pipeline built from configs and loaded from a
folder through the ``diffusers:`` spec, as a user's would be: text, init and reference (tiny
IP-Adapter) modes, seed reproducibility, provenance chunks read back from the PNG, bad input."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from ravl.errors import ConfigError, ModelNotAvailableError, NoImageGeneratorError, UnknownBackendError
from ravl.generate.images import ImageParams, load_image_generator, parse_size
from ravl.tasks.imagine import imagine, read_provenance

pytest.importorskip("diffusers")

from conftest import COLOURS


@pytest.fixture(scope="module")
def generators(tiny_sd):
    import os

    os.environ["RAVL_THREADS"] = "1"  # two cores shared by every test worker: one thread is fastest
    try:
        return {"plain": load_image_generator(tiny_sd["spec"]), "ip": load_image_generator(tiny_sd["ip_spec"])}
    finally:
        os.environ.pop("RAVL_THREADS", None)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


P = ImageParams(steps=4, seed=11)


def test_text_mode_provenance_in_png_and_seed_reproducibility(colour_collection, generators, tiny_sd):
    gen = generators["plain"]
    assert gen.modes == ("text", "init") and gen.default_size == (64, 64)
    result = imagine(colour_collection, "a red square", gen, k=3, params=P)
    assert result.image.size == (64, 64) and result.seed == 11 and result.steps == 4
    assert result.references[0].uri.endswith("red.png") and len(result.references) == 3
    assert result.used_references == []  # text mode: the references only inform the self-check
    prov = read_provenance(result.png_bytes())
    assert prov["prompt"] == "a red square" and prov["mode"] == "text" and prov["seed"] == "11"
    assert prov["generator"] == tiny_sd["spec"] and prov["steps"] == "4" and prov["size"] == "64x64"
    refs = prov["references"]
    assert [r["id"] for r in refs] == [h.id for h in result.references]
    assert refs[0]["uri"].endswith("red.png") and abs(refs[0]["score"] - result.references[0].score) < 1e-5
    assert prov["ravl"]["alignment"] == result.alignment and "Seed: 11" in prov["parameters"]
    decoded = Image.open(io.BytesIO(result.png_bytes()))
    assert np.array_equal(pixels(decoded), pixels(result.image))  # PNG is lossless
    # same seed, same inputs -> the same image; another seed -> another image
    again = imagine(colour_collection, "a red square", gen, k=3, params=P)
    assert np.array_equal(pixels(again.image), pixels(result.image))
    other = imagine(colour_collection, "a red square", gen, k=3, params=ImageParams(steps=4, seed=12))
    assert not np.array_equal(pixels(other.image), pixels(result.image))
    # no seed: one is drawn and recorded, and it reproduces the image
    drawn = imagine(colour_collection, "a red square", gen, k=3, params=ImageParams(steps=4))
    assert drawn.seed is not None
    replay = imagine(colour_collection, "a red square", gen, k=3, params=ImageParams(steps=4, seed=drawn.seed))
    assert np.array_equal(pixels(replay.image), pixels(drawn.image))
    a = result.alignment
    assert -1 <= a["prompt_cosine"] <= 1 and 1 <= a["rank"] <= a["of"] == 4
    assert set(result.timings) >= {"retrieve_s", "generate_s", "check_s", "total_s"}


def test_init_mode_starts_from_the_best_reference(colour_collection, generators):
    gen = generators["plain"]
    text = imagine(colour_collection, "a blue square", gen, k=2, params=P)
    init = imagine(colour_collection, "a blue square", gen, mode="init", k=2,
                   params=ImageParams(steps=4, seed=11, strength=0.3, width=48, height=40))
    best = init.references[0]
    assert best.uri.endswith("blue.png") and init.used_references == [best.id]
    assert init.image.size == (48, 40) and init.strength == 0.3
    assert not np.array_equal(pixels(init.image)[:40, :48], pixels(text.image)[:40, :48])
    # the init image shapes the output (random weights do not keep colours, so compare two inits)
    kw = dict(mode="init", params=ImageParams(steps=4, seed=11, strength=0.3, width=48, height=40))
    from_blue = gen.generate("a square", init_image=Image.new("RGB", (48, 40), COLOURS["blue"]), **kw).image
    from_red = gen.generate("a square", init_image=Image.new("RGB", (48, 40), COLOURS["red"]), **kw).image
    assert np.abs(pixels(from_blue) - pixels(from_red)).mean() > 1
    prov = read_provenance(init.png_bytes())
    assert prov["strength"] == "0.3" and [r["used"] for r in prov["references"]] == [True, False]
    assert "Denoising strength: 0.3" in prov["parameters"]
    again = imagine(colour_collection, "a blue square", gen, mode="init", k=2,
                    params=ImageParams(steps=4, seed=11, strength=0.3, width=48, height=40))
    assert np.array_equal(pixels(again.image), pixels(init.image))


def test_reference_mode_with_a_tiny_ip_adapter(colour_collection, generators):
    plain, ip = generators["plain"], generators["ip"]
    assert ip.modes == ("text", "init", "reference")
    with pytest.raises(ConfigError, match="cannot do mode 'reference'.*ip_adapter="):
        imagine(colour_collection, "a green square", plain, mode="reference", params=P)
    ref = imagine(colour_collection, "a green square", ip, mode="reference", k=2, params=P)
    assert len(ref.used_references) == 2 and ref.references[0].uri.endswith("green.png")
    # text mode through the IP-Adapter pipeline is exactly the plain pipeline (scale 0 adds nothing)
    text_ip = imagine(colour_collection, "a green square", ip, k=2, params=P)
    text_plain = imagine(colour_collection, "a green square", plain, k=2, params=P)
    assert np.array_equal(pixels(text_ip.image), pixels(text_plain.image))
    assert not np.array_equal(pixels(ref.image), pixels(text_ip.image))
    assert json.loads(json.dumps(ref.to_dict()))["mode"] == "reference"


def test_bad_input_is_one_line_errors(colour_collection, generators):
    gen = generators["plain"]
    cases = [("", {}, "prompt is empty"), ("   ", {}, "prompt is empty"),
             ("x", {"width": 65, "height": 64}, "not a multiple of 8"),
             ("x", {"width": 4096, "height": 4096}, "too large"),
             ("x", {"width": 2048, "height": 2048 + 8}, "too large"),
             ("x", {"strength": 0.0}, r"strength must be in \(0, 1\]"),
             ("x", {"strength": 1.5}, r"strength must be in \(0, 1\]"),
             ("x", {"steps": 0}, "steps must be"), ("x", {"width": 64}, "both width and height")]
    for prompt, kw, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            imagine(colour_collection, prompt, gen, params=ImageParams(**kw))
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="mode must be one of"):
        imagine(colour_collection, "x", gen, mode="inpaint")
    with pytest.raises(ConfigError, match="no denoising step"):
        imagine(colour_collection, "x", gen, mode="init", params=ImageParams(steps=2, strength=0.1))
    assert parse_size("64x48") == (64, 48) and parse_size(None) == (None, None)
    for bad in ("64", "axb", "63x64", "0x64"):
        with pytest.raises(ConfigError):
            parse_size(bad)


def test_no_generator_raises_with_the_references(colour_collection):
    with pytest.raises(NoImageGeneratorError, match="no image generator is set.*diffusers:.*a1111:.*openai-images:") as info:
        imagine(colour_collection, "a yellow square", None, k=2)
    hits = info.value.references
    assert len(hits) == 2 and hits[0].uri.endswith("yellow.png")


def test_spec_errors_say_how_to_fix(tmp_path, tiny_sd, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as info:
        load_image_generator("diffusers:stabilityai/sd-turbo")
    message = str(info.value)
    assert "'diffusers:stabilityai/sd-turbo'" in message and "hf download stabilityai/sd-turbo --local-dir" in message
    assert "diffusers:/path/to/DIR" in message and "\n" not in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="not a loadable diffusers pipeline folder.*model_index.json"):
        load_image_generator(f"diffusers:{tmp_path / 'empty'}")
    with pytest.raises(ConfigError, match="unknown option.*known: device"):
        load_image_generator(f"{tiny_sd['spec']}?colour=red")
    with pytest.raises(ModelNotAvailableError, match="ip_adapter .* is not a file"):
        load_image_generator(f"{tiny_sd['spec']}?ip_adapter={tmp_path / 'nope.safetensors'}")
    with pytest.raises(UnknownBackendError, match="unknown image generator backend 'dalle'.*a1111, diffusers"):
        load_image_generator("dalle:3")


# --- the CLI, on a real collection with the default encoder ------------------------------------
@pytest.mark.slow
def test_cli_imagine_writes_png_with_provenance_and_json(tmp_path_factory, skimage_photos, tiny_sd, tmp_path):
    from test_server_api import build_collection, ravl_cli

    images, coll = build_collection(tmp_path_factory, skimage_photos)
    out = tmp_path / "out.png"
    env = {"RAVL_THREADS": "1"}
    proc = ravl_cli("imagine", "a cup of coffee", "--collection", coll, "--generator", tiny_sd["spec"], "--mode",
                    "init", "--k", "3", "--steps", "4", "--seed", "7", "--strength", "0.5", "--out", out, "--json",
                    env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["output"] == str(out) and data["mode"] == "init" and data["seed"] == 7 and data["steps"] == 4
    assert data["generator"] == tiny_sd["spec"] and data["encoder"] == "default"
    assert data["references"][0]["uri"].endswith("coffee.jpg") and data["references"][0]["used"]
    assert set(data["timings"]) >= {"retrieve_s", "generate_s", "check_s", "total_s"}
    assert data["alignment"]["of"] == 4 and isinstance(data["alignment"]["prompt_cosine"], float)
    prov = read_provenance(out)
    assert prov["prompt"] == "a cup of coffee" and prov["mode"] == "init" and prov["seed"] == "7"
    assert [r["uri"] for r in prov["references"]] == [r["uri"] for r in data["references"]]
    assert prov["ravl"]["alignment"] == data["alignment"]


@pytest.mark.slow
def test_cli_without_generator_lists_neighbours_and_exits_2(tmp_path_factory, skimage_photos, monkeypatch):
    from test_server_api import build_collection, ravl_cli

    monkeypatch.delenv("RAVL_IMAGE_GENERATOR", raising=False)
    images, coll = build_collection(tmp_path_factory, skimage_photos)
    proc = ravl_cli("imagine", "a rocket launching", "--collection", coll, "--k", "3")
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and "rocket.jpg" in lines[1]
    float(lines[1].split("\t")[0])
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "no image generator is set" in err[0] and "RAVL_IMAGE_GENERATOR" in err[0]


def test_cli_bad_input_fails_fast_with_one_line(tmp_path):
    from test_server_api import ravl_cli

    missing = tmp_path / "nothing"
    for args, message in ((["", "--collection", missing], "prompt is empty"),
                          (["x", "--collection", missing, "--size", "500x500"], "not a multiple of 8"),
                          (["x", "--collection", missing, "--size", "4096x4096"], "too large"),
                          (["x", "--collection", missing, "--strength", "0"], "strength must be in"),
                          (["x", "--collection", missing, "--out", tmp_path / "a.jpg"], "must end in .png"),
                          (["x", "--collection", missing, "-g", "nope:1"], "unknown image generator backend")):
        proc = ravl_cli("imagine", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_eval_imagine_scores_writes_a_contact_sheet_and_resumes(colour_collection, tiny_sd, tmp_path, capsys,
                                                                monkeypatch):
    from ravl.cli.main import main

    monkeypatch.setenv("RAVL_THREADS", "1")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# colours\na red square\n\na green square\n{\"prompt\": \"a blue square\"}\n")
    out = tmp_path / "report"
    args = ["eval", "imagine", "--collection", str(colour_collection.path), "--prompts", str(prompts),
            "--generator", tiny_sd["spec"], "--steps", "2", "--k", "2", "--out", str(out), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    summary = report["extra"]["imagine"]["summary"]
    assert summary["prompts"] == 3 and summary["generated"] == 3 and summary["distractors"] == 2
    assert 0 <= summary["r_precision"] <= 1 and summary["r_precision_chance"] == pytest.approx(1 / 3, abs=1e-5)
    assert -1 <= summary["mean_alignment"] <= 1 and summary["seconds_per_image"] > 0
    assert report["config"]["generator"] == tiny_sd["spec"] and "rows" not in report["extra"]["imagine"]
    sheet = Image.open(out / "contact-sheet.png")
    assert sheet.height >= 3 * 128 and sheet.width >= 220 + 3 * 128
    assert read_provenance(out / "images" / "0001.png")["prompt"] == "a green square"
    saved = json.loads((out / "report.json").read_text())
    rows = saved["extra"]["imagine"]["rows"]
    assert [r["seed"] for r in rows] == [0, 1, 2] and rows[0]["references"][0] == colour_collection.search_text(
        ["a red square"], k=1)[0][0].id
    # a rerun reuses the images whose provenance matches, with the same scores
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)["extra"]["imagine"]["summary"]
    assert again["generated"] == 0 and again["reused"] == 3 and again["mean_alignment"] == summary["mean_alignment"]
    bad = tmp_path / "bad.txt"
    bad.write_text("\n# nothing\n")
    assert main(["eval", "imagine", "--collection", str(colour_collection.path), "--prompts", str(bad),
                 "--generator", tiny_sd["spec"]]) == 2
    assert "holds no prompts" in capsys.readouterr().err


def test_docs_option_tables_match_the_parsers():
    """docs/imagine.md lists every option of `ravl imagine` and `ravl eval imagine`."""
    from pathlib import Path

    from ravl.cli.main import build_parser

    doc = (Path(__file__).resolve().parents[1] / "docs" / "imagine.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    evals = next(a for a in sub["eval"]._actions if a.dest == "eval_task").choices
    for p in (sub["imagine"], evals["imagine"]):
        for action in p._actions:
            longs = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
            for option in longs:
                assert f"`{option}" in doc, f"{option} of {p.prog} is not in docs/imagine.md"
