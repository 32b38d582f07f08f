"""The index report's per-stage profile (wall and CPU per stage, idle time, the bottleneck) and
captions the collection already holds reusing their stored vectors (fake encoder, real SQLite)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources
from ravl.ingest.report import profile_lines
from ravl.ingest.text_stage import TextStage

COLOURS = {"red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


def write_manifest(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def images(tmp_path):
    return {name: make_image(tmp_path / "img" / f"{name}.png", rgb) for name, rgb in COLOURS.items()}


class Recorder:
    def __init__(self, encoder):
        self.encoder, self.texts = encoder, []

    def __call__(self, texts):
        self.texts += list(texts)
        return self.encoder.__class__.encode_texts(self.encoder, texts)


def test_report_profiles_each_stage(tmp_path, images, colour_spec):
    rows = [{"image": str(p), "captions": [f"a {n} square", f"{n} thing"]} for n, p in images.items()]
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    report = index_sources(coll, [write_manifest(tmp_path / "m.jsonl", rows)], batch_size=2, workers=2)
    prof = report.profile
    assert set(prof["stages"]) >= {"decode", "encode_images", "encode_texts", "write"}
    assert prof["stages"]["decode"]["threads"] == 2
    for st in prof["stages"].values():
        assert st["wall"] >= 0 and st["cpu"] >= 0
    assert prof["cores"] >= 1 and prof["cpu"] >= 0 and prof["idle"] >= 0 and prof["other_cpu"] >= 0
    assert prof["bound_by"] in {"image model", "decoding", "text model", "writing"}
    assert set(prof["waits"]) == {"decode", "texts"}
    assert report.to_dict()["profile"] == prof  # --json carries it
    lines = report.profile_lines()
    assert lines[0].split() == ["stage", "wall", "s", "CPU", "s"]
    assert any(line.startswith("decode (2 threads)") for line in lines)
    assert "bound by: " in lines[-2] and lines[-1].startswith("after the batches: sync")
    assert set(prof["after"]) == {"sync", "index"}
    assert profile_lines({}) == []


def test_held_captions_reuse_stored_vectors(tmp_path, images, colour_spec):
    names = list(images)
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    first = [{"image": str(images[n]), "captions": [f"a {n} square", "a square"]} for n in names[:2]]
    index_sources(coll, [write_manifest(tmp_path / "a.jsonl", first)])
    rec = Recorder(coll.encoder)
    coll.encoder.encode_texts = rec
    # new images whose captions partly repeat texts other items already hold
    second = [{"image": str(images[n]), "captions": [f"a {names[0]} square", "a square", f"the {n} one"]}
              for n in names[2:]]
    report = index_sources(coll, [write_manifest(tmp_path / "b.jsonl", second)])
    assert report.added == 2 and report.captions_added == 6
    assert report.caption_vectors_reused == 2
    assert sorted(rec.texts) == sorted(f"the {n} one" for n in names[2:])  # only the new texts met the model
    ids, vecs = coll.caption_vectors()
    rows = coll.caption_rows(ids.tolist())
    expected = coll.encoder.__class__.encode_texts(coll.encoder, [rows[int(i)][0] for i in ids])
    np.testing.assert_allclose(vecs.reshape(len(ids), -1), expected, atol=1e-6)


def test_text_stage_seed_answers_without_encoding():
    seen: list[str] = []

    def encode(texts):
        seen.extend(texts)
        return np.ones((len(texts), 3), np.float32)

    stage = TextStage(encode)
    stage.seed({"known": np.zeros(3, np.float32)})
    try:
        vecs = stage.vectors(stage.request(["known", "new", "known"], start=True))
    finally:
        stage.close()
    assert seen == ["new"] and stage.reused == 1 and stage.encoded == 1
    assert vecs["known"].tolist() == [0, 0, 0] and vecs["new"].tolist() == [1, 1, 1]


def test_cli_prints_the_profile(tmp_path, images, colour_spec, capsys):
    from ravl.cli.main import main

    assert main(["index", str(tmp_path / "img"), "--collection", str(tmp_path / "c"), "--encoder", colour_spec]) == 0
    out = capsys.readouterr().out
    assert "CPU s" in out and "image model" in out and "bound by: " in out
