"""The ingest pipeline's caption stage: encoded in its own thread, each distinct caption once per
run, with the same per-batch atomic commits (fake encoder, real SQLite)."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources
from ravl.ingest.text_stage import TextStage

COLOURS = {"red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "white": (255, 255, 255), "black": (10, 10, 10)}


@pytest.fixture
def manifest(tmp_path):
    """Six images, five captions each; several captions repeat within and across batches."""
    rows = []
    for i, (name, rgb) in enumerate(COLOURS.items()):
        path = make_image(tmp_path / "img" / f"{name}.png", rgb)
        caps = [f"a {name} square", "a square", "a plain image", f"{name} number {i}", "a square"]
        rows.append({"image": str(path), "captions": caps})
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


class Recorder:
    def __init__(self, encoder):
        self.encoder, self.texts, self.threads = encoder, [], set()

    def __call__(self, texts):
        self.texts += list(texts)
        self.threads.add(threading.current_thread().name)
        return self.encoder.__class__.encode_texts(self.encoder, texts)


def test_captions_encoded_once_in_their_own_thread(tmp_path, manifest, colour_spec):
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    rec = Recorder(coll.encoder)
    coll.encoder.encode_texts = rec
    report = index_sources(coll, [manifest], batch_size=2)
    assert report.added == 6 and report.captions_added == 24  # "a square" twice in a record is kept once
    assert sorted(rec.texts) == sorted(set(rec.texts))  # no caption encoded twice, across 3 batches
    assert len(rec.texts) == 2 + 2 * 6
    assert rec.threads == {"ravl-text_0"}
    assert "encode_texts" in report.seconds and "wait_texts" in report.seconds
    ids, vecs = coll.caption_vectors()
    rows = coll.caption_rows(ids.tolist())
    expected = coll.encoder.__class__.encode_texts(coll.encoder, [rows[int(i)][0] for i in ids])
    np.testing.assert_allclose(vecs.reshape(len(ids), -1), expected, atol=1e-6)
    hit = coll.search_text(["blue"], k=1)[0][0]
    assert hit.uri.endswith("blue.png") and hit.captions[0] == "a blue square"


def test_text_failure_commits_nothing_of_its_batch_and_a_rerun_resumes(tmp_path, manifest, colour_spec):
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    real = coll.encoder.encode_texts

    def failing(texts):
        if any(t.startswith("white") for t in texts):
            raise RuntimeError("text model failed")
        return real(texts)

    coll.encoder.encode_texts = failing
    stage_min = TextStage.__init__.__kwdefaults__["min_job"]
    assert stage_min > 30  # small runs encode per batch, so the failure hits only the white image's batch
    with pytest.raises(RuntimeError, match="text model failed"):
        index_sources(coll, [manifest], batch_size=2)
    counts = coll.counts()
    assert counts["images"] == 4 and counts["captions"] == 16  # the two batches before it, whole
    coll.encoder.encode_texts = real
    again = index_sources(coll, [manifest], batch_size=2)
    assert (again.added, again.unchanged) == (2, 4) and coll.counts() == {"images": 6, "captions": 24}


def test_text_stage_dedupes_and_keeps_order():
    seen = []

    def encode(texts):
        seen.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], np.float32)

    stage = TextStage(encode, min_job=3)
    try:
        a = stage.request(["bb", "a", "bb"])  # 2 distinct: stays queued below min_job
        b = stage.request(["a", "ccc", "dddd"])  # 4 queued: launched, sorted by length
        got_a, got_b = stage.vectors(a), stage.vectors(b)
        assert seen == [["a", "bb", "ccc", "dddd"]]
        assert got_a["bb"][0] == 2 and got_b["dddd"][0] == 4 and set(got_a) == {"a", "bb"}
        c = stage.request(["bb", "e"], start=True)
        assert stage.vectors(c)["e"][0] == 1 and seen[-1] == ["e"] and stage.encoded == 5
    finally:
        stage.close()
