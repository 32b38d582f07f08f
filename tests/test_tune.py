"""ravl tune: a bridge learned from a collection's own pairs, judged on held-out caption groups,
stored verifiably, used by later searches (and for images added later), and reset."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ravl.collection import open_collection
from ravl.encoders.bridge import Bridge
from ravl.errors import BridgeError, ConfigError, TuneDataError
from ravl.ingest.pipeline import index_sources
from ravl.tune import reset_tuning, tune_collection
from ravl.tune.data import build_pairs, caption_groups, split

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (240, 220, 20),
           "black": (10, 10, 10), "orange": (250, 140, 0), "purple": (130, 30, 160), "pink": (250, 150, 190)}
BACKGROUNDS = {"white": (255, 255, 255), "grey": (128, 128, 128), "light blue": (170, 210, 250),
               "beige": (230, 215, 180)}
SHAPES = ("circle", "square", "triangle", "star")


def draw_shape(colour, background, shape, offset=0, size=96) -> Image.Image:
    im = Image.new("RGB", (size, size), BACKGROUNDS[background])
    d, rgb, c, o = ImageDraw.Draw(im), COLOURS[colour], size // 2, offset
    box = (size // 5 + o, size // 5 - o, size - size // 5 + o, size - size // 5 - o)
    if shape == "circle":
        d.ellipse(box, fill=rgb)
    elif shape == "square":
        d.rectangle(box, fill=rgb)
    elif shape == "triangle":
        d.polygon([(c + o, size // 6), (size - size // 6, size - size // 5), (size // 6, size - size // 5)], fill=rgb)
    else:
        d.regular_polygon((c + o, c, size // 3), 5, fill=rgb)
        d.regular_polygon((c + o, c, size // 6), 5, rotation=36, fill=rgb)
    return im


def write_shapes(root: Path, n: int | None = None) -> Path:
    """128 images, one per (colour, background, shape), captioned 'a red star on a grey background'."""
    root.mkdir(parents=True, exist_ok=True)
    combos = list(itertools.product(COLOURS, BACKGROUNDS, SHAPES))[:n]
    for k, (colour, bg, shape) in enumerate(combos):
        name = f"{colour}-{shape}-{bg.replace(' ', '')}"
        draw_shape(colour, bg, shape, offset=(k * 7) % 13 - 6).save(root / f"{name}.png")
        (root / f"{name}.txt").write_text(f"a {colour} {shape} on a {bg} background\n")
    return root


def ravl(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "ravl.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ})
    if check and proc.returncode != 0:
        raise AssertionError(f"ravl {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes(tmp_path_factory.mktemp("shapes") / "imgs")


@pytest.fixture(scope="module")
def shapes_collection(shapes, tmp_path_factory) -> Path:
    coll = tmp_path_factory.mktemp("tuned") / "c"
    ravl("index", shapes, "--collection", coll)
    return coll


def _search(coll: Path, text: str) -> list[str]:
    with open_collection(coll, readonly=True) as c:
        return [Path(h.uri).name for h in c.search_text([text], k=10)[0]]


@pytest.mark.slow
def test_tune_keeps_a_helpful_bridge_and_every_search_uses_it(shapes_collection, tmp_path):
    coll = shapes_collection
    before = _search(coll, "a red star on a grey background")
    proc = ravl("tune", "--collection", coll, "--val-fraction", "0.25", "--epochs", "12", "--json")
    report = json.loads(proc.stdout)
    assert "tuning" in proc.stderr  # progress bar
    assert report["kept"] is True and 0.0 <= report["weight"] < 1.0
    assert report["pairs"] == 128 and report["val_images"] >= 10
    assert set(report["base"]) == {f"{d}_R@{k}" for d in ("text_to_image", "image_to_text") for k in (1, 5, 10)}
    assert sum(report["tuned"].values()) > sum(report["base"].values())
    with open_collection(coll, readonly=True) as c:
        info = c.info()
    assert info["tuned"]["sha256"] == report["bridge_sha256"] and info["tuned"]["data_sha256"] == report["data_sha256"]
    assert "+tuned-linear-" in info["fingerprint"]
    assert info["tuned"]["figures"]["tuned"] == report["tuned"]
    files = list((coll / "bridge").glob("*.safetensors"))
    assert len(files) == 1

    after = json.loads(ravl("search", "--collection", coll, "--text", "a red star on a grey background",
                            "--json").stdout)
    assert [Path(r["uri"]).name for r in after["results"]] != before
    assert Path(after["results"][0]["uri"]).name == "red-star-grey.png"

    # an image added later goes through the bridge too (the store keeps base vectors)
    extra = tmp_path / "later"
    extra.mkdir()
    draw_shape("purple", "beige", "circle", offset=3).save(extra / "new-purple-circle.png")
    ravl("index", extra, "--collection", coll)
    with open_collection(coll, readonly=True) as c:
        ids, fused = c.item_embeddings()
        base_ids, base = c.item_vectors(which="emb")
        assert np.array_equal(ids, base_ids) and not np.allclose(fused, base)
        hits = c.search_text(["a purple circle on a beige background"], k=3, mode="vector")[0]  # no caption: vectors only
        assert any(Path(h.uri).name == "new-purple-circle.png" for h in hits)

    # a damaged bridge is refused with the command that fixes it; --reset returns to the base
    files[0].write_bytes(files[0].read_bytes()[:-7] + b"garbage")
    bad = ravl("search", "--collection", coll, "--text", "a red star", check=False)
    assert bad.returncode == 2 and "ravl tune" in bad.stderr and "--reset" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    out = json.loads(ravl("tune", "--collection", coll, "--reset", "--json").stdout)
    assert out == {"reset": True, "removed": True}
    with open_collection(coll, readonly=True) as c:
        info = c.info()
    assert info["tuned"] is None and "+tuned" not in info["fingerprint"]
    assert not list((coll / "bridge").glob("*"))
    assert _search(coll, "a red star on a grey background") != [Path(r["uri"]).name for r in after["results"]]


@pytest.fixture
def colour_collection(tmp_path, colour_spec):
    """A collection by the fast fake encoder: 120 captioned colour images (enough pairs to tune)."""
    from conftest import make_image

    src = tmp_path / "colours"
    rng = np.random.default_rng(0)
    for k in range(120):
        rgb = tuple(int(v) for v in rng.integers(0, 255, 3))
        make_image(src / f"c{k:03d}.png", rgb)
        (src / f"c{k:03d}.txt").write_text(f"colour number {k}\n")
    coll = open_collection(tmp_path / "coll", encoder=colour_spec, create=True)
    index_sources(coll, [src])
    yield coll
    coll.close()


def test_interrupted_tune_leaves_the_collection_unchanged(colour_collection):
    coll = colour_collection
    before = coll.info()

    def interrupt(done, total):
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune_collection(coll, method="mlp", val_fraction=0.2, epochs=5, progress=interrupt)
    assert coll.bridge() is None and coll.info()["fingerprint"] == before["fingerprint"]
    assert coll.generation() == before["generation"] and not (coll.path / "bridge").exists()


def test_bridge_round_trips_and_is_applied_in_numpy(colour_collection):
    coll = colour_collection
    report = tune_collection(coll, method="mlp", val_fraction=0.2, epochs=3)
    assert report.method == "mlp" and report.epochs == 3 and report.pairs == 120
    rng = np.random.default_rng(1)
    bridge = Bridge("mlp", 0.25, False, {"W1": rng.normal(size=(6, 8)).astype(np.float32),
                                         "b1": np.zeros(8, np.float32),
                                         "W2": rng.normal(size=(8, 4)).astype(np.float32),
                                         "b2": np.zeros(4, np.float32)}, {"in_dim": 6, "out_dim": 4})
    back = Bridge.from_bytes(bridge.to_bytes())
    x = rng.normal(size=(5, 6)).astype(np.float32)
    base = rng.normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(back.apply(base, x), bridge.apply(base, x), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(back.apply(base, x), axis=1), 1.0, atol=1e-5)
    with pytest.raises(BridgeError, match="--reset"):
        Bridge.from_bytes(b"not a safetensors file")


def test_split_keeps_caption_groups_apart(colour_collection):
    stored = colour_collection.training_pairs()
    # two images sharing one caption must land on the same side
    stored["texts"][1] = stored["texts"][0]
    pairs = build_pairs(stored)
    groups = caption_groups(pairs)
    assert groups[0] == groups[1] and len(set(groups.tolist())) == 119
    for seed in range(5):
        train, val = split(pairs, 0.3, seed)
        assert not (train & val).any() and (train | val).all()
        assert not set(pairs.text[train].tolist()) & set(pairs.text[val].tolist())
        assert not set(pairs.image[train].tolist()) & set(pairs.image[val].tolist())


def test_bad_input_gets_one_line_errors(tmp_path, colour_spec, colour_collection):
    from conftest import make_image

    for k in range(5):
        make_image(tmp_path / "few" / f"{k}.png", (k * 40, 0, 0))
        (tmp_path / "few" / f"{k}.txt").write_text(f"image {k}\n")
    with open_collection(tmp_path / "small", encoder=colour_spec, create=True) as small:
        index_sources(small, [tmp_path / "few"])
        with pytest.raises(TuneDataError, match="holds 5 captioned .* at least 100"):
            tune_collection(small)
    with pytest.raises(ConfigError, match="unknown tuning method 'foo'.*linear, mlp, conse"):
        tune_collection(colour_collection, method="foo")
    with pytest.raises(ConfigError, match="conse needs the 'default' encoder"):
        tune_collection(colour_collection, method="conse")
    assert reset_tuning(colour_collection) is False
    proc = ravl("tune", "--collection", tmp_path / "small", "--method", "foo", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "unknown tuning method" in proc.stderr
    proc = ravl("tune", "--collection", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2 and "ravl index" in proc.stderr


TINY_ARCH = "ravl-tune-tiny-clip"


def test_clip_family_gets_a_residual_adapter(tmp_path, shapes):
    open_clip = pytest.importorskip("open_clip")
    import torch
    from safetensors.torch import save_file

    cfg = {"embed_dim": 24,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / f"{TINY_ARCH}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / f"{TINY_ARCH}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_ARCH, pretrained=None)
    save_file(model.state_dict(), tmp_path / "tiny.safetensors")
    with open_collection(tmp_path / "coll", encoder=f"open_clip:{TINY_ARCH}/{tmp_path / 'tiny.safetensors'}",
                         create=True) as coll:
        index_sources(coll, [shapes])
        report = tune_collection(coll, method="linear", val_fraction=0.25, epochs=4)
        assert report.pairs == 128
        if report.kept:
            bridge, _ = coll.bridge()
            assert bridge.residual and bridge.tensors["W"].shape == (24, 24)
            assert coll.encoder.fingerprint.endswith(report.bridge_sha256[:12])
            assert len(coll.search_text(["a red star"], k=5)[0]) == 5
        else:
            assert coll.bridge() is None


def test_docs_name_every_tune_and_hybrid_option():
    """docs/adaptation.md names the options and links to the generated reference (docs/cli.md,
    checked against argparse by test_cli_doc), so what it names must exist."""
    import re

    from ravl.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    tune_opts = {o for a in sub["tune"]._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
    search_opts = {o for a in sub["search"]._actions for o in a.option_strings}
    text = (Path(__file__).parents[1] / "docs" / "adaptation.md").read_text()
    tune_part = text.split("## `ravl tune`", 1)[1].split("\n## ", 1)[0]
    hybrid_part = text.split("## Hybrid search", 1)[1].split("\n## ", 1)[0]
    named_tune = set(re.findall(r"(--[a-z][a-z-]+)", tune_part.split("How it works")[0]))
    named_hybrid = set(re.findall(r"(--[a-z][a-z-]+)", hybrid_part.split("- **Keyword signal**")[0]))
    assert named_tune == tune_opts and "cli.md#ravl-tune" in tune_part
    assert {"--mode", "--keyword-weight", "--min-score"} <= named_hybrid <= search_opts
    assert "cli.md#ravl-search" in hybrid_part
