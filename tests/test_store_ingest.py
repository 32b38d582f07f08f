"""Collection store and ingest pipeline, with the fast fake encoder (real SQLite and FAISS)."""
from __future__ import annotations

import json
import sqlite3

import pytest
from PIL import Image

from conftest import make_image
from ravl.collection import open_collection
from ravl.errors import CollectionNotFoundError, ConfigError, EncoderMismatchError, SchemaVersionError, SourceError
from ravl.ingest.pipeline import index_sources
from ravl.ingest.sources import read_source

COLOURS = {"red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    for name, rgb in COLOURS.items():
        make_image(root / "sub" / f"{name}.png", rgb)
        (root / "sub" / f"{name}.txt").write_text(f"a {name} square\nplain {name}\n")
    return root


def test_index_folder_and_search_all_directions(tmp_path, folder, colour_spec):
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    report = index_sources(coll, [folder])
    assert (report.added, report.unchanged, report.skipped) == (4, 0, [])
    assert coll.counts() == {"images": 4, "captions": 8}
    top = coll.search_text(["red"], k=2)[0]
    assert top[0].uri.endswith("red.png") and top[0].captions == ("a red square", "plain red")
    assert top[0].score > top[1].score
    blue = Image.new("RGB", (10, 10), (0, 0, 250))
    assert coll.search_image([blue], k=1)[0][0].uri.endswith("blue.png")
    caps = coll.search_image([blue], target="captions", k=2)[0]
    assert {c.caption for c in caps} == {"a blue square", "plain blue"}
    assert all(c.uri.endswith("blue.png") for c in caps)
    item = coll.search_text(["green"], k=1)[0][0]
    similar = coll.search_item(item.id, k=3)
    assert item.id not in [h.id for h in similar] and len(similar) == 3
    info = coll.info()
    assert info["images"] == 4 and info["encoder"] == "testcolour" and info["size_bytes"] > 0


def test_reindex_is_incremental(tmp_path, folder, colour_spec):
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    index_sources(coll, [folder])
    gen = coll.generation()
    calls = coll.encoder.calls
    again = index_sources(coll, [folder])
    assert (again.added, again.updated, again.unchanged, again.captions_added) == (0, 0, 4, 0)
    assert coll.encoder.calls == calls and coll.generation() == gen
    # a new caption line on an unchanged image: captions added, no image model call
    (folder / "sub" / "red.txt").write_text("a red square\nplain red\na crimson tile\n")
    more = index_sources(coll, [folder])
    assert (more.captions_added, more.unchanged) == (1, 4) and coll.encoder.calls == calls
    # changed pixels: re-encoded in place, id and captions kept
    red_id = coll.item_by_uri(str((folder / "sub" / "red.png").resolve())).id
    make_image(folder / "sub" / "red.png", (0, 0, 250))
    changed = index_sources(coll, [folder])
    assert changed.updated == 1 and coll.counts()["images"] == 4
    assert coll.search_text(["blue"], k=2)[0][0].id in (red_id, coll.search_text(["blue"], k=1)[0][0].id)
    assert "a crimson tile" in coll.get_item(red_id).captions
    # same content under a new name: vectors reused without a model call
    calls = coll.encoder.calls
    (folder / "copy.png").write_bytes((folder / "sub" / "green.png").read_bytes())
    dup = index_sources(coll, [folder])
    assert dup.reused == 1 and dup.added == 1 and coll.encoder.calls == calls


def test_bad_files_are_skipped_with_reasons(tmp_path, colour_spec):
    root = tmp_path / "bad"
    make_image(root / "good.png", (255, 0, 0))
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("not an image at all")
    png = (root / "good.png").read_bytes()
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    Image.new("1", (13000, 12000)).save(root / "bomb.png")
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(root / "transparent.png")  # composites to white
    (root / "folder.jpg").mkdir()
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    report = index_sources(coll, [root])
    reasons = {u.rsplit("/", 1)[-1]: r for u, r in report.skipped}
    assert set(reasons) == {"empty.jpg", "notes.png", "truncated.png", "bomb.png"}
    assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["notes.png"]
    assert "truncated" in reasons["truncated.png"] and "decompression bomb" in reasons["bomb.png"]
    assert report.added == 2 and coll.counts()["images"] == 2
    white = coll.search_text(["white"], k=1)[0][0]
    assert white.uri.endswith("transparent.png")


def test_interrupt_keeps_committed_batches_and_resumes(tmp_path, colour_spec):
    root = tmp_path / "many"
    for i in range(20):
        make_image(root / f"{i:02d}.png", (i * 12, 255 - i * 12, 0))
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)

    def stop_after(done, total):
        if done == 11:
            raise KeyboardInterrupt

    first = index_sources(coll, [root], batch_size=4, workers=1, progress=stop_after)
    assert first.interrupted and first.added == 8  # two whole batches committed, the third lost
    coll.close()
    coll = open_collection(tmp_path / "c")  # opens cleanly
    assert coll.counts()["images"] == 8
    rest = index_sources(coll, [root], batch_size=4)
    assert (rest.added, rest.unchanged) == (12, 8) and coll.counts()["images"] == 20


