"""`ravl eval`: retrieval, captioning (leave-one-out, resumable cache), zero-shot and compare.

In-process runs use the fake 'testcolour' encoder where exact answers are known; subprocess runs
use the real offline default encoder (eager torch runtime: same vectors, no ONNX export) on a
tiny COCO-format dataset and a tiny Karpathy file made from scikit-image photos.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_image

DEFAULT = "default?runtime=torch"

pytestmark = pytest.mark.slow  # real models, servers or subprocesses


def ravl(*args, check=True, timeout=300) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "ravl.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ})
    if check and proc.returncode != 0:
        raise AssertionError(f"ravl {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


@pytest.fixture
def cli(capsys, colour_spec):
    """Run `ravl ...` in-process: (exit code, stdout, stderr)."""
    from ravl.cli import main

    def run(*args):
        capsys.readouterr()
        code = main.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def one_line_error(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("ravl eval:")]
    assert code == 2 and len(lines) == 1, err
    return lines[0]


# --- fake-encoder datasets ------------------------------------------------------------------------
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "white": (255, 255, 255)}


def karpathy(path: Path, images: dict[str, tuple[list[str], str]]) -> Path:
    """A Karpathy-format file: file name -> (captions, split)."""
    data = {"dataset": "coco", "images": [
        {"filepath": "", "filename": name, "imgid": i, "cocoid": 100 + i, "split": split,
         "sentences": [{"raw": c, "tokens": c.lower().split(), "imgid": i} for c in caps]}
        for i, (name, (caps, split)) in enumerate(images.items())]}
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def colour_set(tmp_path):
    """Two images per colour, each with two colour captions; green's first image has one more."""
    root = tmp_path / "data"
    images = {}
    for name, rgb in COLOURS.items():
        for n in (1, 2):
            make_image(root / f"{name}{n}.png", rgb, size=(32, 24) if n == 1 else (30, 20))  # not byte-identical
            images[f"{name}{n}.png"] = ([f"a {name} square", f"{name} paint number {n}"], "test" if n == 1 else "train")
    images["green1.png"][0].append("a square")
    return karpathy(root / "karpathy.json", images)


