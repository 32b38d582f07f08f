"""Issue 22 item 1: a re-index of a folder makes the collection match it. Deleted files' items
go (vectors, captions, index entries), a renamed file's row follows it, a folder that looks
emptied or unmounted removes nothing without --prune-missing, manifests stay add-only unless
--sync, and a sync killed with SIGKILL finishes on the next run."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

from conftest import make_image
from ravl.cli.main import main
from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources

WORDS = ("red", "green", "blue", "white", "yellow", "black")


def photo_folder(root, n=30):
    for i in range(n):
        make_image(root / f"sub{i % 3}" / f"p{i}.png", ((i * 97) % 256, (i * 53) % 256, (i * 31) % 256),
                   size=(16 + i, 12))
        (root / f"sub{i % 3}" / f"p{i}.txt").write_text(f"{WORDS[i % 6]} thing number {i}\n")
    return root


def uris(coll_dir) -> set[str]:
    with open_collection(coll_dir, readonly=True) as coll:
        return set(coll.file_states())


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_deleted_and_renamed_files_leave_the_collection(tmp_path, colour_spec, capsys):
    photos, coll = photo_folder(tmp_path / "photos"), tmp_path / "c"
    assert run_cli(capsys, "index", photos, "-c", coll, "--encoder", colour_spec)[0] == 0
    with open_collection(coll, readonly=True) as c:
        old = c.item_by_uri(str(photos / "sub1" / "p4.png"))
        reader_hits = c.search_text(["green thing"], k=30, mode="vector")[0]  # holds the index in memory
        assert any(h.uri.endswith("p1.png") for h in reader_hits)
        (photos / "sub1" / "p1.png").unlink()  # deleted (its sidecar stays: no image, no item)
        (photos / "sub1" / "p4.png").rename(photos / "sub2" / "renamed.png")
        (photos / "sub1" / "p4.txt").rename(photos / "sub2" / "renamed.txt")
        code, out, err = run_cli(capsys, "index", photos, "-c", coll)
        assert code == 0, err
        assert "1 moved, 1 removed" in out and "29 images seen" in out
        assert "collection now holds 29 images" in out
        after = c.search_text(["green thing"], k=30, mode="vector")[0]  # the same reader, caught up
        assert not any(h.uri.endswith("p1.png") or h.uri.endswith("sub1/p4.png") for h in after)
    with open_collection(coll, readonly=True) as c:
        moved = c.item_by_uri(str(photos / "sub2" / "renamed.png"))
        assert moved is not None and moved.id == old.id and moved.captions == old.captions  # the row followed
        assert c.counts() == {"images": 29, "captions": 29}
        for target in ("images", "captions"):
            for mode in ("vector", "keyword", "hybrid"):
                hits = c.search_text(["green thing number 1"], target=target, k=40, mode=mode)[0]
                assert not any(h.uri.endswith("/p1.png") for h in hits)
    code, out, _ = run_cli(capsys, "index", photos, "-c", coll)
    assert "0 added, 0 updated, 29 unchanged" in out and "removed" not in out and "moved" not in out


def test_keep_missing_keeps_and_counts_and_info_and_prune(tmp_path, colour_spec, capsys):
    photos, coll = photo_folder(tmp_path / "photos", 6), tmp_path / "c"
    assert run_cli(capsys, "index", photos, "-c", coll, "--encoder", colour_spec)[0] == 0
    (photos / "sub0" / "p0.png").unlink()
    (photos / "sub1" / "p1.png").rename(photos / "moved.png")
    code, out, _ = run_cli(capsys, "index", photos, "-c", coll, "--keep-missing")
    assert code == 0 and "1 added" in out and "2 missing (kept)" in out
    assert len(uris(coll)) == 7  # the old behaviour: old rows stay, the renamed file is a copy
    code, out, _ = run_cli(capsys, "info", "-c", coll)
    assert "missing_files: 2" in out
    code, out, err = run_cli(capsys, "prune", "-c", coll)
    assert code == 0 and "removed 2 items whose file is gone" in out
    assert len(uris(coll)) == 5
    assert "missing_files: 0" in run_cli(capsys, "info", "-c", coll)[1]


def test_guard_holds_back_an_emptied_or_unmounted_folder(tmp_path, colour_spec, capsys):
    photos, coll = photo_folder(tmp_path / "photos"), tmp_path / "c"
    assert run_cli(capsys, "index", photos, "-c", coll, "--encoder", colour_spec)[0] == 0
    shutil.move(photos, tmp_path / "elsewhere")
    photos.mkdir()  # an empty mount point
    code, out, err = run_cli(capsys, "index", photos, "-c", coll)
    assert code == 0 and "30 missing (kept)" in out
    assert "nothing was removed" in err and "--prune-missing" in err and "no images" in err
    assert len(uris(coll)) == 30
    # 20 of 30 gone: more than half, held back too; --prune-missing removes them
    shutil.rmtree(photos)
    shutil.move(tmp_path / "elsewhere", photos)
    for i in range(20):
        (photos / f"sub{i % 3}" / f"p{i}.png").unlink()
    code, out, err = run_cli(capsys, "index", photos, "-c", coll)
    assert "20 missing (kept)" in out and "more than 50%" in err
    assert len(uris(coll)) == 30
    code, out, _ = run_cli(capsys, "index", photos, "-c", coll, "--prune-missing")
    assert code == 0 and "20 removed" in out
    assert len(uris(coll)) == 10


def test_unreadable_subfolder_is_not_taken_for_deleted(colour_spec):
    """Run as 'nobody' (root reads every folder): a sub-folder it cannot list keeps its items."""
    import tempfile
    from pathlib import Path

    from test_readonly import as_reader

    base = Path(tempfile.mkdtemp(prefix="ravl-unreadable-"))
    try:
        photos, coll = photo_folder(base / "photos", 6), base / "c"
        assert main(["index", str(photos), "-c", str(coll), "--encoder", colour_spec]) == 0
        for p in [base, *base.rglob("*")]:
            p.chmod(0o777 if p.is_dir() else 0o666)
        (photos / "sub1").chmod(0o700 if os.geteuid() == 0 else 0)
        proc = as_reader("index", photos, "-c", coll, home=base)
        assert proc.returncode == 0, proc.stderr
        assert "cannot read folder" in proc.stderr and "kept" in proc.stderr
        assert "removed" not in proc.stdout and len(uris(coll)) == 6
    finally:
        for p in [base, *base.rglob("*")]:
            p.chmod(0o777 if p.is_dir() else 0o666)
        shutil.rmtree(base)


def test_manifests_add_only_unless_sync(tmp_path, colour_spec, capsys):
    photos, coll = photo_folder(tmp_path / "photos", 6), tmp_path / "c"
    manifest = tmp_path / "m.jsonl"
    files = sorted(photos.rglob("*.png"))
    manifest.write_text("".join(json.dumps({"image": str(f), "caption": "a thing"}) + "\n" for f in files))
    assert run_cli(capsys, "index", manifest, "-c", coll, "--encoder", colour_spec)[0] == 0
    manifest.write_text("".join(json.dumps({"image": str(f), "caption": "a thing"}) + "\n" for f in files[:4]))
    code, out, _ = run_cli(capsys, "index", manifest, "-c", coll)
    assert "removed" not in out and len(uris(coll)) == 6
    code, out, _ = run_cli(capsys, "index", manifest, "-c", coll, "--sync")
    assert code == 0 and "2 removed" in out and len(uris(coll)) == 4
    assert run_cli(capsys, "index", manifest, "-c", coll, "--sync", "--keep-missing")[0] == 2


def test_deletes_go_in_bounded_chunks(tmp_path, colour_spec):
    photos, coll = photo_folder(tmp_path / "photos", 12), tmp_path / "c"
    with open_collection(coll, encoder=colour_spec, create=True) as c:
        index_sources(c, [str(photos)])
        seen: list[int] = []
        ids = sorted(s[0] for s in c.file_states().values())
        assert c._db.delete_items(ids[:7] + [10**9], chunk=3, on_chunk=seen.append) == 7
        assert seen == [3, 6, 7]
        assert c.counts()["images"] == 5


def test_collection_inside_the_folder_is_left_out(tmp_path, colour_spec, capsys):
    photos = photo_folder(tmp_path / "photos", 3)
    coll = photos / "my-collection"
    code, out, err = run_cli(capsys, "index", photos, "-c", coll, "--encoder", colour_spec)
    assert code == 0 and "lies inside" in err  # said when the collection is created, too
    (coll / "thumb.png").write_bytes((photos / "sub0" / "p0.png").read_bytes())
    code, out, err = run_cli(capsys, "index", photos, "-c", coll)
    assert code == 0 and "lies inside" in err and "left out of the scan" in err
    assert not any("my-collection" in u for u in uris(coll))


def test_empty_source_is_a_clear_note(tmp_path, colour_spec, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "IMG_1.xyz").write_bytes(b"x")
    code, out, err = run_cli(capsys, "index", tmp_path / "empty", "-c", tmp_path / "c", "--encoder", colour_spec)
    assert code == 0 and "no images found in" in err and "1 other files passed over" in err
    code, out, err = run_cli(capsys, "index", tmp_path / "empty", "-c", tmp_path / "c", "--verbose")
    assert "passed over" in err and "IMG_1.xyz" in err


CHILD = """
import os, signal, sys, fakes
from ravl import registry
registry.register('encoders', 'testcolour', fakes.create)
from ravl.store.writes import WritesMixin
real = WritesMixin.delete_items
def killing(self, ids, chunk=2, on_chunk=None):
    return real(self, ids, 2, lambda n: os.kill(os.getpid(), signal.SIGKILL))