def test_manifests_coco_and_karpathy(tmp_path, colour_spec):
    imgs = tmp_path / "data" / "images"
    for name, rgb in COLOURS.items():
        make_image(imgs / f"{name}.jpg", rgb)
    jsonl = tmp_path / "data" / "m.jsonl"
    jsonl.write_text('{"image": "images/red.jpg", "caption": "red one"}\n\n'
                     '{"image": "images/red.jpg", "captions": ["crimson", "red one"], "tag": 1}\n')
    recs = read_source(jsonl)
    assert len(recs) == 1 and recs[0].captions == ["red one", "crimson"] and recs[0].metadata == {"tag": 1}
    csv = tmp_path / "data" / "m.csv"
    csv.write_text("image,caption\nimages/blue.jpg,blue thing\nimages/blue.jpg,\"navy, dark\"\n")
    assert read_source(csv)[0].captions == ["blue thing", "navy, dark"]
    coco = tmp_path / "ann" / "captions_val2014.json"
    coco.parent.mkdir()
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "green.jpg"}, {"id": 2, "file_name": "yellow.jpg"}],
                                "annotations": [{"image_id": 1, "caption": "A green field."},
                                                {"image_id": 2, "caption": "A yellow sun"}]}))
    with pytest.raises(SourceError, match="--images-root"):
        read_source(coco)
    recs = read_source(coco, images_root=imgs)
    assert [r.captions for r in recs] == [["A green field."], ["A yellow sun"]]
    karpathy = tmp_path / "dataset_coco.json"
    karpathy.write_text(json.dumps({"images": [
        {"filepath": "", "filename": "red.jpg", "split": "test", "cocoid": 5, "sentences": [{"raw": "red"}]},
        {"filepath": "", "filename": "blue.jpg", "split": "train", "sentences": [{"tokens": ["a", "blue"]}]}]}))
    test = read_source(karpathy, images_root=imgs, split="test")
    assert len(test) == 1 and test[0].metadata["cocoid"] == 5
    assert read_source(karpathy, images_root=imgs, split="train")[0].captions == ["a blue"]
    with pytest.raises(SourceError, match="unknown split 'tset'.*test, train"):
        read_source(karpathy, images_root=imgs, split="tset")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.jpg"}\n{oops\n')
    with pytest.raises(SourceError, match="bad.jsonl:2"):
        read_source(bad)
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    report = index_sources(coll, [jsonl, csv, coco], images_root=imgs)
    assert report.added == 4 and coll.counts()["captions"] == 6


def test_open_errors_schema_and_mismatch(tmp_path, folder, colour_spec):
    with pytest.raises(CollectionNotFoundError, match="ravl index"):
        open_collection(tmp_path / "nothing")
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    index_sources(coll, [folder])
    coll.close()
    with pytest.raises(EncoderMismatchError, match="testcolour"):
        open_collection(tmp_path / "c", encoder="default")
    with open_collection(tmp_path / "c") as coll:
        with pytest.raises(ConfigError, match="k must be"):
            coll.search_text(["red"], k=0)
        with pytest.raises(ConfigError, match="target"):
            coll.search_text(["red"], target="videos")
    conn = sqlite3.connect(tmp_path / "c" / "ravl.sqlite")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match="upgrade ravl"):
        open_collection(tmp_path / "c")


def test_index_cache_files_rebuilt_when_stale_or_damaged(tmp_path, folder, colour_spec):
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    index_sources(coll, [folder])
    assert (tmp_path / "c" / "index" / "images.faiss").exists()
    red = coll.search_text(["red"], k=1)[0][0]
    assert coll.delete([red.id]) == 1
    assert all(h.id != red.id for h in coll.search_text(["red"], k=4)[0])  # stale cache not used
    coll.close()
    (tmp_path / "c" / "index" / "images.faiss").write_bytes(b"garbage")
    with open_collection(tmp_path / "c") as again:
        hits = again.search_text(["blue"], k=10)[0]
        assert len(hits) == 3 and hits[0].uri.endswith("blue.png")
