"""Hybrid search: an FTS5 keyword index over captions kept in the rows' transactions, fused with
the vector ranking by score (cosine + weight x keyword coverage), calibrated scores in [0, 1],
stopwords and query arithmetic; every text hit says which signal found it."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.errors import ConfigError
from ravl.hybrid import Fusion, content_words, coverage
from ravl.ingest.pipeline import index_sources
from ravl.request import SearchRequest, Term, parse_query
from ravl.scores import SUITE_DEFAULT, fit_logistic
from ravl.store.schema import _V1

CAPTIONS = {"red1": "a red kite above the zebra crossing", "red2": "a red bus", "blue1": "a blue lake",
            "green1": "a green field with a zebra", "white1": "snow on the mountain", "black1": "night sky"}
RGB = {"red": (230, 10, 10), "blue": (10, 10, 230), "green": (10, 200, 10), "white": (250, 250, 250),
       "black": (5, 5, 5), "yellow": (240, 240, 10)}


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
    assert names(hybrid)[:2] == ["red1", "red2"]  # both red; red1's caption also holds "zebra"
    red1 = hybrid[0]
    assert set(red1.found_by) == {"vector", "keyword"} and red1.found_by["keyword"] == 1
    assert red1.keyword_score == pytest.approx(1.0) and 0.0 < red1.vector_score <= 1.0
    assert all(0.0 <= h.score <= 1.0 for h in hybrid)
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)
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


def test_stopwords_are_not_evidence(coll):
    """"a", "of", "an" never rank: keyword mode finds nothing for them, and hybrid falls back to the
    vector ranking when a query has no content word."""
    assert names(coll.search_text(["a zebra"], mode="keyword", k=6)[0]) == \
        names(coll.search_text(["zebra"], mode="keyword", k=6)[0])
    assert coll.search_text(["a"], mode="keyword", k=6)[0] == []
    only_stop = coll.search_text(["an of the"], k=6)[0]
    assert only_stop and all(set(h.found_by) == {"vector"} for h in only_stop)
    assert content_words("A cup of Coffee, a CUP") == ["cup", "coffee"]
    assert content_words("a man on fire") == ["man", "fire"]  # things people photograph are kept


def test_a_partial_keyword_match_does_not_bury_the_best_image(coll, tmp_path):
    """The vector's clear first (an uncaptioned yellow image for "yellow kite") stays first although
    a captioned red image matches "kite" (reciprocal rank fusion put that one first)."""
    more = tmp_path / "more"
    make_image(more / "yellow.png", RGB["yellow"])
    index_sources(coll, [more])
    hits = coll.search_text(["yellow kite"], k=3)[0]
    assert names(hits)[0] == "yellow" and hits[0].found_by == {"vector": 1}
    assert "red1" in names(hits) and hits[0].score > hits[names(hits).index("red1")].score


def test_negative_terms_steer_away_and_exclude_keyword_matches(coll):
    plain = names(coll.search_text(["red"], k=6)[0])
    assert {"red1", "red2"} <= set(plain[:2])
    assert "red2" not in names(coll.search_text(["red -bus"], k=6)[0])
    no_zebra = names(coll.search_text(["red NOT zebra"], k=6)[0])
    assert "red1" not in no_zebra and "green1" not in no_zebra and no_zebra[0] == "red2"
    # an image term minus a colour: the red image's own embedding minus "red" no longer puts red first
    red_id = coll.search_text(["red"], mode="vector", k=1)[0][0].id
    steered = coll.search(SearchRequest((Term("item", red_id), Term("text", "red", -1.0)), k=3))
    assert names(steered)[0] not in ("red1", "red2")


def test_parse_query_arithmetic():
    assert parse_query("2:sunset + beach") == (Term("text", "sunset", 2.0), Term("text", "beach", 1.0))
    assert parse_query("beach -people") == (Term("text", "beach"), Term("text", "people", -1.0))
    assert parse_query("pepper NOT red") == (Term("text", "pepper"), Term("text", "red", -1.0))
    assert parse_query("cat - 0.5:black cat") == (Term("text", "cat"), Term("text", "black cat", -0.5))
    assert parse_query("t-shirt -1") == (Term("text", "t-shirt -1"),)  # hyphenated words and numbers stay
    for bad in ("-red", "NOT red", "   ", "0:beach"):
        with pytest.raises(ConfigError):
            parse_query(bad)
    with pytest.raises(ConfigError):
        SearchRequest(parse_query("red"), k=0)
    with pytest.raises(ConfigError):
        SearchRequest(parse_query("red"), min_score=1.5)
    with pytest.raises(ConfigError):
        Fusion(keyword_weight=-1)


def test_calibration_is_fitted_on_the_collections_own_pairs(tmp_path, colour_spec):
    """With enough captioned images, the keyword weight and the score curves come from the
    collection (each caption a query for its own image, its own caption left out); the chosen
    weight is never worse on those pairs than the vector ranking alone."""
    src = tmp_path / "src"
    colours = ["red", "green", "blue", "white", "black"]
    rng = np.random.default_rng(0)
    for i in range(60):
        c = colours[i % 5]
        shade = tuple(int(np.clip(v + rng.integers(-40, 40), 0, 255)) for v in RGB[c])
        make_image(src / f"{c}{i}.png", shade)
        (src / f"{c}{i}.txt").write_text(f"a {c} swatch with the {['zig', 'zag', 'zug'][i % 3]} pattern\n")
    with open_collection(tmp_path / "coll", encoder=colour_spec, create=True) as c:
        index_sources(c, [src])
        cal = c.info()["search"]["calibration"]
        assert cal["source"] == "collection" and cal["pairs"] == 60 and cal["generation"] == c.generation()
        recall = {float(w): sum(r) for w, r in cal["fit"]["recall"].items()}
        assert recall[cal["keyword_weight"]] >= recall[0.0] and cal["keyword_weight"] in recall
        hits = c.search_text(["a red swatch"], k=10)[0]
        assert all(0 <= h.score <= 1 for h in hits) and names(hits)[0].startswith("red")
    # a collection with few captions uses the suite's defaults
    with open_collection(tmp_path / "small", encoder=colour_spec, create=True) as small:
        index_sources(small, [src / "red0.png"])
        assert small.calibration() == SUITE_DEFAULT


def test_logistic_fit():
    x = np.linspace(0, 1, 400)
    y = (np.random.default_rng(1).random(400) < 1 / (1 + np.exp(-(8 * x - 4)))).astype(float)
    a, b = fit_logistic(x, y)
    assert 5 < a < 12 and -6 < b < -2
    assert fit_logistic(x, 1 - y)[0] == 0.0  # falling evidence: a flat curve, never a reversed one
    assert coverage([True, False], [1.0, 3.0]) == 0.25 and coverage([], []) == 0.0


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


def _cli(*a):
    return subprocess.run([sys.executable, "-m", "ravl.cli.main", "search", *map(str, a)], capture_output=True,
                          text=True, timeout=300, env={**os.environ})


def test_cli_modes_weights_arithmetic_and_min_score(coll):
    # the fake encoder is registered only in this process: keyword mode needs no encoder at all
    proc = _cli("--collection", coll.path, "--text", "zebra", "--mode", "keyword", "--json")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert {r["found_by"]["keyword"] for r in answer["results"]} == {1, 2}
    assert all(set(r) >= {"score", "keyword_score", "found_by"} for r in answer["results"])
    bad = _cli("--collection", coll.path, "--text", "zebra", "--keyword-weight", "-1")
    assert bad.returncode == 2 and "keyword weight must be a number" in bad.stderr
    # --subtract is the option form of "-word"; captions print score, uri, caption (as documented)
    sub = _cli("--collection", coll.path, "--text", "zebra", "--subtract", "crossing", "--mode", "keyword",
               "--target", "captions")
    assert sub.returncode == 0, sub.stderr
    score, uri, caption = sub.stdout.splitlines()[0].split("\t")
    assert uri.endswith("green1.png") and caption == CAPTIONS["green1"] and 0 <= float(score) <= 1
    assert "red1" not in sub.stdout
    # nothing clears --min-score: no lines, and a note on stderr
    none = _cli("--collection", coll.path, "--text", "zebra", "--mode", "keyword", "--min-score", "1")
    assert none.returncode == 0 and none.stdout == "" and "no good match" in none.stderr


def test_empty_collection_says_so(tmp_path, colour_spec):
    with open_collection(tmp_path / "empty", encoder=colour_spec, create=True) as c:
        with pytest.raises(ConfigError, match="is empty; add images with 'ravl index"):
            c.search_text(["red"])
    proc = _cli("--collection", tmp_path / "empty", "--text", "red", "--mode", "keyword")
    assert proc.returncode == 2 and "is empty" in proc.stderr


def test_common_words_follow_writes(tmp_path):
    """Which words are too common to rank is remembered per database state: a write that makes a
    word common (or rare again) changes the ranking at once."""
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


def test_eval_retrieval_on_held_out_queries(coll, tmp_path):
    """`ravl eval retrieval --queries` scores held-out text queries through search, every mode."""
    from ravl.eval.heldout import evaluate_heldout, read_heldout

    root = coll.path.parent / "src"
    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"query": "zebra", "relevant": ["green1.png", "red1.png"]}\n'
                     '{"query": "black", "relevant": ["black1.png"]}\n')
    result = evaluate_heldout(coll, read_heldout(qfile, root), ks=(1, 5))
    # only the keyword index knows zebras; only the (colour) vectors know that the night sky is black
    assert result["keyword"]["recall"]["R@1"] == 0.5 and result["keyword"]["n_not_found"] == 1
    assert result["vector"]["recall"]["R@1"] == 0.5
    assert set(result) == {"n_queries", "relevant_missing", "vector", "keyword", "hybrid", "auto"}
    with pytest.raises(Exception, match="none of the relevant images"):
        evaluate_heldout(coll, read_heldout(qfile, tmp_path))