def test_retrieval_known_answer_and_report_files(cli, colour_set, tmp_path):
    code, out, err = cli("eval", "retrieval", "--data", colour_set, "--collection", tmp_path / "c",
                         "--encoder", "testcolour", "--json", "--out", tmp_path / "r")
    assert code == 0, err
    report = json.loads(out)
    t2i, i2t = report["retrieval"]["text_to_image"], report["retrieval"]["image_to_text"]
    # 21 caption queries over 10 images: each colour caption ties between the two same-colour images
    # (pessimistic: rank 2), and "a square" (no colour) ties red/green/blue x2 (rank 6).
    assert t2i["n_queries"] == 21 and i2t["n_queries"] == 10
    assert t2i["recall"] == {"R@1": 0.0, "R@5": 20 / 21, "R@10": 1.0}
    assert t2i["mean_rank"] == pytest.approx((20 * 2 + 6) / 21)
    assert i2t["recall"]["R@1"] == 0.0 and i2t["recall"]["R@5"] == 1.0  # a twin's captions tie ahead
    cfg = report["config"]
    assert cfg["encoder"] == "testcolour" and cfg["k"] == [1, 5, 10] and len(cfg["dataset_hash"]) == 16
    assert cfg["n_images"] == 10 and cfg["ravl_version"]
    for name in ("report.json", "report.md", "report-recall.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    assert (tmp_path / "r" / "report-recall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the split recorded by the Karpathy reader filters the stored collection; ties can be optimistic
    code, out, err = cli("eval", "retrieval", "--collection", tmp_path / "c", "--split", "test", "--ties",
                         "optimistic", "--k", "1", "--json", "--out", tmp_path / "r2")
    assert code == 0, err
    split = json.loads(out)["retrieval"]
    assert split["text_to_image"]["n_queries"] == 11 and split["text_to_image"]["recall"] == {"R@1": 1.0}
    code, out, _ = cli("eval", "compare", tmp_path / "r" / "report.json", tmp_path / "r2" / "report.json",
                       "--only-changed")
    assert code == 0
    row = next(ln for ln in out.splitlines() if ln.startswith("text_to_image.R@1"))
    assert row.split()[1:] == ["0.00", "100.00", "+100.00"]
    assert "config.split" in out and "config.ties" in out and "config.encoder " not in out


def test_caption_leave_one_out_resumes_from_cache(cli, colour_set, tmp_path):
    coll, out_dir = tmp_path / "c", tmp_path / "cap"
    assert cli("eval", "retrieval", "--data", colour_set, "--collection", coll, "--encoder", "testcolour")[0] == 0
    args = ("eval", "caption", "--collection", coll, "--data", colour_set, "--leave-one-out", "--k", "1",
            "--backend", "python", "--json", "--out", out_dir)
    code, out, err = cli(*args)
    assert code == 0, err
    first = json.loads(out)
    assert first["extra"]["cache"] == {"file": str(out_dir / "caption-cache.jsonl"), "hits": 0, "computed": 10}
    cache = out_dir / "caption-cache.jsonl"
    rows = [json.loads(ln) for ln in cache.read_text().splitlines()]
    by_uri = {r["key"]: r["value"] for r in rows}
    for uri, row in by_uri.items():
        colour = Path(uri).stem[:-1]
        twin = str(Path(uri).with_name(f"{colour}{3 - int(Path(uri).stem[-1])}.png"))
        # the image itself is excluded; its twin (same colour) is the nearest neighbour
        assert row["caption"] in {f"a {colour} square", f"{colour} paint number {twin[-5]}"}, row
    assert first["config"]["leave_one_out"] is True and first["captioning"]["corpus"]["CIDEr-D"] > 0
    assert first["captioning"]["unavailable"]["METEOR"]
    assert {p.name for p in out_dir.iterdir()} >= {"report.json", "report.md", "report-cider.png"}

    # interrupt-like damage: reports gone, half the cache gone, a torn last line, one cached caption edited
    for name in ("report.json", "report.md", "report-cider.png"):
        (out_dir / name).unlink()
    kept = rows[:6]
    kept[0]["value"]["caption"] = "zzz"
    cache.write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"config": "x", "key"')
    code, out, err = cli(*args)
    assert code == 0, err
    second = json.loads(out)
    assert second["extra"]["cache"]["hits"] == 6 and second["extra"]["cache"]["computed"] == 4
    assert "6 from the cache, 4 generated now" in err
    per_image = json.loads((out_dir / "report.json").read_text())["captioning"]["per_image"]
    assert per_image[kept[0]["key"]]["BLEU-1"] < 1e-6  # the edited caption was read, not recomputed
    assert (out_dir / "report-cider.png").exists()
    # a different configuration (k) does not reuse those captions
    code, out, _ = cli(*args[:7], "--k", "2", "--backend", "python", "--json", "--out", out_dir)
    assert code == 0 and json.loads(out)["extra"]["cache"]["hits"] == 0


def test_zeroshot_accuracy_with_a_mislabelled_image(cli, tmp_path):
    root = tmp_path / "classes"
    for name, rgb in {**COLOURS, "black": (0, 0, 0)}.items():
        for n in (1, 2):
            make_image(root / name / f"{n}.png", rgb)
    make_image(root / "green" / "oops.png", COLOURS["blue"])
    code, out, err = cli("eval", "zeroshot", "--data", root, "--encoder", "testcolour", "--json",
                         "--out", tmp_path / "z")
    assert code == 0, err
    z = json.loads(out)["extra"]["zeroshot"]
    assert z["n_images"] == 13 and z["n_classes"] == 6
    assert z["top1"] == pytest.approx(12 / 13) and z["top5"] == 1.0
    assert z["per_class"]["green"]["top1"] == pytest.approx(2 / 3) and z["per_class"]["red"]["top1"] == 1.0
    assert "## Zero-shot classification" in (tmp_path / "z" / "report.md").read_text()
    code, out, _ = cli("eval", "compare", tmp_path / "z" / "report.json", tmp_path / "z" / "report.json")
    assert code == 0 and "zeroshot.top1 (%)" in out and "92.31" in out


def test_wrong_inputs_give_one_line_errors(cli, colour_set, tmp_path):
    coll = tmp_path / "c"
    code, _, err = cli("eval", "retrieval", "--data", colour_set, "--split", "nope", "--encoder", "testcolour")
    assert "unknown split 'nope'" in one_line_error(code, err) and "test, train" in err
    assert cli("eval", "retrieval", "--data", colour_set, "--collection", coll, "--encoder", "testcolour")[0] == 0
    code, _, err = cli("eval", "retrieval", "--collection", coll, "--split", "val")
    assert "splits there: test, train" in one_line_error(code, err)
    code, _, err = cli("eval", "retrieval", "--collection", coll, "--encoder", "default")
    assert "was built with encoder 'testcolour'" in one_line_error(code, err)
    code, _, err = cli("eval", "caption", "--collection", coll, "--data", colour_set)
    assert "--leave-one-out" in one_line_error(code, err)
    code, _, err = cli("eval", "retrieval", "--collection", coll, "--k", "0,5")
    assert "--k must be positive integers" in one_line_error(code, err)

    data = json.loads(colour_set.read_text())
    data["images"][0]["filename"] = "gone.png"
    missing = tmp_path / "data" / "missing.json"
    missing.write_text(json.dumps(data))
    code, _, err = cli("eval", "retrieval", "--data", missing, "--encoder", "testcolour")
    assert "missing from disk" in one_line_error(code, err) and "gone.png" in err
    manifest = tmp_path / "data" / "nocaps.jsonl"
    manifest.write_text(json.dumps({"image": "red1.png", "caption": "a red square"}) + "\n"
                        + json.dumps({"image": "blue1.png", "caption": "   "}) + "\n")
    code, _, err = cli("eval", "caption", "--collection", coll, "--data", manifest, "--leave-one-out")
    assert "have no (non-empty) captions" in one_line_error(code, err)
    code, _, err = cli("eval", "zeroshot", "--data", tmp_path / "data", "--encoder", "testcolour")
    assert "at least two" in one_line_error(code, err)
    code, _, err = cli("eval", "compare", tmp_path / "nope.json", tmp_path / "nope.json")
    assert "does not exist" in one_line_error(code, err)


# --- the real CLI with the real default encoder ---------------------------------------------------
PHOTOS = {"chelsea": ["a tabby cat lying on the floor", "an orange cat with green eyes"],
          "coffee": ["a cup of coffee on a saucer", "espresso in a white cup"],
          "rocket": ["a rocket on the launch pad", "a space shuttle ready for launch"],
          "motorcycle": ["a parked motorcycle", "a red motor scooter in a garage"],
          "astronaut": ["a woman astronaut in a space suit", "an astronaut portrait with a flag"],
          "camera": ["a man with a camera on a tripod", "a black and white photo of a photographer"]}


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, skimage_photos):
    """Tiny COCO + Karpathy files over the same photos; retrieval indexes them, captioning reuses them."""
    root = tmp_path_factory.mktemp("real")
    images = root / "images"
    images.mkdir()
    coco = {"images": [], "annotations": []}
    for i, (name, caps) in enumerate(PHOTOS.items()):
        skimage_photos[name].save(images / f"{name}.jpg", quality=90)
        coco["images"].append({"id": i, "file_name": f"{name}.jpg"})
        coco["annotations"] += [{"id": 10 * i + j, "image_id": i, "caption": c} for j, c in enumerate(caps)]
    (root / "captions_val.json").write_text(json.dumps(coco))
    kp = karpathy(root / "dataset_coco.json", {f"{n}.jpg": (c, "test") for n, c in PHOTOS.items()})
    coll = root / "coll"
    r1 = json.loads(ravl("eval", "retrieval", "--data", root / "captions_val.json", "--images-root", images,
                         "--collection", coll, "--encoder", DEFAULT, "--out", root / "r1", "--json").stdout)
    cap = ("eval", "caption", "--collection", coll, "--data", kp, "--images-root", images, "--split", "test",
           "--leave-one-out", "--k", "3", "--out", root / "cap", "--json")
    c1 = json.loads(ravl(*cap, "--backend", "python").stdout)
    return {"root": root, "coll": coll, "r1": r1, "c1": c1, "cap": cap}


