"""A tiny deterministic encoder for fast unit tests of the store and pipeline around a backend.
(End-to-end tests use the real bundled weights.) Images map to their mean colour; colour words
in a text map to that colour, so 'red' finds the red image."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ravl.encoders.base import Encoder, ImageVectors, l2_normalize
from ravl.specs import Spec

COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "white": (1, 1, 1),
           "yellow": (1, 1, 0), "black": (0.05, 0.05, 0.05)}


class ColourEncoder(Encoder):
    dim = 4
    feature_dim = 6
    batch_size = 4
    image_size_hint = 16

    def __init__(self, spec: Spec):
        self.spec = str(spec)
        self.calls = 0
        # for the Ray tests: seconds per image (to stretch a run) and a folder to announce this process in
        self.delay = float(os.environ.get("RAVL_TEST_ENCODE_DELAY", "0"))
        if os.environ.get("RAVL_TEST_PID_DIR"):
            (Path(os.environ["RAVL_TEST_PID_DIR"]) / str(os.getpid())).touch()

    def preprocess(self, image):
        small = image.convert("RGB").resize((8, 8))
        return np.asarray(small, dtype=np.float32) / 255.0

    def embed_pixels(self, pixels):
        self.calls += 1
        if self.delay:
            time.sleep(self.delay * len(pixels))
        mean = pixels.mean(axis=(1, 2))
        emb = l2_normalize(np.concatenate([mean, np.full((len(mean), 1), 0.05)], axis=1))
        std = pixels.std(axis=(1, 2))
        feat = l2_normalize(np.concatenate([mean, std + 0.01], axis=1))
        return ImageVectors(emb, feat)

    def encode_texts(self, texts):
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for t in texts:
            v = np.zeros(3)
            for word in t.lower().split():
                v += COLOURS.get(word.strip(".,"), (0, 0, 0))
            out.append(np.concatenate([v, [0.05]]))
        return l2_normalize(np.array(out))


def create(spec: Spec) -> ColourEncoder:
    return ColourEncoder(spec)
