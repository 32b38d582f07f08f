"""Write docs/cli.md from the argparse definitions and docs/backends.md from the backends'
declared options, so the option tables cannot drift.

    python -m ravl.cli.doc            # rewrite both
    python -m ravl.cli.doc --check    # exit 1 when either differs (tests/test_cli_doc.py checks it too)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HEADER = """# Command reference

Generated from the command-line definitions by `python -m ravl.cli.doc`; do not edit by hand
(a test fails when this file and `ravl --help` differ). Every command prints data on stdout and
progress/logs on stderr; an error is one line on stderr (`ravl <command>: error: ...`) and exit
code 2.
"""


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, help) of each sub-command, in definition order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, sub, helps.get(name, "")) for name, sub in action.choices.items()]
    return []


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _row(action: argparse.Action) -> str | None:
    if isinstance(action, argparse._HelpAction | argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
        return None
    if action.option_strings:
        metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else "")
        if action.choices and not action.metavar:
            metavar = "{" + ",".join(map(str, action.choices)) + "}"
        names = ", ".join(f"`{o}{' ' + str(metavar) if metavar else ''}`" for o in action.option_strings)
    else:
        names = f"`{action.metavar or action.dest}`"
    default = action.default
    hidden = default is None or default is False or default == argparse.SUPPRESS or action.nargs == 0
    shown = "" if hidden else f"`{default}`"
    if action.required:
        shown = "(required)"
    return f"| {names} | {shown} | {_cell(action.help or '')} |"


def _section(prog: str, parser: argparse.ArgumentParser, summary: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{prog}`", ""]
    if summary:
        lines += [_cell(summary)[:1].upper() + _cell(summary)[1:] + ".", ""]
    if parser.description:
        lines += [_cell(parser.description), ""]
    rows = [r for r in (_row(a) for a in parser._actions) if r]
    if rows:
        lines += ["| argument | default | meaning |", "|---|---|---|", *rows, ""]
    for name, sub, help_text in _subparsers(parser):
        lines += _section(f"{prog} {name}", sub, help_text, level + 1)
    return lines


def render() -> str:
    from .main import build_parser

    parser = build_parser()
    lines = [HEADER]
    for name, sub, help_text in _subparsers(parser):
        lines += _section(f"ravl {name}", sub, help_text, 2)
    return "\n".join(lines).rstrip() + "\n"


BACKENDS_HEADER = """# Backend options

Generated from the options each backend declares (`ravl.specs.declare`) by `python -m ravl.cli.doc`;
do not edit by hand. Options go after the model name: `family:name?key=value&key2=value2`.
Options marked *runtime only* do not change the vectors, so a collection may be opened with other values;
every other encoder option is part of the fingerprint a collection checks. `ravl backends` lists
the same, plus installed plugins and whether each backend can run on this machine.
"""


def render_backends() -> str:
    """Option tables of ravl's own backends (plugins and this machine's state left out)."""
    from .. import registry

    lines = [BACKENDS_HEADER]
    for kind in registry.KINDS:
        lines += [f"## {kind.replace('_', ' ').capitalize()}", ""]
        for row in registry.describe(kind):
            if row["family"] not in registry._BUILTIN[kind]:
                continue
            lines += [f"### `{row['family']}`", ""] + ([_cell(row["summary"]), ""] if row["summary"] else [])
            if not row.get("declared"):
                lines += ["Its options are not declared yet (see its documentation).", ""]
                continue
            if not row["options"]:
                lines += ["No options.", ""]
                continue
            lines += ["| option | type | default | meaning |", "|---|---|---|---|"]
            for o in row["options"]:
                kind_text = " \\| ".join(o["choices"]) if o["choices"] else o["type"]
                value = int(o["default"]) if isinstance(o["default"], bool) else o["default"]
                default = "" if value is None else f"`{value}`"
                runtime = " (runtime only)" if kind == "encoders" and not o["fingerprint"] else ""
                lines.append(f"| `{o['name']}` | {kind_text} | {default} | {_cell(o['help'])}{runtime} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def docs_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "docs"


def outputs() -> dict[str, str]:
    """file name in docs/ -> its generated text."""
    return {"cli.md": render(), "backends.md": render_backends()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ravl.cli.doc", description="write docs/cli.md and docs/backends.md")
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs")
    ap.add_argument("--docs", type=Path, default=None, help="docs folder (default: the checkout's docs/)")
    args = ap.parse_args(argv)
    folder = args.docs or docs_dir()
    stale = []
    for name, text in outputs().items():
        path = folder / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        sys.stderr.write(f"out of date: {', '.join(stale)}; run python -m ravl.cli.doc\n")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
