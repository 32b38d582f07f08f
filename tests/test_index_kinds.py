"""Every index kind (flat, HNSW, IVF-PQ) through a real collection: the chosen kind is what the
caches hold, answers equal exact search, build facts are recorded and shown, a valid cache of
another kind is never used, per-query knobs, and the CLI (index/reindex/info/search)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import make_image
from ravl.cli.main import main
from ravl.collection import INDEX_KINDS, open_collection
from ravl.errors import ConfigError
from ravl.hits import Knobs
from ravl.ingest.pipeline import index_sources

KINDS = ["flat", "hnsw", "ivfpq"]


def _photos(root, n, seed=0, prefix="img"):
    rng = np.random.default_rng(seed)
    for i in range(n):
        make_image(root / f"{prefix}{i:03d}.png", tuple(int(v) for v in rng.integers(0, 256, 3)), size=(8, 8))
        (root / f"{prefix}{i:03d}.txt").write_text(f"{prefix} {i}\n")
    return root


def _queries(dim=4, seed=1, n=12):
    q = np.random.default_rng(seed).random((n, dim)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _exact(coll, queries, k, which="emb"):
    ids, vecs = coll.item_vectors(which=which)
    scores = queries @ vecs.T
    return [[int(ids[j]) for j in np.argsort(-row, kind="stable")[:k]] for row in scores]


def _ids(hits):
    return [[h.id for h in row] for row in hits]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _photos(tmp_path_factory.mktemp("p"), 40)


@pytest.fixture
def coll(tmp_path, photos, colour_spec):
    c = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    index_sources(c, [photos])
    yield c
    c.close()


def test_cli_kinds_match_the_collection_api():
    from ravl.cli.common import INDEX_KINDS as CLI_KINDS

    assert CLI_KINDS == INDEX_KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_answers_like_exact_search_and_records_its_facts(coll, kind):
    facts = coll.reindex(kind)
    assert {f["kind"] for f in facts.values()} == {kind}
    assert facts["images"]["count"] == 40 and facts["features"]["count"] == 40
    for f in facts.values():
        assert f["recall_at_10"] >= 0.95 and f["build_seconds"] >= 0 and f["bytes"] > 0
        assert f["generation"] == coll.generation()
    assert coll.info()["index"] == {"kind": kind, "memory_budget": None}
    assert coll.info()["indexes"] == facts
    q = _queries()
    assert _ids(coll.search_vectors(q, index="images", k=5)) == _exact(coll, q, 5)
    q6 = _queries(dim=6)
    assert _ids(coll.search_vectors(q6, index="features", k=5)) == _exact(coll, q6, 5, which="feat")
    for knobs in ({"ef_search": 1}, {"nprobe": 1}, {"ef_search": 512, "nprobe": 64}, {"nprobe": 1, "rerank": 1}):
        hits = coll.search_vectors(q, index="images", k=5, knobs=Knobs(**knobs))
        assert all(len(row) == 5 and h.score <= 1.0001 for row in hits for h in row)
    with pytest.raises(ConfigError, match="ef_search must be an integer between 1 and 65536"):
        coll.search_vectors(q, index="images", k=5, knobs=Knobs(ef_search=0))
    with pytest.raises(ConfigError, match="rerank must be an integer between 1 and 1000"):
        Knobs(rerank=5000)
    # the kind holds for later writes: built that way at the end of the next ingest
    index_sources(coll, [_photos(coll.path.parent / "more", 5, seed=7, prefix="more")])
    after = coll.index_facts()
    assert after["images"]["kind"] == kind and after["images"]["count"] == 45


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_a_valid_cache_of_another_kind_is_never_used(coll, kind):
    """Same database state, a correctly sealed file: but of the kind the collection no longer uses."""
    index_dir = coll.path / "index"
    flat_files = {p.name: p.read_bytes() for p in index_dir.iterdir() if not p.name.endswith(".tmp")}
    coll.reindex(kind)
    q = _queries()
    want = _ids(coll.search_vectors(q, index="images", k=5))
    path = coll.path
    coll.close()
    for name, data in flat_files.items():  # the flat caches and their seals, as they were
        (index_dir / name).write_bytes(data)
    with open_collection(path) as again:
        assert again.index_binding("images")["plan"]["kind"] == kind
        assert _ids(again.search_vectors(q, index="images", k=5)) == want
        assert type(again._index("images")).__name__ == "AnnIndex"


def test_ivfpq_with_too_few_vectors_searches_exactly_and_says_so(tmp_path, colour_spec):
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as c:
        c.set_index_config("ivfpq")
        index_sources(c, [_photos(tmp_path / "one", 1)])
        facts = c.index_facts()["images"]
        assert facts["kind"] == "flat"
        assert "fewer than 2 vectors" in facts["note"]
        assert len(c.search_vectors(_queries(n=1), index="images", k=5)[0]) == 1


def test_a_collection_that_outgrew_its_budget_gets_the_most_compact_index_and_a_warning(tmp_path, colour_spec):
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as c:
        c.set_index_config("auto", 1000)  # fits an empty collection
        index_sources(c, [_photos(tmp_path / "p", 30)])
        facts = c.index_facts()["images"]
        assert facts["kind"] == "ivfpq" and "over budget" in facts["over_budget"]
        q = _queries()
        assert _ids(c.search_vectors(q, index="images", k=5)) == _exact(c, q, 5)  # re-ranked exactly
        with pytest.raises(ConfigError, match="too small") as err:
            c.set_index_config("flat", "1KB")
        assert "needs about" in str(err.value)
        assert c.index_config() == {"kind": "auto", "memory_budget": 1000}  # refused: nothing changed
        c.set_index_config(memory_budget=0)
        assert c.index_config() == {"kind": "auto", "memory_budget": None}


def test_index_reindex_info_and_search_cli(tmp_path, photos, colour_spec, capsys):
    path = str(tmp_path / "c")
    assert main(["index", str(photos), "-c", path, "--encoder", colour_spec, "--index", "hnsw", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {f["kind"] for f in out["indexes"].values()} == {"hnsw"}
    assert main(["info", "-c", path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["index"] == {"kind": "hnsw", "memory_budget": None}
    images = info["indexes"]["images"]
    assert images["factory"] == "HNSW32,Flat" and images["params"]["M"] == 32 and images["count"] == 40
    assert images["recall_at_10"] >= 0.95 and images["search"]["ef_search"] >= 1 and images["bytes"] > 0
    assert main(["reindex", "-c", path, "--index", "ivfpq", "--memory-budget", "64MB"]) == 0
    text = capsys.readouterr().out
    assert "index ivfpq within 64.0 MiB" in text and "index images: ivfpq (IVF1,PQ1x" in text
    assert main(["info", "-c", path]) == 0
    text = capsys.readouterr().out
    assert "index: ivfpq within 64.0 MiB" in text and "recall@10 1.000" in text and "nprobe=1" in text
    assert main(["search", "-c", path, "--text", "red", "--nprobe", "1", "--ef-search", "8", "--rerank", "4",
                 "--k", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["search", "-c", path, "--text", "red", "--nprobe", "0"]) == 2
    assert "nprobe must be an integer between 1 and 65536" in capsys.readouterr().err
    assert main(["search", "-c", path, "--text", "red", "--rerank", "0"]) == 2
    assert "rerank must be an integer between 1 and 1000" in capsys.readouterr().err
    assert main(["reindex", "-c", path, "--index", "flat", "--memory-budget", "100B"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "too small" in err and "needs about" in err
    assert main(["reindex", "-c", path, "--memory-budget", "lots"]) == 2
    assert "write it like 2GB" in capsys.readouterr().err
    assert main(["reindex", "-c", path, "--memory-budget", "none"]) == 0
    capsys.readouterr()
    with open_collection(path) as c:
        assert c.index_config() == {"kind": "ivfpq", "memory_budget": None}  # failed runs changed nothing
    fresh = tmp_path / "never"
    assert main(["index", str(photos), "-c", str(fresh), "--encoder", colour_spec, "--memory-budget", "x"]) == 2
    assert not fresh.exists()  # a bad option fails before anything is created
    shutil.rmtree(tmp_path / "c" / "index")  # caches are derived: a reindex without options rebuilds them
    assert main(["reindex", "-c", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["index"]["kind"] == "ivfpq"


def test_docs_scale_options_table_matches_argparse():
    import re
    from pathlib import Path

    from ravl.cli.main import build_parser

    text = (Path(__file__).resolve().parents[1] / "docs" / "scale.md").read_text()
    rows = re.findall(r"^\| `ravl (\w+)` \| `(--[\w-]+)` \|", text, flags=re.M)
    assert len(rows) >= 6
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command, option in rows:
        options = {o for a in sub.choices[command]._actions for o in a.option_strings}
        assert option in options, f"docs/scale.md lists {option} for ravl {command}"


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_a_tuned_bridge_reaches_every_kind(coll, kind):
    """The images index holds (and IVF-PQ re-ranks with) the bridged vectors, like the flat one."""
    from ravl.encoders.bridge import Bridge

    rng = np.random.default_rng(1)
    bridge = Bridge("mlp", 0.5, False, {"W1": rng.normal(size=(6, 8)).astype(np.float32),
                                        "b1": np.zeros(8, np.float32),
                                        "W2": rng.normal(size=(8, 4)).astype(np.float32),
                                        "b2": np.zeros(4, np.float32)},
                    {"in_dim": 6, "out_dim": 4, "base_fingerprint": coll.fingerprint})
    coll.store_bridge(bridge)
    coll.set_index_config(kind)
    q = _queries()
    ids, vecs = coll.item_embeddings()
    exact = [[int(ids[j]) for j in np.argsort(-row, kind="stable")[:5]] for row in q @ vecs.T]
    hits = coll.search_vectors(q, index="images", k=5)
    assert _ids(hits) == exact
    assert type(coll._index("images")).__name__ == "AnnIndex"
    assert coll.index_binding("images")["bridge"]
