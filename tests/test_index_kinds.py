"""Every index kind (flat, HNSW, IVF-PQ) through a real collection: same answers as exact search,
damaged or foreign cache files never used, writes caught up incrementally, reindex/info/search CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import make_image
from ravl.cli.main import main
from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources

KINDS = ["flat", "hnsw", "ivfpq"]


def _photos(root, n, seed=0, prefix="img"):
    rng = np.random.default_rng(seed)
    for i in range(n):
        make_image(root / f"{prefix}{i:03d}.png", tuple(int(v) for v in rng.integers(0, 256, 3)))
        (root / f"{prefix}{i:03d}.txt").write_text(f"{prefix} {i}\n")
    return root


def _exact(coll, queries, k, which="emb"):
    ids, vecs = coll.db.item_vectors(which=which)
    scores = queries @ vecs.T
    return [[int(ids[j]) for j in np.argsort(-row, kind="stable")[:k]] for row in scores]


def _queries(seed=1, n=12):
    q = np.random.default_rng(seed).random((n, 4)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _ids(hits):
    return [[h.id for h in row] for row in hits]


@pytest.fixture
def coll(tmp_path, colour_spec):
    c = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    index_sources(c, [_photos(tmp_path / "p", 60)])
    yield c
    c.close()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_answers_like_exact_search(coll, kind):
    facts = coll.reindex(kind)
    assert {f["kind"] for f in facts.values()} == {kind}
    assert facts["images"]["count"] == 60 and facts["captions"]["count"] == 60
    assert facts["images"]["recall_at_10"] >= 0.95 and facts["images"]["build_seconds"] >= 0
    q = _queries()
    assert _ids(coll.search_vectors(q, index="images", k=5)) == _exact(coll, q, 5)
    hits = coll.search_vectors(q, index="images", k=5, ef_search=4, nprobe=1)
    assert all(h.score <= 1.0001 for row in hits for h in row)
    assert coll.info()["indexes"]["features"]["kind"] == kind
    assert coll.info()["index"] == {"kind": kind, "memory_budget": None}


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_or_swapped_index_files_are_rebuilt_never_used(tmp_path, coll, kind):
    coll.reindex(kind)
    q = _queries()
    want = _ids(coll.search_vectors(q, index="images", k=5))
    path = coll.path
    coll.close()
    data = (path / "index" / "images.idx").read_bytes()
    middle = len(data) // 2
    (path / "index" / "images.idx").write_bytes(data[:middle] + bytes(64) + data[middle + 64:])
    feats = path / "index" / "features.idx"
    feats.write_bytes(feats.read_bytes()[:100])
    shutil.copy(path / "index" / "captions.idx", path / "index" / "captions.bak")
    with open_collection(path) as again:
        assert _ids(again.search_vectors(q, index="images", k=5)) == want
        again.refresh_indexes()
        assert again.index_updates == {"images": "rebuilt", "features": "rebuilt", "captions": "cached"}
    # a cache file from another state of the same collection (swapped in with its sidecar's checksum kept)
    (path / "index" / "images.idx").write_bytes((path / "index" / "captions.bak").read_bytes())
    with open_collection(path) as again:
        assert _ids(again.search_vectors(q, index="images", k=5)) == want
        assert again.index_updates["images"] == "rebuilt"


@pytest.mark.parametrize("kind", KINDS)
def test_replaced_database_never_uses_the_old_caches(tmp_path, colour_spec, kind):
    path = tmp_path / "c"
    with open_collection(path, encoder=colour_spec, create=True) as a:
        a.set_index_config(kind)
        index_sources(a, [_photos(tmp_path / "a", 40, seed=5, prefix="a")])
    for f in path.glob("ravl.sqlite*"):
        f.unlink()
    with open_collection(path, encoder=colour_spec, create=True) as b:
        b.set_index_config(kind)
        index_sources(b, [_photos(tmp_path / "b", 40, seed=6, prefix="b")])
        q = _queries()
        hits = b.search_vectors(q, index="images", k=5)
        assert all("/b/" in h.uri for row in hits for h in row)
        assert _ids(hits) == _exact(b, q, 5)


@pytest.mark.parametrize("kind", KINDS)
def test_writes_and_deletes_are_caught_up_not_rebuilt(tmp_path, coll, kind):
    coll.reindex(kind)
    index_sources(coll, [_photos(tmp_path / "more", 12, seed=9, prefix="more")])
    assert coll.index_updates == dict.fromkeys(("images", "features", "captions"), "caught-up")
    q = _queries()
    assert _ids(coll.search_vectors(q, index="images", k=5)) == _exact(coll, q, 5)
    gone = [row[0] for row in _exact(coll, q[:3], 1)]
    coll.delete(gone)
    assert not {h.id for row in coll.search_vectors(q, index="images", k=10) for h in row} & set(gone)
    assert coll.index_updates["images"] == "caught-up"
    # another process's view: the cache on disk is stale; it is caught up from the rows it lacks
    coll.delete([_exact(coll, q[3:4], 1)[0][0]])
    with open_collection(coll.path, readonly=True) as reader:
        assert _ids(reader.search_vectors(q, index="images", k=5)) == _exact(reader, q, 5)
        assert reader.index_updates["images"] == "caught-up"
    coll.refresh_indexes()
    assert coll.db.conn.execute("SELECT COUNT(*) FROM vector_changes").fetchone()[0] == 0


def test_a_cache_older_than_the_change_log_is_rebuilt(tmp_path, coll):
    old = {f.name: f.read_bytes() for f in (coll.path / "index").iterdir()}
    index_sources(coll, [_photos(tmp_path / "more", 5, seed=3, prefix="more")])  # log pruned after refresh
    for name, data in old.items():
        (coll.path / "index" / name).write_bytes(data)
    with open_collection(coll.path) as again:
        q = _queries()
        assert _ids(again.search_vectors(q, index="images", k=5)) == _exact(again, q, 5)
        assert again.index_updates["images"] == "rebuilt"


def test_ivf_is_retrained_after_fourfold_growth(tmp_path, colour_spec):
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as c:
        c.set_index_config("ivfpq")
        index_sources(c, [_photos(tmp_path / "a", 20, prefix="a")])
        assert c.info()["indexes"]["images"]["count"] == 20
        index_sources(c, [_photos(tmp_path / "b", 30, seed=2, prefix="b")])
        assert c.index_updates["images"] == "caught-up"
        index_sources(c, [_photos(tmp_path / "d", 40, seed=3, prefix="d")])
        assert c.index_updates["images"] == "rebuilt"  # 90 > 4 x 20


def test_reindex_info_and_search_cli(tmp_path, coll, capsys):
    path = str(coll.path)
    coll.close()
    assert main(["reindex", "-c", path, "--index", "hnsw", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["index"]["kind"] == "hnsw" and out["indexes"]["images"]["kind"] == "hnsw"
    assert main(["info", "-c", path]) == 0
    assert "index images: hnsw (HNSW32,Flat) over 60 vectors" in capsys.readouterr().out
    assert main(["search", "-c", path, "--text", "red", "--ef-search", "8", "--k", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["search", "-c", path, "--text", "red", "--nprobe", "0"]) == 2
    assert "nprobe must be an integer between 1 and 65536" in capsys.readouterr().err
    assert main(["reindex", "-c", path, "--index", "flat", "--memory-budget", "100B"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "too small" in err and "needs" in err
    assert main(["reindex", "-c", path, "--memory-budget", "lots"]) == 2
    assert "write it like 2GB" in capsys.readouterr().err
    with open_collection(path) as c:
        assert c.index_config() == {"kind": "hnsw", "memory_budget": None}  # failed reindex changed nothing


def test_docs_scale_options_table_matches_argparse():
    import re
    from pathlib import Path

    from ravl.cli.main import build_parser

    text = (Path(__file__).resolve().parents[1] / "docs" / "scale.md").read_text()
    rows = re.findall(r"^\| `ravl (\w+)` \| `(--[\w-]+)` \|", text, flags=re.M)
    assert len(rows) >= 10
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command, option in rows:
        options = {o for a in sub.choices[command]._actions for o in a.option_strings}
        assert option in options, f"docs/scale.md lists {option} for ravl {command}"
