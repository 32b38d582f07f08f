"""The npm emoji-datasource reader: names and CLDR keywords as captions, one art style per package."""
from __future__ import annotations

import json

import pytest

from conftest import make_image
from ravl.errors import SourceError
from ravl.ingest.emoji import read_emoji_datasource
from ravl.ingest.sources import read_source


def _package(root, style="google"):
    pkg = root / f"emoji-datasource-{style}"
    entries = [{"name": "GRINNING FACE", "unified": "1F600", "image": "1f600.png", f"has_img_{style}": True},
               {"name": "Egypt Flag", "unified": "1F1EA-1F1EC", "image": "1f1ea-1f1ec.png", f"has_img_{style}": True},
               {"name": "NO IMAGE", "unified": "1F601", "image": "1f601.png", f"has_img_{style}": False}]
    (pkg / "img" / style / "64").mkdir(parents=True)
    (pkg / "emoji.json").write_text(json.dumps(entries))
    for e in entries[:2]:
        make_image(pkg / "img" / style / "64" / e["image"], (200, 180, 0))
    return pkg


def test_reads_names_keywords_and_locales(tmp_path):
    pkg = _package(tmp_path)
    cldr = tmp_path / "cldr-annotations-full" / "annotations"
    for loc, ann in {"en": {"😀": {"default": ["face", "grin"], "tts": ["grinning face"]}},
                     "de": {"😀": {"default": ["gesicht"], "tts": ["grinsendes Gesicht"]}}}.items():
        (cldr / loc).mkdir(parents=True)
        (cldr / loc / "annotations.json").write_text(json.dumps({"annotations": {"annotations": ann}}))
    records = read_source(pkg)
    assert [r.captions for r in records] == [["grinning face", "face, grin"], ["egypt flag"]]
    assert records[0].metadata["style"] == "google" and records[0].metadata["emoji"] == "😀"
    de = read_emoji_datasource(pkg, locales=("de",))
    assert de[0].metadata["names"] == {"de": "grinsendes Gesicht"} and de[1].metadata["names"] == {}


def test_bad_package_is_a_source_error(tmp_path):
    pkg = _package(tmp_path)
    (pkg / "img" / "twitter" / "64").mkdir(parents=True)
    with pytest.raises(SourceError, match="one art style"):
        read_source(pkg)
    (pkg / "emoji.json").write_text("{not json")
    with pytest.raises(SourceError, match="cannot read the emoji list"):
        read_source(pkg)
