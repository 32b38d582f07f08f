"""The reference captioning metrics: pycocoevalcap 1.2 (the COCO caption evaluation code).

Runs the Stanford PTB tokenizer (Java), then BLEU-1..4, METEOR 1.5 (Java), ROUGE-L, CIDEr-D and,
only when its Stanford CoreNLP 3.6.0 jars are already in place, SPICE (pycocoevalcap would
otherwise try to download them, which an offline machine cannot).

Notes:
* CIDEr-D takes its IDF from the references of the images being evaluated: one image alone
  scores 0, and figures are only comparable over the same image set.
* The PTB tokenizer is called here directly (same jar, same flags, same punctuation filter as
  pycocoevalcap's ``PTBTokenizer``) so that its temporary file does not go into site-packages,
  its stderr chatter is captured, and a JVM failure becomes a clear error.
* Every JVM started here is stopped before the function returns.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..errors import MissingDependencyError, RavlError
from .metrics import BLEU_NAMES, PTB_PUNCTUATIONS

_INSTALL_JAVA = ("install a Java runtime (e.g. `apt-get install default-jre-headless`) "
                 "or use backend='python' (no METEOR/SPICE)")
_INSTALL_PKG = "install it with `pip install 'ravl[eval]'` or use backend='python' (no METEOR/SPICE)"
_SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def _package_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def java_available() -> str | None:
    """The path of the ``java`` executable, or None."""
    return shutil.which("java")


def java_unavailable_reason() -> str | None:
    """Why the 'java' backend cannot run here, or None when it can."""
    if java_available() is None:
        return "Java is not installed (no `java` on PATH)"
    if _package_dir() is None:
        return "pycocoevalcap is not installed"
    return None


def _require_java() -> Path:
    if java_available() is None:
        raise MissingDependencyError(f"the PTB tokenizer and METEOR need Java, and no `java` is on PATH: "
                                     f"{_INSTALL_JAVA}")
    pkg = _package_dir()
    if pkg is None:
        raise MissingDependencyError(f"backend='java' needs pycocoevalcap: {_INSTALL_PKG}")
    return pkg


def spice_status() -> tuple[bool, str]:
    """(available, reason): SPICE runs only when its CoreNLP jars are present (no downloads)."""
    pkg = _package_dir()
    if pkg is None:
        return False, "pycocoevalcap is not installed"
    if java_available() is None:
        return False, "Java is not installed (no `java` on PATH)"
    lib = pkg / "spice" / "lib"
    missing = [name for name in _SPICE_JARS if not (lib / name).is_file()]
    if missing:
        return False, (f"Stanford CoreNLP 3.6.0 jars missing from {lib} ({', '.join(missing)}); "
                       "pycocoevalcap would download them, which needs network access")
    return True, "ok"


def ptb_tokenize(captions: list[str]) -> list[str]:
    """Tokenise captions with pycocoevalcap's Stanford PTBTokenizer (one JVM for the lot).

    Same jar, flags (``-preserveLines -lowerCase``) and punctuation filter as pycocoevalcap.
    """
    pkg = _require_java()
    jar = pkg / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    if not jar.is_file():
        raise MissingDependencyError(f"pycocoevalcap's tokenizer jar is missing ({jar}); reinstall it with "
                                     "`pip install --force-reinstall pycocoevalcap`")
    if not captions:
        return []
    text = "".join(" ".join(c.split()) + "\n" for c in captions)  # one caption per line
    cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
    try:
        proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, check=False)
    except OSError as exc:
        raise MissingDependencyError(f"could not start Java for the PTB tokenizer ({exc}): {_INSTALL_JAVA}") from exc
    lines = proc.stdout.decode("utf-8").split("\n")
    if proc.returncode != 0 or len(lines) < len(captions):
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise RavlError(f"the PTB tokenizer failed (exit {proc.returncode}, {len(lines)} lines for "
                        f"{len(captions)} captions: {err[0]}); check the Java install or use backend='python'")
    return [" ".join(w for w in line.rstrip().split(" ") if w and w not in PTB_PUNCTUATIONS)
            for line in lines[:len(captions)]]


@contextmanager
def _meteor():
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        scorer = Meteor()
    except OSError as exc:
        raise MissingDependencyError(f"could not start Java for METEOR ({exc}): {_INSTALL_JAVA}") from exc
    try:
        yield scorer
    finally:
        # Leave the lock free: pycocoevalcap's __del__ takes it again at garbage collection.
        if scorer.lock.locked():
            scorer.lock.release()
        proc = scorer.meteor_p
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _run_meteor(gts: dict, res: dict) -> tuple[float, list[float]]:
    # METEOR's line protocol cannot carry "|||" inside a sentence; pycocoevalcap only strips it
    # from the candidate, so strip it from the references as well.
    gts = {k: [r.replace("|||", "") for r in v] for k, v in gts.items()}
    with _meteor() as scorer:
        try:
            score, scores = scorer.compute_score(gts, res)
        except (ValueError, OSError) as exc:
            raise RavlError(f"METEOR (Java) stopped answering ({exc}); check that Java can allocate 2 GB "
                            "or use backend='python'") from exc
    return float(score), [float(s) for s in scores]


def _run_spice(gts: dict, res: dict) -> tuple[float, list[float]]:
    from pycocoevalcap.spice.spice import Spice

    score, scores = Spice().compute_score(gts, res)
    ids = sorted(gts)  # pycocoevalcap's SPICE returns its per-image scores in sorted id order
    by_id = {k: float(s["All"]["f"]) for k, s in zip(ids, scores)}
    return float(score), [by_id[k] for k in gts]


def score_java(refs: list[list[str]], cands: list[str], wanted: list[str], tokenize: bool,
               progress: Callable[[str], None] | None = None):
    """Run pycocoevalcap on aligned references/candidates (see ``scoring.score_captions``).

    Returns (corpus, per-image lists by metric, unavailable, timings, tokenizer name).
    """
    _require_java()
    corpus: dict[str, float] = {}
    per_image: dict[str, list[float]] = {}
    unavailable: dict[str, str] = {}
    timings: dict[str, float] = {}

    def stage(name):
        if progress is not None:
            progress(name)
        return time.perf_counter()

    if tokenize:
        t0 = stage("tokenize")
        flat = ptb_tokenize([r for ref_list in refs for r in ref_list] + list(cands))
        it = iter(flat)
        refs = [[next(it) for _ in ref_list] for ref_list in refs]
        cands = list(it)
        timings["tokenize"] = time.perf_counter() - t0
    # pycocoevalcap wants {id: [str, ...]}; positions serve as ids so any user id works.
    gts = {i: list(ref_list) for i, ref_list in enumerate(refs)}
    res = {i: [cand] for i, cand in enumerate(cands)}

    if "BLEU" in wanted:
        from pycocoevalcap.bleu.bleu import Bleu

        t0 = stage("BLEU")
        scores, lists = Bleu(4).compute_score(gts, res, verbose=0)
        corpus.update(zip(BLEU_NAMES, scores))
        per_image.update(zip(BLEU_NAMES, lists))
        timings["BLEU"] = time.perf_counter() - t0
    if "METEOR" in wanted:
        t0 = stage("METEOR")
        corpus["METEOR"], per_image["METEOR"] = _run_meteor(gts, res)
        timings["METEOR"] = time.perf_counter() - t0
    if "ROUGE-L" in wanted:
        from pycocoevalcap.rouge.rouge import Rouge

        t0 = stage("ROUGE-L")
        score, scores = Rouge().compute_score(gts, res)
        corpus["ROUGE-L"], per_image["ROUGE-L"] = float(score), [float(s) for s in scores]
        timings["ROUGE-L"] = time.perf_counter() - t0
    if "CIDEr-D" in wanted:
        from pycocoevalcap.cider.cider import Cider

        t0 = stage("CIDEr-D")
        score, scores = Cider().compute_score(gts, res)
        corpus["CIDEr-D"], per_image["CIDEr-D"] = float(score), [float(s) for s in scores]
        timings["CIDEr-D"] = time.perf_counter() - t0
    if "SPICE" in wanted:
        ok, reason = spice_status()
        if not ok:
            unavailable["SPICE"] = reason
        else:
            t0 = stage("SPICE")
            try:
                corpus["SPICE"], per_image["SPICE"] = _run_spice(gts, res)
            except Exception as exc:  # noqa: BLE001 - SPICE is optional; report why it failed
                unavailable["SPICE"] = f"SPICE failed: {type(exc).__name__}: {exc}"
            timings["SPICE"] = time.perf_counter() - t0
    return corpus, per_image, unavailable, timings, "ptb" if tokenize else "none"

