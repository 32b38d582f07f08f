"""benchmarks/stamps_qa.py on a small set: the real stamps collection, the bundled SmolLM2 and the
consensus pick, on stamp questions (leave-one-out) and on images outside the collection. What the
user is shown by default is never an unsupported answer."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "stamps_qa.py"


@pytest.mark.slow
def test_default_answers_are_grounded_or_abstain(tmp_path):
    from ravl.demo import write_stamps_manifest
    from ravl.generate.smollm2 import is_installed

    manifest = tmp_path / "stamps.jsonl"
    if not write_stamps_manifest(manifest):
        pytest.skip("Tux Paint stamps not installed (apt-get install tuxpaint-stamps-default)")
    if not is_installed():
        pytest.skip("the bundled SmolLM2 is not installed")
    spec = importlib.util.spec_from_file_location("stamps_qa", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from ravl.collection import open_collection
    from ravl.ingest.pipeline import index_sources

    outside = [q for q in bench.load_questions(bench.OUTSIDE) if q["image"].startswith(("shape:", "skimage:chelsea"))]
    with open_collection(tmp_path / "stamps", create=True) as coll:
        index_sources(coll, [str(manifest)])
        stamps = bench.run(coll, bench.load_questions()[:3], ["consensus", "smollm2"])
        away = bench.run(coll, outside[:5], ["consensus", "smollm2"], outside=True)
    for results in (stamps, away):
        lm, pick = results["smollm2"], results["consensus"]
        assert lm["unsupported"] == 0.0  # grounded or abstaining, never an answer without support
        assert abs(lm["grounded"] + lm["unsupported"] + lm["abstained"] - 1.0) < 1e-9
        assert pick["abstained"] == 0.0  # the pick always names something
        for row in lm["rows"]:
            assert row["abstained"] or row["grounded"]
