"""Index builds show their progress (issue 23: a 10M-vector import built two IVF-PQ indexes for 10+
minutes each without a word): ``ravl reindex`` names each step of each build on stderr and counts
its vectors page by page, stdout keeps only its result lines, and the Python API prints nothing."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from test_incremental import create


def test_reindex_shows_each_build_step_on_stderr(tmp_path):
    create(tmp_path / "c", "flat").close()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path.parent)!r})
        sys.path[:0] = {sys.path!r}
        from ravl.store import indexes
        indexes.BUILD_CHUNK = 7  # pages of 7 vectors: 86 pages per pass
        from ravl.cli.main import main
        sys.exit(main(["reindex", "--collection", {str(tmp_path / "c")!r}, "--index", "ivfpq"]))
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    err = run.stderr
    for name in ("images", "features", "captions"):
        for step in ("reading a", "training IVF-PQ on", "adding", "tuning"):
            assert f"index {name}: {step}" in err, (name, step, err[-2000:])
    assert "600/600" in err  # counted in vectors up to the whole index
    lines = run.stdout.splitlines()
    assert lines[0] == "index ivfpq" and len(lines) == 4
    assert sorted(line.split(":")[0] for line in lines[1:]) == ["index captions", "index features", "index images"]
    assert all(": ivfpq (" in line for line in lines[1:])


def test_the_python_api_prints_nothing(tmp_path, capfd):
    coll = create(tmp_path / "c", "ivfpq")
    coll.reindex("ivfpq")
    coll.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_a_progress_callback_hears_counts_and_a_describing_one_the_steps(tmp_path):
    coll = create(tmp_path / "c", "flat")
    counts: list[tuple[int, int]] = []
    coll.reindex("hnsw", progress=lambda done, total: counts.append((done, total)))
    assert (600, 600) in counts and all(done <= total for done, total in counts)

    class Steps:
        def __init__(self):
            self.steps: list[str] = []

        def __call__(self, done, total):
            pass

        def describe(self, text):
            self.steps.append(text)

    steps = Steps()
    coll.reindex("flat", progress=steps)
    assert steps.steps == ["index images: adding", "index features: adding", "index captions: adding"]
    coll.close()


def test_an_ingest_hands_its_index_builds_only_to_a_progress_that_names_steps():
    """A plain (done, total) callback given to an ingest hears the ingest's counts only (the index
    builds that follow would restart its counts unannounced: tests/test_ray_engine.py relies on
    it); the CLI's bar, which can say which step it counts, hears the builds too."""
    from ravl.progress import stepped

    class Steps:
        def __call__(self, done, total):
            pass

        def describe(self, text):
            pass

    def plain(done, total):
        pass

    named = Steps()
    assert stepped(plain) is None and stepped(None) is None and stepped(named) is named
