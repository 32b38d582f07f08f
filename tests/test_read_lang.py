"""``ravl read --lang`` for Chinese and Japanese: signs rendered with an installed CJK font, read
by the real Tesseract with Debian's language data (scripts/setup-system.sh installs both)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest


def _cjk_font() -> str | None:
    if not shutil.which("fc-list"):
        return None
    out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True).stdout
    files = sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
    return files[0] if files else None


def _tesseract_langs() -> set[str]:
    if not shutil.which("tesseract"):
        return set()
    out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True)
    return {line.strip() for line in (out.stdout + out.stderr).splitlines()[1:]}


@pytest.mark.parametrize("text, lang", [("欢迎光临北京饭店", "chi_sim"), ("禁止停车", "chi_sim"), ("出口はこちら", "jpn")])
def test_read_chinese_and_japanese(tmp_path, text, lang):
    pytest.importorskip("pytesseract")
    font = _cjk_font()
    if font is None:
        pytest.skip("no CJK font installed (scripts/setup-system.sh installs fonts-wqy-microhei)")
    if lang not in _tesseract_langs():
        pytest.skip(f"Tesseract lacks {lang} (scripts/setup-system.sh installs tesseract-ocr-{lang.replace('_', '-')})")
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (60 + 52 * len(text), 110), "white")
    ImageDraw.Draw(image).text((30, 25), text, font=ImageFont.truetype(font, 48), fill="black")
    image.save(tmp_path / "sign.png")
    proc = subprocess.run([sys.executable, "-m", "ravl.cli.main", "read", str(tmp_path / "sign.png"), "--lang", lang,
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = json.loads(proc.stdout)["lines"]
    assert [line["text"] for line in lines] == [text]


def test_read_unknown_language_names_the_package(tmp_path):
    pytest.importorskip("pytesseract")
    if not shutil.which("tesseract"):
        pytest.skip("tesseract is not installed")
    from PIL import Image

    Image.new("RGB", (80, 40), "white").save(tmp_path / "blank.png")
    proc = subprocess.run([sys.executable, "-m", "ravl.cli.main", "read", str(tmp_path / "blank.png"), "--lang",
                           "chi-sim"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "apt-get install tesseract-ocr-chi-sim" in proc.stderr and "chi_sim" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
