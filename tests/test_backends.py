"""Declared backend options and discovery: the registry checks spec options against what a
factory declares, runtime-only options stay out of an encoder's fingerprint, `ravl backends`
lists every family, and a plugin installed as a real distribution (dist-info with entry points on
sys.path, in a subprocess) is found and loaded through its entry point like ravl's own backends."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import fakes
from ravl import registry
from ravl.collection import open_collection
from ravl.errors import ConfigError, EncoderMismatchError, SpecError
from ravl.specs import Option, declare, fingerprint_spec, parse_options, parse_spec

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = (
    Option("scale", float, 1.0, "multiply the colour", minimum=0),
    Option("mode", str, "rgb", "colour space", choices=("rgb", "bgr")),
    Option("fast", bool, False, "skip work"),
    Option("threads", int, None, "threads", fingerprint=False, minimum=1),
)


@declare(*OPTIONS)
def declared_factory(spec):
    """A colour encoder whose fingerprint ignores runtime-only options."""
    enc = fakes.ColourEncoder(spec)
    enc.options = parse_options(spec, OPTIONS)
    enc.fingerprint_value = str(fingerprint_spec(spec, OPTIONS))
    return enc


class _Fingerprinted(fakes.ColourEncoder):
    @property
    def fingerprint(self) -> str:
        return str(fingerprint_spec(parse_spec(self.spec), OPTIONS))


@declare(*OPTIONS)
def fingerprinted(spec):
    return _Fingerprinted(spec)


@pytest.fixture
def declared():
    registry.register("encoders", "testdeclared", declared_factory)
    registry.register("encoders", "testfp", fingerprinted)
    return "testdeclared"


def test_declared_options_are_typed_with_defaults(declared):
    enc = registry.create("encoders", "testdeclared?scale=2.5&fast=yes&threads=3")
    assert enc.options == {"scale": 2.5, "mode": "rgb", "fast": True, "threads": 3}
    assert registry.create("encoders", "testdeclared?scale=").options["scale"] == 1.0  # empty -> default


@pytest.mark.parametrize(("spec", "message"), [
    ("testdeclared?colour=red", r"unknown option\(s\) colour in 'testdeclared\?colour=red'; known: scale, mode, fast, threads"),
    ("testdeclared?scale=big", "option scale='big' .* must be a number"),
    ("testdeclared?threads=1.5", "option threads='1.5' .* must be an integer"),
    ("testdeclared?threads=0", "must be at least 1"),
    ("testdeclared?mode=hsv", "must be one of rgb, bgr"),
    ("testdeclared?fast=maybe", "must be 1 or 0"),
])
def test_bad_options_fail_before_the_factory_with_the_choices(declared, spec, message):
    with pytest.raises(SpecError, match=message):
        registry.create("encoders", spec)


def test_builtin_backends_reject_unknown_options_with_the_valid_ones():
    with pytest.raises(ConfigError, match="known: runtime, topk, temperature, threads"):
        registry.create("encoders", "default?runtim=torch")
    with pytest.raises(ConfigError, match="must be one of onnx, torch"):
        registry.create("encoders", "default?runtime=tpu")
    with pytest.raises(ConfigError, match="batch_size='0'.*at least 1"):
        registry.create("encoders", "open_clip:ViT-B-32/openai?batch_size=0")
    with pytest.raises(ConfigError, match="retries='-1'.*at least 0"):
        registry.create("generators", "openai:m?base_url=http://127.0.0.1:9/v1&retries=-1")
    with pytest.raises(ConfigError, match="known: none"):
        registry.create("generators", "consensus?k=3")


def test_runtime_options_stay_out_of_the_fingerprint(declared, tmp_path, colour_spec):
    base = registry.create("encoders", "testfp?scale=2")
    assert registry.create("encoders", "testfp?scale=2&threads=4").fingerprint == base.fingerprint == "testfp?scale=2"
    assert registry.create("encoders", "testfp?scale=3").fingerprint != base.fingerprint
    with open_collection(tmp_path / "c", encoder="testfp?scale=2", create=True):
        pass
    # a runtime-only option may differ when opening; a vector-changing one may not
    with open_collection(tmp_path / "c", encoder="testfp?scale=2&threads=1") as coll:
        assert coll.encoder.spec == "testfp?scale=2&threads=1"
    with pytest.raises(EncoderMismatchError):
        open_collection(tmp_path / "c", encoder="testfp?scale=3")


def test_with_option_adds_threads_only_where_declared(declared):
    assert registry.with_option("encoders", "default", "threads", 1) == "default?threads=1"
    assert registry.with_option("encoders", "default?threads=4", "threads", 1) == "default?threads=4"
    assert registry.with_option("encoders", "open_clip:ViT-B-32/openai", "threads", 1) == "open_clip:ViT-B-32/openai"


def test_pyproject_entry_points_match_the_builtin_fallback():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for kind in registry.KINDS:
        assert project[f"ravl.{kind}"] == registry._BUILTIN[kind]


def _ravl(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ravl.cli.main", *args], capture_output=True, text=True,
                          timeout=120, env=env or {**os.environ})


def test_backends_command_lists_every_family_with_options_and_usability(capsys):
    from ravl.cli.main import main

    assert main(["backends", "--json"]) == 0
    rows = {(r["kind"], r["family"]): r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {("encoder", "default"), ("encoder", "open_clip"), ("encoder", "hf"), ("generator", "consensus"),
            ("generator", "hf"), ("generator", "openai"), ("generator", "llamacpp")} <= set(rows)
    default = rows[("encoder", "default")]
    assert default["usable"] and default["declared"]
    threads = next(o for o in default["options"] if o["name"] == "threads")
    assert threads["type"] == "integer" and threads["fingerprint"] is False
    own = [r for (kind, family), r in rows.items() if family in registry._BUILTIN[kind + "s"]]
    assert len(own) == sum(len(table) for table in registry._BUILTIN.values())  # image generators too
    assert all(r["declared"] and r["summary"] for r in own), [r["family"] for r in own if not r["declared"]]
    for row in rows.values():
        assert row["usable"] == (row["why_not"] == "")
    assert main(["backends"]) == 0
    text = capsys.readouterr().out
    assert "encoder default:" in text and "?threads=<integer>" in text


PLUGIN = '''
"""A tiny third-party encoder plugin."""
import numpy as np

from ravl.encoders.base import Encoder, ImageVectors, l2_normalize
from ravl.specs import Option, declare, parse_options

OPTIONS = (Option("dim", int, 3, "vector size", minimum=2),)


class ConstantEncoder(Encoder):
    feature_dim = 2

    def __init__(self, spec, dim):
        self.spec, self.dim = str(spec), dim

    def preprocess(self, image):
        return np.zeros(1, np.float32)

    def embed_pixels(self, pixels):
        n = len(pixels)
        return ImageVectors(l2_normalize(np.ones((n, self.dim))), l2_normalize(np.ones((n, 2))))

    def encode_texts(self, texts):
        return l2_normalize(np.ones((len(texts), self.dim)))


@declare(*OPTIONS, requires=("numpy",))
def create(spec):
    """Constant vectors, for testing plugin discovery."""
    return ConstantEncoder(spec, parse_options(spec, OPTIONS)["dim"])
'''


def _install_plugin(site: Path) -> None:
    """Lay the plugin out as pip would: the package plus a dist-info holding its entry points."""
    (site / "ravl_constant").mkdir(parents=True)
    (site / "ravl_constant" / "__init__.py").write_text(PLUGIN)
    info = site / "ravl_constant-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ravl-constant\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ravl.encoders]\nconstant = ravl_constant:create\n")
    (info / "RECORD").write_text("")


def test_a_plugin_is_loaded_through_its_entry_point(tmp_path):
    site = tmp_path / "site"
    _install_plugin(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    code = textwrap.dedent("""
        import json
        from ravl import load_encoder, registry
        enc = load_encoder("constant?dim=4")
        print(json.dumps({"type": type(enc).__module__, "shape": list(enc.encode_texts(["a", "b"]).shape),
                          "families": registry.families("encoders")}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["type"] == "ravl_constant" and out["shape"] == [2, 4] and "constant" in out["families"]
    listed = _ravl("backends", "--json", env=env)
    row = next(r for r in map(json.loads, listed.stdout.splitlines()) if r["family"] == "constant")
    assert row["origin"] == "ravl-constant" and row["usable"] and row["options"][0]["name"] == "dim"
    bad = subprocess.run([sys.executable, "-c", "from ravl import load_encoder; load_encoder('constant?dim=1')"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode != 0 and "must be at least 2" in bad.stderr
    assert "constant" not in registry.families("encoders")  # nothing leaked into this test process
