"""The quality suite's rule on the Tux Paint stamps (benchmarks/quality.py, without the tuned
collection and the npm emoji): on every dataset the default mode's R@1 and R@10 reach the better
of vector and keyword alone, minus 0.5."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import STAMPS_DIR

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not STAMPS_DIR.exists(), reason="needs Debian's tuxpaint-stamps-default")]


def test_default_mode_never_loses_to_its_parts(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import quality

    rc = quality.main(["--out", str(tmp_path), "--no-tune", "--no-ann", "--plot", "", "--data", str(tmp_path / "none")])
    result = json.loads((tmp_path / "quality.json").read_text())
    assert rc == 0 and result["rule_failures"] == [], result["rule_failures"]
    table = result["table"]
    assert set(table) == {"stamps-half", "stamps-nocap", "typed-half", "typed-nocap"}
    # hybrid earns its place where captions exist: typed queries gain over the vector ranking
    assert table["typed-half"]["auto"]["R@10"] > table["typed-half"]["vector"]["R@10"] + 5
    # the collection calibrated itself on its own captioned pairs
    assert result["calibrations"]["stamps-half.ravl"]["source"] == "collection"
    assert "| stamps-half | 256 |" in capsys.readouterr().out