def test_real_retrieval_on_coco_format(real_runs):
    r1, root = real_runs["r1"], real_runs["root"]
    t2i, i2t = r1["retrieval"]["text_to_image"], r1["retrieval"]["image_to_text"]
    assert t2i["n_queries"] == 12 and i2t["n_queries"] == 6 and r1["config"]["encoder"] == DEFAULT
    assert t2i["recall"]["R@10"] == 1.0 and i2t["recall"]["R@10"] == 1.0  # only 6 images
    # plausible: clearly better than chance (mean rank 3.5 of 6 images, R@1 1/6)
    assert t2i["mean_rank"] < 3.0 and t2i["recall"]["R@1"] > 1 / 6
    assert i2t["recall"]["R@5"] >= 0.5
    for name in ("report.json", "report.md", "report-recall.png"):
        assert (root / "r1" / name).stat().st_size > 0
    proc = ravl("eval", "retrieval", "--collection", real_runs["coll"], "--k", "1,3", "--ties", "optimistic",
                "--out", root / "r2")
    assert "| text → image | 12 |" in proc.stdout
    out = ravl("eval", "compare", root / "r1" / "report.json", root / "r2" / "report.json").stdout
    assert "Δ (B−A)" in out and "text_to_image.R@3" in out and "config.ties" in out


