"""ravl export / ravl import: Parquet round trip and clip-retrieval output, through the real CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.errors import InputError
from ravl.ingest.embeddings import export_collection, import_embeddings
from ravl.ingest.pipeline import index_sources

COLOURS = {"red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


@pytest.fixture
def built(tmp_path, colour_spec):
    root = tmp_path / "photos"
    for name, rgb in COLOURS.items():
        make_image(root / f"{name}.png", rgb)
        (root / f"{name}.txt").write_text(f"a {name} square\n")
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    index_sources(coll, [root])
    return coll


def _all(coll):
    ids, emb = coll.item_vectors(which="emb")
    _, feat = coll.item_vectors(which="feat")
    items = coll.items(ids.tolist())
    return {items[i].uri: (e, f, items[i].captions) for i, e, f in zip(ids.tolist(), emb, feat)}


@pytest.mark.parametrize("chunk", [8192, 3])
def test_export_then_import_gives_the_same_collection(tmp_path, built, chunk, monkeypatch):
    from ravl.ingest import embeddings

    monkeypatch.setattr(embeddings, "CHUNK_ROWS", chunk)  # 3: record batches of 3 rows, then 1
    report = export_collection(built, tmp_path / "out")
    assert report.rows == 4 and report.captions == 4
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["encoder_spec"] == "testcolour" and manifest["dim"] == 4
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out" / manifest["files"][0])
    assert {"id", "uri", "captions", "metadata", "embedding", "features"} <= set(table.column_names)
    copy = open_collection(tmp_path / "copy", encoder="testcolour", create=True)
    got = import_embeddings(copy, tmp_path / "out")
    assert got.written == 4 and got.layout == "ravl"
    a, b = _all(built), _all(copy)
    assert a.keys() == b.keys()
    for uri in a:
        np.testing.assert_allclose(a[uri][0], b[uri][0], atol=1e-6)
        np.testing.assert_allclose(a[uri][1], b[uri][1], atol=1e-6)
        assert a[uri][2] == b[uri][2]
    assert copy.search_text(["red"], k=1)[0][0].uri.endswith("red.png")
    # importing again changes nothing and duplicates nothing
    import_embeddings(copy, tmp_path / "out")
    assert copy.counts() == {"images": 4, "captions": 4}


def test_import_refuses_vectors_of_another_encoder(tmp_path, built, monkeypatch):
    export_collection(built, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    manifest["fingerprint"] = "open_clip:ViT-B-32/x"
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="import into a new --collection"):
        import_embeddings(built, tmp_path / "out")


class _Clip:
    """The fake colour encoder with CLIP's shape: image features are the shared-space embedding."""

    @staticmethod
    def create(spec):
        import fakes
        from ravl.encoders.base import ImageVectors

        class ClipLike(fakes.ColourEncoder):
            feature_dim = 4

            def embed_pixels(self, pixels):
                emb = super().embed_pixels(pixels).embedding
                return ImageVectors(emb, emb)

        return ClipLike(spec)


def _clip_retrieval_output(folder, dim=4, text=True):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    for part, names in enumerate([["red", "green"], ["blue"]]):
        (folder / "img_emb").mkdir(parents=True, exist_ok=True)
        (folder / "metadata").mkdir(exist_ok=True)
        vecs = rng.standard_normal((len(names), dim)).astype(np.float16)
        np.save(folder / "img_emb" / f"img_emb_{part}.npy", vecs)
        pq.write_table(pa.table({"image_path": [f"/data/{n}.jpg" for n in names],
                                 "caption": [f"a {n} thing" for n in names], "width": [10] * len(names)}),
                       folder / "metadata" / f"metadata_{part}.parquet")
        if text:
            (folder / "text_emb").mkdir(exist_ok=True)
            np.save(folder / "text_emb" / f"text_emb_{part}.npy", rng.standard_normal((len(names), dim)))
    return folder


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ravl.cli.main", *map(str, args)], capture_output=True, text=True,
                          env=env)


def test_clip_retrieval_output_imports_with_declared_encoder(tmp_path):
    from ravl import registry

    registry.register("encoders", "testcliplike", _Clip.create)
    src = _clip_retrieval_output(tmp_path / "cr")
    coll = open_collection(tmp_path / "c", encoder="testcliplike", create=True)
    report = import_embeddings(coll, src)
    assert (report.layout, report.written, report.captions) == ("clip-retrieval", 3, 3)
    vecs = np.load(src / "img_emb" / "img_emb_1.npy").astype(np.float32)
    hit = coll.search_vectors(vecs / np.linalg.norm(vecs), index="images", k=1)[0][0]
    assert hit.uri == "/data/blue.jpg" and hit.score == pytest.approx(1.0, abs=1e-5)
    assert coll.item_by_uri("/data/red.jpg").metadata["width"] == 10
    text = np.load(src / "text_emb" / "text_emb_0.npy").astype(np.float32)
    cap = coll.search_vectors(text[:1] / np.linalg.norm(text[0]), index="captions", k=1)[0][0]
    assert cap.caption == "a red thing"