WritesMixin.delete_items = killing
from ravl.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_sync_killed_mid_removal_finishes_on_the_next_run(tmp_path, colour_spec):
    from test_crash import answers

    photos, coll = photo_folder(tmp_path / "photos", 9), tmp_path / "c"
    assert main(["index", str(photos), "-c", str(coll), "--encoder", colour_spec, "--batch-size", "2"]) == 0
    for i in (1, 2, 5):
        (photos / f"sub{i % 3}" / f"p{i}.png").unlink()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", CHILD, "index", str(photos), "-c", str(coll)],
                          capture_output=True, env=env, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-500:]
    conn = sqlite3.connect(coll / "ravl.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 7  # one whole chunk of two went
    conn.close()
    assert main(["index", str(photos), "-c", str(coll)]) == 0
    clean = tmp_path / "clean"
    assert main(["index", str(photos), "-c", str(clean), "--encoder", colour_spec, "--batch-size", "2"]) == 0
    assert answers(coll)[:-1] == answers(clean)[:-1]  # (the last probes item 1, which is gone)


def test_prune_shows_the_rebuild_it_causes(tmp_path, colour_spec, capsys):
    """Removing more than a quarter of an HNSW index's items rebuilds it: ``ravl prune`` shows the
    build's steps on stderr (a long silence at scale otherwise); a dry run shows no bar."""
    photos, coll = photo_folder(tmp_path / "photos", 80), tmp_path / "c"
    assert run_cli(capsys, "index", photos, "-c", coll, "--encoder", colour_spec, "--index", "hnsw")[0] == 0
    for i in range(30):
        (photos / f"sub{i % 3}" / f"p{i}.png").unlink()
    code, out, err = run_cli(capsys, "prune", "-c", coll, "--dry-run")
    assert code == 0 and "would remove 30" in out and "pruning" not in err
    code, out, err = run_cli(capsys, "prune", "-c", coll)
    assert code == 0 and "removed 30 items whose file is gone" in out
    assert "pruning" in err and "index images: adding" in err, err
    assert len(uris(coll)) == 50