def test_real_caption_leave_one_out_and_resume(real_runs):
    c1, root = real_runs["c1"], real_runs["root"]
    corpus = c1["captioning"]["corpus"]
    assert c1["captioning"]["n_images"] == 6 and c1["extra"]["cache"]["computed"] == 6
    assert all(0.0 <= corpus[m] <= 1.0 for m in ("BLEU-1", "BLEU-4", "ROUGE-L")) and 0.0 <= corpus["CIDEr-D"] <= 10
    assert corpus["BLEU-1"] > 0  # retrieved human captions share words with the references
    assert c1["config"]["generator"] == "consensus" and c1["config"]["k"] == 3 and c1["config"]["split"] == "test"
    for ex in c1["extra"]["examples"]:
        assert ex["caption"] not in ex["references"]  # leave-one-out: never the image's own caption
    out_dir = root / "cap"
    assert (out_dir / "report-cider.png").stat().st_size > 0
    for name in ("report.json", "report.md", "report-cider.png"):
        (out_dir / name).unlink()
    cache = out_dir / "caption-cache.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:4]) + "\n")
    proc = ravl(*real_runs["cap"], "--backend", "auto")  # same captions, now scored by pycocoevalcap
    again = json.loads(proc.stdout)
    assert again["extra"]["cache"] == {"file": str(cache), "hits": 4, "computed": 2}
    assert len(cache.read_text().splitlines()) == 6
    assert again["captioning"]["backend"] == "java" and "METEOR" in again["captioning"]["corpus"]
    assert "SPICE" in again["captioning"]["unavailable"]
    assert (out_dir / "report-cider.png").exists() and (out_dir / "report.md").exists()
