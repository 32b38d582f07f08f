"""Offline translation (ravl.generate.translate) and OCR language hints: language names and codes,
the detector, the real Apertium engine with Debian's pair packages, route choice, `ravl read`'s exit
status and the Tesseract pack hint (real Tesseract on rendered signs). Apertium and the packs come
from scripts/setup-system.sh; tests that need them skip with the package to install."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from ravl import registry
from ravl.generate.translate import TranslationUnavailableError, detect_language, find_language, plan_route
from ravl.generate.translate.apertium import installed_modes
from ravl.ocr import installed_packs, tesseract_lang

needs_pair = pytest.mark.skipif(not (shutil.which("apertium") and ("eng", "spa") in installed_modes()),
                                reason="apertium eng-spa missing: apt-get install apertium apertium-eng-spa")
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def _cjk_font() -> str | None:
    if not shutil.which("fc-list"):
        return None
    out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True).stdout
    files = sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
    return files[0] if files else None


def sign(path: Path, text: str, font: str | None = None) -> Path:
    face = ImageFont.truetype(font or str(FONT), 48) if (font or FONT.exists()) else ImageFont.load_default(size=48)
    image = Image.new("RGB", (80 + 40 * len(text), 120), "white")
    ImageDraw.Draw(image).text((30, 30), text, font=face, fill="black")
    image.save(path)
    return path


def ravl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ravl.cli.main", *args], capture_output=True, text=True, timeout=180)


def test_language_names_codes_and_debian_packages():
    zh = find_language("zh")
    assert zh is find_language("Chinese") is find_language("zho") is find_language("zh-CN")
    assert zh.tesseract[0] == "chi_sim" and zh.debian_packages[0] == "tesseract-ocr-chi-sim"
    assert find_language("español").code == "spa" and find_language("fr").code == "fra"
    assert find_language("klingon") is None
    # --lang accepts packs, ISO codes and names; unknown strings pass to Tesseract unchanged
    assert tesseract_lang("zh") == "chi_sim" and tesseract_lang("German") == "deu"
    assert tesseract_lang("fra+en") == "fra+eng" and tesseract_lang("chi-sim") == "chi-sim"
    assert tesseract_lang("chi_tra") == "chi_tra" and tesseract_lang("jpn_vert") == "jpn_vert"


def test_detector_by_script_and_function_words():
    assert detect_language("禁止吸烟")[0].code == "zho"
    assert detect_language("出口はこちら")[0].code == "jpn"
    assert detect_language("Salida de emergencia, prohibido fumar")[0].code == "spa"
    assert detect_language("Défense de fumer dans la gare")[0].code == "fra"
    assert detect_language("1234") is None


@needs_pair
def test_apertium_translates_installed_pairs_and_lists_them():
    from ravl.generate.translate import load_translator

    apertium = load_translator("apertium")
    assert ("eng", "spa") in apertium.pairs()
    assert apertium.translate(["The dog is black", "No smoking"], "eng", "spa") == ["El perro es negro", "No fumar"]
    row = next(r for r in registry.describe("translators") if r["family"] == "apertium")
    assert row["usable"] and "eng-spa" in row["detail"] and {o["name"] for o in row["options"]} >= {"unknown"}
    assert "installed pairs: " in ravl("backends").stdout
    route = plan_route(find_language("en"), "Spanish")
    assert (route.kind, route.source, route.target, route.by) == ("apertium", "eng", "spa", "apertium")
    assert plan_route(find_language("es"), "es").kind == "same"


def test_no_route_names_the_installed_pairs():
    with pytest.raises(TranslationUnavailableError, match="Chinese.*installed Apertium pairs.*--generator"):
        plan_route(find_language("zh"), "English")


@needs_pair
def test_cli_read_translates_offline_and_says_how(tmp_path):
    proc = ravl("read", str(sign(tmp_path / "en.png", "The dog is black")), "--translate-to", "es")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().split("\t")[-2:] == ["The dog is black", "El perro es negro"]
    assert "translated with apertium (eng->spa" in proc.stderr
    out = json.loads(ravl("read", str(tmp_path / "en.png"), "--translate-to", "Spanish", "--json").stdout)
    assert out["translation"]["route"] == "apertium" and out["translation"]["source_from"] == "detected"


def test_cli_read_exits_2_when_translation_is_impossible(tmp_path):
    pytest.importorskip("pytesseract")
    if not shutil.which("tesseract"):
        pytest.skip("tesseract is not installed")
    proc = ravl("read", str(sign(tmp_path / "en.png", "EXIT")), "--translate-to", "Japanese", "--from", "en")
    assert proc.returncode == 2
    assert "installed Apertium pairs" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_read_hints_which_lang_reads_a_sign(tmp_path):
    pytest.importorskip("pytesseract")
    font = _cjk_font()
    if font is None or "chi_sim" not in installed_packs():
        pytest.skip("needs a CJK font and tesseract-ocr-chi-sim (scripts/setup-system.sh)")
    path = sign(tmp_path / "zh.png", "禁止吸烟", font)
    proc = ravl("read", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["lines"] == [] and out["hint"]["lang"] == "chi_sim" and out["hint"]["text"] == "禁止吸烟"
    proc = ravl("read", str(path))
    assert "--lang chi_sim reads 1 line(s): '禁止吸烟'" in proc.stderr
    assert ravl("read", str(path), "--lang", "zh").stdout.strip().endswith("禁止吸烟")