def test_cli_import_errors_are_one_line(tmp_path, built):
    src = _clip_retrieval_output(tmp_path / "cr", dim=8)
    out = _cli("import", src, "--collection", tmp_path / "new")
    assert out.returncode == 2 and "pass --encoder SPEC" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()
    out = _cli("import", tmp_path / "nothing-here", "--collection", tmp_path / "new")
    assert out.returncode == 2 and "neither a ravl export" in out.stderr


def test_dimension_mismatch_is_refused_before_writing(tmp_path, built):
    src = _clip_retrieval_output(tmp_path / "cr", dim=8)
    with pytest.raises(InputError, match=r"8-d vectors but encoder 'testcolour' makes 4-d"):
        import_embeddings(built, src)
    assert built.counts()["images"] == 4


def test_cli_export_and_import_round_trip(tmp_path, built):
    built.close()
    out = _cli("export", "--collection", tmp_path / "c", "--out", tmp_path / "x", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == 4
    again = _cli("export", "--collection", tmp_path / "c", "--out", tmp_path / "x")
    assert again.returncode == 2 and "not empty" in again.stderr


def test_clip_retrieval_import_streams_in_chunks(tmp_path, monkeypatch):
    """Chunks of 3 rows over files of 7 and 5 rows: every row lands once, aligned with its vectors,
    and a row without a path is reported at its place in its file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ravl import registry
    from ravl.ingest import embeddings

    registry.register("encoders", "testcliplike", _Clip.create)
    monkeypatch.setattr(embeddings, "CHUNK_ROWS", 3)
    src, rng = tmp_path / "cr", np.random.default_rng(1)
    (src / "img_emb").mkdir(parents=True)
    (src / "metadata").mkdir()
    (src / "text_emb").mkdir()
    all_vecs = {}
    for part, n in enumerate([7, 5]):
        vecs = rng.standard_normal((n, 4)).astype(np.float16)
        np.save(src / "img_emb" / f"img_emb_{part}.npy", vecs)
        np.save(src / "text_emb" / f"text_emb_{part}.npy", rng.standard_normal((n, 4)).astype(np.float16))
        paths = [None if (part, i) == (0, 4) else f"/d/{part}-{i}.jpg" for i in range(n)]
        pq.write_table(pa.table({"image_path": paths, "caption": [f"row {part} {i}" for i in range(n)]}),
                       src / "metadata" / f"metadata_{part}.parquet")
        all_vecs.update({p: v for p, v in zip(paths, vecs.astype(np.float32)) if p})
    coll = open_collection(tmp_path / "c", encoder="testcliplike", create=True)
    report = import_embeddings(coll, src)
    assert (report.rows, report.written, report.captions) == (12, 11, 11)
    assert report.skipped == [("metadata_0.parquet:4", "no image_path or url")]
    got = _all(coll)
    assert set(got) == set(all_vecs)
    for uri, vec in all_vecs.items():
        np.testing.assert_allclose(got[uri][0], vec / np.linalg.norm(vec), atol=1e-5)
    assert import_embeddings(coll, src).written == 11  # re-run: upserts, nothing duplicated
    assert coll.counts()["images"] == 11


def test_npy_rows_reads_slices_like_numpy(tmp_path):
    from ravl.ingest.embeddings import _NpyRows

    for dtype in (np.float16, np.float32):
        a = np.arange(70, dtype=dtype).reshape(10, 7)
        np.save(tmp_path / "a.npy", a)
        rows = _NpyRows(tmp_path / "a.npy")
        assert (len(rows), rows.shape, rows.ndim) == (10, (10, 7), 2)
        assert np.array_equal(rows.rows(3, 9), a[3:9]) and rows.rows(3, 9).dtype == dtype
    np.save(tmp_path / "f.npy", np.asfortranarray(np.arange(12.0).reshape(4, 3)))
    assert np.array_equal(_NpyRows(tmp_path / "f.npy").rows(1, 3), np.arange(12.0).reshape(4, 3)[1:3])
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(data[:-20])  # truncated: one line naming the file
    with pytest.raises(InputError, match="ends before row 10"):
        _NpyRows(tmp_path / "a.npy").rows(0, 10)
