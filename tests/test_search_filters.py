"""Search filters (photo date, folder, place, camera) apply before top-k in every path: text
(vector, keyword, hybrid), image similarity and image->captions; exact over the allowed items or
by deepening an index's candidate list; results sorted by date on request; the CLI's options."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ravl.collection import filtered, open_collection
from ravl.errors import ConfigError
from ravl.filters import Filters
from ravl.ingest.pipeline import index_sources
from ravl.request import SearchRequest, Term
from test_photos import LISBON, PORTO, photo

RED = (220, 20, 20)


@pytest.fixture
def coll(tmp_path, colour_spec):
    root = tmp_path / "photos"
    # twelve red photos: six from 2019 in Lisbon, six from 2021 in Porto; and two blue ones
    for i in range(6):
        photo(root / "2019" / f"red{i}.jpg", (220 - i, 20, 20), taken=f"2019:0{i + 1}:01 10:00:00", gps=LISBON,
              make="Canon", model="Canon EOS 5D")
        photo(root / "2021" / f"red{i}.jpg", (200 - i, 30, 30), taken=f"2021:0{i + 1}:01 10:00:00", gps=PORTO,
              make="NIKON CORPORATION", model="NIKON D750")
    for i in range(2):
        photo(root / "2021" / f"blue{i}.jpg", (20, 20, 220), taken="2021:08:01 10:00:00")
        (root / "2021" / f"blue{i}.txt").write_text("a red sign on a blue wall\n")
    (root / "2019" / "red0.txt").write_text("a red sign\n")
    c = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    index_sources(c, [root])
    c.root = root
    yield c
    c.close()


def _names(hits):
    return [h.uri.split("/photos/", 1)[1] for h in hits]


def test_filters_apply_before_top_k_in_every_path(coll):
    y2019 = Filters.parse(after="2019", before="2019")
    hits = coll.search(SearchRequest.of_text("red", k=5, filters=y2019, mode="vector"))
    assert len(hits) == 5 and all(n.startswith("2019/") for n in _names(hits))
    # hybrid: the keyword matches of other years are left out too
    hybrid = coll.search(SearchRequest.of_text("red sign", k=10, filters=y2019))
    assert _names(hybrid)[0] == "2019/red0.jpg" and all(n.startswith("2019/") for n in _names(hybrid))
    keyword = coll.search(SearchRequest.of_text("sign", k=10, mode="keyword", filters=Filters.parse(after="2021")))
    assert sorted(_names(keyword)) == ["2021/blue0.jpg", "2021/blue1.jpg"]
    near = Filters.parse(near=f"{PORTO[0]},{PORTO[1]},10")
    assert all(n.startswith("2021/red") for n in _names(coll.search(SearchRequest.of_text("red", k=10, filters=near))))
    canon = Filters.parse(camera="canon")
    red0 = coll.search(SearchRequest.of_text("red", k=1, mode="vector"))[0].id
    similar = coll.search(SearchRequest((Term("item", red0),), k=8, filters=canon), exclude_items=(red0,))
    assert len(similar) == 5 and all(n.startswith("2019/") for n in _names(similar))
    caps = coll.search(SearchRequest.of_text("sign", k=5, target="captions", filters=Filters.parse(before="2019")))
    assert [c.caption for c in caps] == ["a red sign"]
    folder = Filters.parse(folder=str(coll.root / "2021"))
    assert len(coll.search(SearchRequest.of_text("red", k=20, filters=folder))) == 8
    with pytest.raises(ConfigError):
        coll.search(SearchRequest.of_text("red", filters="2019"))


def test_deepening_an_index_still_finds_k_allowed_hits(coll, monkeypatch):
    """Above the exact limit the index is asked for deeper lists until k allowed hits are found."""
    monkeypatch.setattr(filtered, "EXACT_FILTER_LIMIT", 1)
    coll.reindex("hnsw")
    y2021 = Filters.parse(after="2021")
    hits = coll.search(SearchRequest.of_text("red", k=7, mode="vector", filters=y2021))
    assert len(hits) == 7 and all(n.startswith("2021/") for n in _names(hits))
    assert len(coll.search(SearchRequest.of_text("red", k=50, mode="vector", filters=y2021))) == 8  # all there are
    empty = Filters.parse(after="2030")
    assert coll.search(SearchRequest.of_text("red", k=5, filters=empty)) == []


def test_sort_by_date_newest_first(coll):
    hits = coll.search(SearchRequest.of_text("red", k=6, mode="vector", sort="date"))
    names = _names(hits)
    dates = coll.item_dates([h.id for h in hits])
    assert [dates[h.id] for h in hits] == sorted(dates.values(), reverse=True) and len(names) == 6
    by_score = coll.search(SearchRequest.of_text("red", k=6, mode="vector"))
    assert {h.id for h in hits} == {h.id for h in by_score}  # the same top 6, another order


def test_cli_filter_options(coll):
    proc = subprocess.run([sys.executable, "-m", "ravl.cli.main", "search", "-c", str(coll.path), "--text", "sign",
                           "--mode", "keyword", "--after", "2021-01", "--sort", "date", "--json"],
                          capture_output=True, text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert sorted(_names_json(json.loads(proc.stdout))) == ["2021/blue0.jpg", "2021/blue1.jpg"]
    bad = subprocess.run([sys.executable, "-m", "ravl.cli.main", "search", "-c", str(coll.path), "--text", "sign",
                          "--mode", "keyword", "--near", "91,0,5"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "latitude" in bad.stderr


def _names_json(answer):
    return [r["uri"].split("/photos/", 1)[1] for r in answer["results"]]
