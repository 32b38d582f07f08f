"""The generated reference docs match the code: docs/cli.md is what argparse defines and
docs/backends.md is what the backends declare (regenerate both with `python -m ravl.cli.doc`)."""
from __future__ import annotations

from pathlib import Path

from ravl.cli import doc

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_generated_docs_are_up_to_date():
    for name, text in doc.outputs().items():
        on_disk = (DOCS / name).read_text(encoding="utf-8")
        assert on_disk == text, f"docs/{name} differs from the code: run python -m ravl.cli.doc"


def test_every_command_and_option_is_documented():
    from ravl.cli.main import build_parser

    text = doc.render()
    names = [name for action in build_parser()._actions for name in (getattr(action, "choices", None) or {})]
    assert len(names) >= 12 and len(names) == text.count("\n## `ravl ")
    for name in names:
        assert f"## `ravl {name}`" in text
    assert "`--log-level {critical,error,warning,info,debug}` | `info`" in text  # serve's, once missing from the README


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    (tmp_path / "cli.md").write_text("old\n")
    assert doc.main(["--check", "--docs", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert doc.main(["--docs", str(tmp_path)]) == 0
    assert (tmp_path / "cli.md").read_text() == doc.render()
    assert doc.main(["--check", "--docs", str(tmp_path)]) == 0
