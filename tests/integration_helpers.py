"""Shared by the integration tests (MCP, /v1/embeddings, retrievers): a small colour collection
built with the fast fake encoder and a stored tuned bridge, and the CLI run as a subprocess with
that encoder registered (tests/colour_cli.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TESTS = Path(__file__).resolve().parent
LAUNCHER = [sys.executable, str(TESTS / "colour_cli.py")]
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20),
           "white": (250, 250, 250)}
#: what a subprocess needs from this environment (the MCP SDK starts servers with a minimal one)
ENV_KEYS = ("PYTHONPATH", "RAVL_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "PATH")


def child_env(**extra) -> dict[str, str]:
    return {**{k: os.environ[k] for k in ENV_KEYS if k in os.environ}, **extra}


def ravl(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*LAUNCHER, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def ravl_json(*args) -> dict:
    proc = ravl(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[0])


def build_colour_collection(base: Path, *, bridge: bool = True) -> tuple[Path, Path]:
    """(images folder, collection): five captioned colour images (one with a sign reading STOP),
    indexed by the CLI, with a linear tuned bridge stored (so shared-space vectors differ from the
    base encoder's)."""
    images = base / "images"
    images.mkdir(parents=True)
    for name, rgb in COLOURS.items():
        img = Image.new("RGB", (96, 64), rgb)
        if name == "white":
            ImageDraw.Draw(img).text((20, 25), "STOP", fill=(0, 0, 0))
        img.save(images / f"{name}.png")
        (images / f"{name}.txt").write_text(f"a {name} square\n")
    coll = base / "coll"
    proc = ravl("index", images, "--collection", coll, "--encoder", "testcolour")
    assert proc.returncode == 0, proc.stderr
    if bridge:
        from ravl.collection import open_collection
        from ravl.encoders.bridge import Bridge

        with open_collection(coll) as c:
            rng = np.random.default_rng(0)
            b = Bridge("linear", 0.5, False, {"W": rng.normal(size=(6, 4)).astype(np.float32),
                                              "b": np.zeros(4, np.float32)},
                       {"in_dim": 6, "out_dim": 4, "base_fingerprint": c.fingerprint})
            c.store_bridge(b)
    return images, coll
