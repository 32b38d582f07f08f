"""Hybrid search: an FTS5 keyword index over captions kept in the rows' transactions, fused with
the vector ranking by reciprocal rank fusion; every text hit says which signal found it."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.errors import ConfigError
from ravl.hybrid import Fusion, fts_terms, rrf
from ravl.ingest.pipeline import index_sources
from ravl.store.schema import _V1

CAPTIONS = {"red1": "a red kite above the zebra crossing", "red2": "a red bus", "blue1": "a blue lake",
            "green1": "a green field with a zebra", "white1": "snow on the mountain", "black1": "night sky"}
RGB = {"red": (230, 10, 10), "blue": (10, 10, 230), "green": (10, 200, 10), "white": (250, 250, 250),
       "black": (5, 5, 5)}


@pytest.fixture
def coll(tmp_path, colour_spec):
    src = tmp_path / "src"
    for name, caption in CAPTIONS.items():
        make_image(src / f"{name}.png", RGB[name.rstrip("12")])
        (src / f"{name}.txt").write_text(caption + "\n")
    c = open_collection(tmp_path / "coll", encoder=colour_spec, create=True)
    index_sources(c, [src])
    yield c
    c.close()


def names(hits) -> list[str]:
    return [h.uri.rsplit("/", 1)[-1].split(".")[0] for h in hits]


def test_keyword_vector_and_hybrid_modes(coll):
    keyword = coll.search_text(["zebra"], mode="keyword", k=5)[0]
    assert sorted(names(keyword)) == ["green1", "red1"]
    assert all(h.found_by == {"keyword": r} for r, h in enumerate(keyword, 1))
    vector = coll.search_text(["red"], mode="vector", k=3)[0]
    assert names(vector)[:2] in (["red1", "red2"], ["red2", "red1"]) and vector[0].found_by == {"vector": 1}
    hybrid = coll.search_text(["a red zebra"], mode="hybrid", k=6)[0]
    assert set(names(hybrid)[:2]) == {"red1", "red2"}
    red1 = next(h for h in hybrid if names([h]) == ["red1"])
    assert set(red1.found_by) == {"vector", "keyword"} and red1.found_by["keyword"] == 1
    assert red1.score == pytest.approx(1 / (60 + red1.found_by["vector"]) + 1 / 61, abs=1e-6)
    # the keyword signal lifts the green zebra field above the blue lake
    assert names(hybrid).index("green1") < names(hybrid).index("blue1")
    # a keyword weight of 0 leaves the vector order
    only_vec = coll.search_text(["a red zebra"], mode="hybrid", k=6, fusion=Fusion(keyword_weight=0.0))[0]
    assert names(only_vec) == names(coll.search_text(["a red zebra"], mode="vector", k=6)[0])
    # auto = hybrid here (the collection has captions); captions target works in every mode
    assert names(coll.search_text(["a red zebra"], k=6)[0]) == names(hybrid)
    caps = coll.search_text(["zebra crossing"], target="captions", mode="keyword", k=3)[0]
    assert caps[0].caption == CAPTIONS["red1"] and caps[0].to_dict()["found_by"] == {"keyword": 1}
    # words that are not FTS syntax are safe; a query without words finds nothing by keyword
    assert coll.search_text(['zebra" OR (NEAR'], mode="keyword")[0]
    assert coll.search_text(["?!"], mode="keyword")[0] == []


def test_words_in_half_the_captions_do_not_rank(coll):
    """"a" is in 4 of the 6 captions: BM25 gives it no weight, so it neither ranks nor brings in
    captions that hold nothing else of the query; alone, it still finds what holds it."""
    with_a = coll.search_text(["a zebra"], mode="keyword", k=6)[0]
    assert names(with_a) == names(coll.search_text(["zebra"], mode="keyword", k=6)[0])
    assert sorted(names(with_a)) == ["green1", "red1"]
    assert [round(h.score, 4) for h in with_a] == [round(h.score, 4) for h in
                                                   coll.search_text(["zebra"], mode="keyword", k=6)[0]]
    assert sorted(names(coll.search_text(["a"], mode="keyword", k=6)[0])) == ["blue1", "green1", "red1", "red2"]
    # "on" is in 1 of 6 captions: informative, so it still ranks next to "zebra"
    assert sorted(names(coll.search_text(["zebra on"], mode="keyword", k=6)[0])) == ["green1", "red1", "white1"]


def test_keyword_index_follows_writes_and_deletes(coll, tmp_path):
    more = tmp_path / "more"
    make_image(more / "yak.png", (120, 90, 40))
    (more / "yak.txt").write_text("a shaggy yak on a hillside\n")
    index_sources(coll, [more])
    hit = coll.search_text(["yak"], mode="keyword")[0]
    assert names(hit) == ["yak"]
    coll.delete([hit[0].id])
    assert coll.search_text(["yak"], mode="keyword")[0] == []
    assert names(coll.search_text(["zebra"], mode="keyword")[0]) != []


def test_old_collection_gets_its_keyword_index_on_open(tmp_path, colour_spec):
    path = tmp_path / "old"
    path.mkdir()
    conn = sqlite3.connect(path / "ravl.sqlite")
    conn.executescript(_V1 + "PRAGMA user_version = 1;")
    meta = {"encoder_spec": colour_spec, "encoder_fingerprint": colour_spec, "dim": 4, "feature_dim": 6,
            "generation": 1}
    conn.executemany("INSERT INTO meta VALUES(?, ?)", [(k, str(v)) for k, v in meta.items()])
    vec4, vec6 = bytes(16), bytes(24)
    conn.execute("INSERT INTO items VALUES(1, '/x/a.png', 'h', 1, 1, 8, 8, '{}', 0)")
    conn.execute("INSERT INTO item_vectors VALUES(1, ?, ?)", (vec4, vec6))
    conn.execute("INSERT INTO captions VALUES(1, 1, 'an old walrus', 'ingest', ?)", (vec4,))
    conn.commit()
    conn.close()
    with open_collection(path, readonly=True) as ro:  # opening migrates and fills the index from the rows
        assert ro.search_text(["walrus"])[0][0].found_by == {"vector": 1, "keyword": 1}
        assert ro.search_text(["walrus"], mode="keyword")[0][0].id == 1


def test_fusion_helpers():
    fused = rrf({"vector": ["a", "b", "c"], "keyword": ["c", "d"]}, {"vector": 1.0, "keyword": 2.0}, 60)
    scores = {key: score for key, score, _ in fused}
    assert fused[0][0] == "c" and fused[0][2] == {"vector": 3, "keyword": 1}
    assert scores["c"] == pytest.approx(1 / 63 + 2 / 61) and scores["d"] == pytest.approx(2 / 62)
    assert fts_terms('say "hi" to Zoë hi') == ['"say"', '"hi"', '"to"', '"zoë"']
    assert fts_terms("  ...") == []
    with pytest.raises(ConfigError):
        Fusion(vector_weight=-1)
    with pytest.raises(ConfigError):
        Fusion(vector_weight=0, keyword_weight=0)


def test_cli_modes_and_weights(coll):
    def run(*a):
        return subprocess.run([sys.executable, "-m", "ravl.cli.main", "search", "--collection", str(coll.path),
                                         *a], capture_output=True, text=True, timeout=300, env={**os.environ})
    # the fake encoder is registered only in this process: keyword mode needs no encoder at all
    proc = run("--text", "zebra", "--mode", "keyword", "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert {r["found_by"]["keyword"] for r in results} == {1, 2}
    bad = run("--text", "zebra", "--mode", "hybrid", "--vector-weight", "-1")
    assert bad.returncode == 2 and "weights must be non-negative" in bad.stderr


def test_common_words_follow_writes(tmp_path):
    """Which words are too common to rank is remembered per database state: a write that makes a
    word common (or rare again) changes the ranking at once."""
    import numpy as np

    from ravl.store.db import Database, NewItem

    db = Database(tmp_path / "ravl.sqlite")
    vec = np.ones(4, np.float32) / 2

    def add(n: int, text: str) -> None:
        db.write_batch([NewItem(f"/x/{text}-{i}-{n}.jpg", f"{n:08d}{i:056d}", 1, 1, 1, 1, vec, vec,
                                captions=[(f"{text} {i}", vec)]) for i in range(n)])

    add(1, "a zebra")
    add(3, "a lake")
    # "zebra" is in 1 of 4 captions: it ranks; "a" (4 of 4) does not, unless it is all there is
    assert [item for _, item, _ in db.keyword_search(['"a"', '"zebra"'], 10)] == [1]
    assert len(db.keyword_search(['"a"'], 10)) == 4
    add(4, "zebra crossing")  # now "zebra" is in 5 of 8 captions, "a" in 4 of 8: both too common
    assert len(db.keyword_search(['"a"', '"zebra"'], 20)) == 8
    assert len(db.keyword_search(['"a"', '"zebra"', '"lake"'], 20)) == 3
    db.close()
