"""What `pip install ravl` costs, and what it gives: venv size and install time with no extras and
with `[all]`, then index, first search and caption in the lean venv (needs the package registry).

    python3 benchmarks/lean_install.py [--workdir DIR] [--lean-only] [--warm-up]

Each variant gets a fresh virtualenv (``python -m venv``, so pip and setuptools are counted) and
``pip install -c constraints.txt <a copy of this checkout>[extras]`` (a regular, non-editable
install, as a user gets). In the lean venv, with an empty RAVL_HOME so the first run writes and checks both ONNX
graphs, it runs ``ravl index`` on a few photos with captions, a first ``ravl search --text`` and
``ravl caption``, and checks that torch, transformers and timm are not installed. ``--warm-up``
installs each variant once into a throwaway venv first, so the timed install reads a warm pip
cache. Prints one table (markdown) and a JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = {"chelsea": "a tabby cat sitting on a floor", "coffee": "a cup of espresso coffee on a saucer",
            "rocket": "a rocket launching into the sky"}


def venv_bytes(root: Path) -> int:
    """Disk use of a folder (allocated blocks, like du)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                pass
    return total


def source_copy(work: Path) -> Path:
    """What a build of ravl reads (pyproject, README, src/), copied so no stale build/ folder of the
    checkout ends up in the wheel."""
    out = work / "source"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", *(p.name for p in REPO.glob("LICEN[CS]E*"))):
        shutil.copy2(REPO / name, out / name)
    shutil.copytree(REPO / "src", out / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return out


def make_venv(path: Path, python: str) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def pip_install(py: Path, target: str, constraints: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(constraints), target],
                   check=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    return time.perf_counter() - t0


def write_photos(folder: Path) -> Path:
    """Three photos with caption sidecars: scikit-image's when it is importable here, else plain drawings."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    try:
        import skimage.data

        images = {name: Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in CAPTIONS}
    except ImportError:
        images = {}
        for i, name in enumerate(CAPTIONS):
            im = Image.new("RGB", (320, 240), ((90 * i) % 256, 120, 200 - 60 * i))
            ImageDraw.Draw(im).ellipse((60 + 20 * i, 40, 260, 200), fill=(250 - 70 * i, 40 * i, 90))
            images[name] = im
    for name, im in images.items():
        im.save(folder / f"{name}.jpg", quality=92)
        (folder / f"{name}.txt").write_text(CAPTIONS[name] + "\n")
    return folder


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - t0, proc.stdout


def run_lean_commands(venv: Path, work: Path) -> dict:
    ravl = str(venv / "bin" / "ravl")
    env = {**os.environ, "RAVL_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    photos = write_photos(work / "photos")
    coll = work / "coll"
    out: dict = {}
    out["index_s"], _ = timed([ravl, "index", str(photos), "-c", str(coll), "--json"], env)
    out["first_search_s"], found = timed([ravl, "search", "-c", str(coll), "--text", "a cat", "--json", "--k", "1"], env)
    out["search_top"] = Path(json.loads(found)["results"][0]["uri"]).stem
    out["search_s"], _ = timed([ravl, "search", "-c", str(coll), "--text", "coffee", "--json", "--k", "1"], env)
    out["caption_s"], caption = timed([ravl, "caption", "-c", str(coll), str(photos / "coffee.jpg"), "--generator",
                                       "consensus", "--json"], env)
    out["caption"] = json.loads(caption)["caption"]
    probe = "import importlib.util as u; print([m for m in ('torch', 'transformers', 'timm') if u.find_spec(m)])"
    out["heavy_installed"] = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True,
                                                       text=True, check=True).stdout.replace("'", '"'))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where the venvs go (default: a temp folder, removed)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that creates the venvs")
    parser.add_argument("--lean-only", action="store_true", help="skip the [all] install")
    parser.add_argument("--warm-up", action="store_true", help="install each variant once first (warm pip cache)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ravl-lean-"))
    constraints = REPO / "constraints.txt"
    rows = []
    source = source_copy(work)
    variants = [("lean", "pip install ravl", str(source))]
    if not args.lean_only:
        variants.append(("all", "pip install 'ravl[all]'", f"{source}[all]"))
    for slug, label, target in variants:
        if args.warm_up:
            pip_install(make_venv(work / f"{slug}-warm", args.python), target, constraints)
            shutil.rmtree(work / f"{slug}-warm", ignore_errors=True)
        py = make_venv(work / slug, args.python)
        row: dict = {"install": label, "install_s": round(pip_install(py, target, constraints), 1)}
        row["venv_mb"] = round(venv_bytes(work / slug) / 1e6)
        if slug == "lean":
            row.update({k: round(v, 2) if isinstance(v, float) else v
                        for k, v in run_lean_commands(work / slug, work / "lean-run").items()})
            row["install_to_first_search_s"] = round(row["install_s"] + row["index_s"] + row["first_search_s"], 1)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print("| install | venv size | install time | index 3 photos (first run: writes + checks both graphs) "
          "| first search | next search | caption | torch, transformers, timm installed |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lean = "index_s" in r
        print(f"| `{r['install']}` | {r['venv_mb']} MB | {r['install_s']} s | "
              + (f"{r['index_s']} s | {r['first_search_s']} s | {r['search_s']} s | {r['caption_s']} s | "
                 f"{', '.join(r['heavy_installed']) or 'none'} |" if lean else "| | | | |"))
    print(json.dumps({"rows": rows}))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
