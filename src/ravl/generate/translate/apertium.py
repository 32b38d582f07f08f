"""``apertium``: Debian's rule-based machine translation, offline, for the installed pairs.

Set-up (``scripts/setup-system.sh`` does it): ``apt-get install apertium apertium-eng-spa
apertium-eng-cat apertium-fr-es``. Each pair package installs *modes* under
``/usr/share/apertium/modes`` (``eng-spa.mode``, ``spa-eng.mode``, ``fr-es.mode``, ...), which the
``apertium`` command runs (``apertium -u eng-spa``). Debian's Python module installs for Debian's
Python, not the project's virtualenv, so ravl runs the command. Modes named with ISO 639-1 codes
(``fr-es``) and ISO 639-3 codes (``eng-spa``) are both understood; variant modes
(``eng-cat_valencia``) are left out of the automatic choice.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ...errors import GenerationError, GenerationTimeoutError, MissingDependencyError
from ...specs import Option, Spec, declare, parse_options
from .base import Translator
from .languages import find_language

INSTALL_HINT = "apt-get install apertium apertium-eng-spa apertium-eng-cat apertium-fr-es (scripts/setup-system.sh)"
MODES_DIR = "/usr/share/apertium/modes"
OPTIONS = (
    Option("program", str, "apertium", "the apertium command (a name on PATH or a path)", fingerprint=False),
    Option("modes", str, MODES_DIR, "folder of installed pair modes", fingerprint=False),
    Option("unknown", bool, False, "mark words the pair does not know with '*' (unknown=1)"),
    Option("timeout", float, 60.0, "seconds one translation may take", minimum=0.1, fingerprint=False),
)


def installed_modes(modes: str | Path = MODES_DIR) -> dict[tuple[str, str], str]:
    """``(source, target)`` ISO 639-3 codes -> the mode name, for every installed plain pair mode."""
    folder = Path(os.environ.get("RAVL_APERTIUM_MODES") or modes)
    out: dict[tuple[str, str], str] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.mode")):
        name = path.stem
        if "_" in name or name.count("-") != 1:
            continue
        src, tgt = (find_language(code) for code in name.split("-"))
        if src and tgt and src.code != tgt.code:
            out.setdefault((src.code, tgt.code), name)
    return out


def installed_pairs_text(modes: str | Path = MODES_DIR) -> str:
    """``eng-spa, spa-eng, ...`` or ``none``."""
    pairs = installed_modes(modes)
    return ", ".join(f"{s}-{t}" for s, t in pairs) or "none"


class ApertiumTranslator(Translator):
    """Runs ``apertium -u <mode>`` with one paragraph per text."""

    def __init__(self, spec: str, program: str, modes: str, *, unknown: bool = False, timeout: float = 60.0) -> None:
        self.spec, self.program, self.modes_dir = spec, program, modes
        self.unknown, self.timeout = unknown, timeout

    def __repr__(self) -> str:
        return f"ApertiumTranslator({self.spec!r})"

    def pairs(self) -> list[tuple[str, str]]:
        return list(installed_modes(self.modes_dir))

    def mode(self, source: str, target: str) -> str:
        return installed_modes(self.modes_dir)[(source, target)]

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        if not texts:
            return []
        mode = installed_modes(self.modes_dir).get((source, target))
        if mode is None:
            raise GenerationError(f"apertium has no {source}-{target} pair installed (installed: "
                                  f"{installed_pairs_text(self.modes_dir)})")
        lines = [" ".join(str(t).split()) for t in texts]
        # one paragraph per line (a blank line between), so each line is its own sentence
        out = [p.strip() for p in self._run(mode, "\n\n".join(lines) + "\n").split("\n\n")]
        while out and not out[-1] and len(out) > len(lines):
            out.pop()
        if len(out) != len(lines):  # the engine merged or split paragraphs: one call per line
            out = [self._run(mode, line + "\n").strip() for line in lines]
        return out

    def _run(self, mode: str, text: str) -> str:
        cmd = [self.program, *([] if self.unknown else ["-u"]), mode]
        try:
            proc = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise GenerationTimeoutError(f"apertium {mode} took longer than {self.timeout:g} s") from exc
        except OSError as exc:
            raise GenerationError(f"could not run {self.program!r}: {exc}; {INSTALL_HINT}") from exc
        if proc.returncode != 0:
            detail = " ".join(proc.stderr.split())[:300]
            raise GenerationError(f"apertium {mode} failed ({detail})")
        return proc.stdout.rstrip("\n")


@declare(*OPTIONS, install=INSTALL_HINT)
def create(spec: Spec) -> ApertiumTranslator:
    """Offline rule-based translation with Debian's Apertium, for its installed language pairs."""
    opts = parse_options(spec, OPTIONS)
    program = opts["program"]
    if shutil.which(program) is None:
        raise MissingDependencyError(f"the 'apertium' translator needs the {program!r} program; install it with: "
                                     f"{INSTALL_HINT}")
    return ApertiumTranslator(str(spec), program, opts["modes"], unknown=opts["unknown"], timeout=opts["timeout"])


def describe_here() -> dict:
    """For ``ravl backends``: whether the program is installed, and the installed pairs."""
    if shutil.which("apertium") is None:
        return {"usable": False, "why_not": f"needs the apertium program: {INSTALL_HINT}"}
    return {"detail": f"installed pairs: {installed_pairs_text()}"}


create.describe_here = describe_here  # type: ignore[attr-defined]
