"""Issue 22 item 2: a sidecar's captions are replaced (not appended) when it changes, and Tux
Paint's ``LOCALE.utf8=`` lines are captions in that language, indexed only for the collection's
caption languages (English by default, ``--caption-langs``)."""
from __future__ import annotations

import shutil

import pytest

from conftest import STAMPS_DIR, make_image
from ravl.cli.main import main
from ravl.collection import open_collection
from ravl.ingest.sidecar import language, parse_langs, parse_sidecar


def captions(coll_dir) -> dict[str, str]:
    with open_collection(coll_dir, readonly=True) as c:
        return {text: src for by_item in c.caption_sources().values() for text, src in by_item.items()}


def test_parse_sidecar_lines():
    text = "A lemon slice.\n\nvi.utf8=Chanh bị cắt ra.\nen_GB.utf8=A lemon slice.\nsr@latin.utf8=Limun\nx = y\n"
    assert parse_sidecar(text) == [(None, "A lemon slice."), ("vi", "Chanh bị cắt ra."), ("en_GB", "A lemon slice."),
                                   ("sr@latin", "Limun"), (None, "x = y")]
    assert [language(x) for x in ("en_GB", "sr@latin", "pt-BR", "VI")] == ["en", "sr", "pt", "vi"]
    assert parse_langs("en, fr_FR,en") == ("en", "fr") and parse_langs(None) == ("en",)


def test_edited_sidecar_replaces_its_captions(tmp_path, colour_spec, capsys):
    photos, coll = tmp_path / "photos", tmp_path / "c"
    make_image(photos / "a.png", (200, 10, 10))
    (photos / "a.txt").write_text("a red square\na red box\n")
    assert main(["index", str(photos), "-c", str(coll), "--encoder", colour_spec]) == 0
    assert captions(coll) == {"a red square": "sidecar", "a red box": "sidecar"}
    (photos / "a.txt").write_text("a crimson square\na red box\n")
    assert main(["index", str(photos), "-c", str(coll)]) == 0
    assert "1 captions added, 1 removed" in capsys.readouterr().out
    assert captions(coll) == {"a crimson square": "sidecar", "a red box": "sidecar"}
    with open_collection(coll, readonly=True) as c:
        assert c.search_text(["square"], target="captions", k=5, mode="keyword")[0][0].caption == "a crimson square"
        assert [h.caption for h in c.search_text(["square"], target="captions", k=5, mode="keyword")[0]] == \
            ["a crimson square"]  # the old line is gone from the keyword index too
    (photos / "a.txt").unlink()
    assert main(["index", str(photos), "-c", str(coll)]) == 0
    assert captions(coll) == {}


def test_captions_from_other_sources_stay(tmp_path, colour_spec):
    photos, coll = tmp_path / "photos", tmp_path / "c"
    make_image(photos / "a.png", (200, 10, 10))
    (photos / "a.txt").write_text("old line\n")
    assert main(["index", str(photos), "-c", str(coll), "--encoder", colour_spec]) == 0
    with open_collection(coll, create=True) as c:
        item = c.item_by_uri(str((photos / "a.png").resolve()))
        vec = c.base_encoder.encode_texts(["STOP"])
        c.replace_captions("ocr", [(item.id, [("STOP", vec[0])], item.metadata)])
    (photos / "a.txt").write_text("new line\n")
    assert main(["index", str(photos), "-c", str(coll)]) == 0
    assert captions(coll) == {"new line": "sidecar", "STOP": "ocr"}


@pytest.mark.skipif(not STAMPS_DIR.is_dir(), reason="tuxpaint-stamps-default is not installed")
def test_tux_paint_sidecars_index_only_the_collection_languages(tmp_path, colour_spec, capsys):
    src = STAMPS_DIR / "food" / "fruit" / "cartoon"
    photos = tmp_path / "stamps"
    photos.mkdir()
    for name in ("lemon_slice.png", "lemon_slice.txt"):
        shutil.copy(src / name, photos / name)
    lines = parse_sidecar((photos / "lemon_slice.txt").read_text())
    english = next(text for locale, text in lines if locale is None)
    vietnamese = next(text for locale, text in lines if locale == "vi")
    assert len(lines) > 20  # one line per language
    coll = tmp_path / "c"
    assert main(["index", str(photos), "-c", str(coll), "--encoder", colour_spec]) == 0
    stored = captions(coll)
    assert english in stored and vietnamese not in stored
    assert all(src == "sidecar" or src.startswith("sidecar:en") for src in stored.values())
    assert not any("utf8=" in text for text in stored)
    with open_collection(coll, readonly=True) as c:
        assert c.search_text(["cat"], k=5, mode="keyword")[0] == []  # "cắt" (cut) is not indexed
    assert main(["index", str(photos), "-c", str(coll), "--caption-langs", "en,vi"]) == 0
    stored = captions(coll)
    assert stored[vietnamese] == "sidecar:vi" and english in stored
    assert main(["index", str(photos), "-c", str(coll)]) == 0  # the recorded languages hold
    assert vietnamese in captions(coll)
    assert main(["index", str(photos), "-c", str(coll), "--caption-langs", "en"]) == 0
    assert vietnamese not in captions(coll)
