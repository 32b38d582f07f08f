"""Peak memory of `ravl import` (clip-retrieval output) and `ravl reindex` at scale, each a real CLI
process under `/usr/bin/time -v`.

    .venv/bin/python benchmarks/scale_import.py --n 200000 --workdir /tmp/si     # prepare + import + reindex
    .venv/bin/python benchmarks/scale_import.py --n 1000000 --steps import reindex --src-path OTHER/src

The source is SYNTHETIC: benchmarks/scale.py's clustered unit vectors (d = --dim), written as
clip-retrieval inference output (img_emb/img_emb_{i}.npy as float16, 100k rows per file, and
metadata/metadata_{i}.parquet with image_path; no captions, like the 1M run of issue 23), imported
into a new collection declared as a tiny locally built transformers CLIP whose projection is d wide
(its vectors are never computed: only its width matters). `--src-path` runs another checkout's src/
(the code before a change) on the same data. Prints one JSON line per step: wall seconds and peak
RSS (MiB), the collection's database size after the import, and the index facts after the reindex.
`--vector-dtype float16` stores the vectors as float16 (docs/scale.md, "Storing less"); a CLIP
collection stores its image features once either way (they are its embeddings), so `--src-path` of a
checkout from before shows the "stored twice" size. `--source-dtype float32` writes float32 img_emb
files instead (vectors not already rounded to float16, for benchmarks/store_less_recall.py).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import clustered  # noqa: E402

ROWS_PER_FILE = 100_000


def tiny_clip(folder: Path, dim: int) -> Path:
    """A transformers CLIP with random weights and a ``dim``-wide projection, saved to ``folder``."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from ravl.encoders.text_minilm import model_path as minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(
        text_config=dict(tower, vocab_size=len(tok), pad_token_id=tok.pad_token_id, max_position_embeddings=24,
                         bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id),
        vision_config=dict(tower, image_size=32, patch_size=8), projection_dim=dim)).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def clip_retrieval_output(src: Path, n: int, dim: int, dtype: str = "float16") -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (src / "done").is_file():
        return src
    (src / "img_emb").mkdir(parents=True, exist_ok=True)
    (src / "metadata").mkdir(exist_ok=True)
    for part, start in enumerate(range(0, n, ROWS_PER_FILE)):
        m = min(ROWS_PER_FILE, n - start)
        np.save(src / "img_emb" / f"img_emb_{part}.npy", clustered(m, dim, seed=part, total=n).astype(dtype))
        pq.write_table(pa.table({"image_path": [f"/images/{start + i:09d}.jpg" for i in range(m)]}),
                       src / "metadata" / f"metadata_{part}.parquet")
    (src / "done").write_text("")
    return src


def timed(cmd: list[str], env: dict) -> dict:
    """Run ``cmd`` under /usr/bin/time -v: wall seconds, peak RSS MiB, exit code."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    seconds = None
    if wall:
        h, m, s = wall.groups()
        seconds = round(int(h or 0) * 3600 + int(m) * 60 + float(s), 1)
    return {"rc": proc.returncode, "wall_s": seconds, "peak_rss_mib": int(rss.group(1)) // 1024 if rss else None,
            "stderr_tail": proc.stderr.strip().splitlines()[-25:-23] if proc.returncode else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ravl-scale-import"))
    ap.add_argument("--steps", nargs="+", default=["import", "reindex"], choices=["import", "reindex"])
    ap.add_argument("--index", default="ivfpq")
    ap.add_argument("--memory-budget", default="512MB")
    ap.add_argument("--src-path", type=Path, default=Path(__file__).resolve().parents[1] / "src",
                    help="the ravl source tree to run (default: this checkout's)")
    ap.add_argument("--tag", default="", help="collection folder suffix (to compare checkouts)")
    ap.add_argument("--import-index", default=None, help="create the collection with this index kind first "
                    "(the index `ravl import` builds at its end; default: the collection's default, auto)")
    ap.add_argument("--source-dtype", default="float16", choices=["float16", "float32"],
                    help="dtype of the img_emb files (clip-retrieval writes float16)")
    ap.add_argument("--vector-dtype", default=None, choices=["float32", "float16"],
                    help="storage dtype of the new collection (default: ravl's, float32)")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = tiny_clip(args.workdir / f"clip{args.dim}", args.dim)
    suffix = "" if args.source_dtype == "float16" else f"-{args.source_dtype}"
    src = clip_retrieval_output(args.workdir / f"cr-{args.n}x{args.dim}{suffix}", args.n, args.dim, args.source_dtype)
    coll = args.workdir / f"coll-{args.n}x{args.dim}{args.tag}"
    env = {**os.environ, "PYTHONPATH": str(args.src_path.resolve()), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    ravl = [sys.executable, "-m", "ravl.cli.main"]
    if args.import_index and not coll.exists():
        dtype = f", vector_dtype={args.vector_dtype!r}" if args.vector_dtype else ""
        subprocess.run([sys.executable, "-c", "import sys; from ravl.collection import open_collection; "
                        f"open_collection(sys.argv[1], encoder=sys.argv[2], create=True{dtype})"
                        ".set_index_config(sys.argv[3])", str(coll), f"hf:{model}", args.import_index],
                       env=env, check=True)
    for step in args.steps:
        if step == "import":
            cmd = [*ravl, "import", str(src), "-c", str(coll), "--encoder", f"hf:{model}", "--json"]
            cmd += ["--vector-dtype", args.vector_dtype] if args.vector_dtype else []
        else:
            cmd = [*ravl, "reindex", "-c", str(coll), "--index", args.index, "--memory-budget", args.memory_budget]
        row = {"step": step, "n": args.n, "dim": args.dim, "src": str(args.src_path), "vector_dtype": args.vector_dtype,
               **timed(cmd, env)}
        if step == "import":
            row["db_mib"] = round(sum(f.stat().st_size for f in coll.glob("ravl.sqlite*")) / 2**20, 1)
            row["index_files_mib"] = round(sum(f.stat().st_size for f in coll.glob("index/*")) / 2**20, 1)
        if step == "reindex":
            info = subprocess.run([*ravl, "info", "-c", str(coll), "--json"], capture_output=True, text=True, env=env)
            try:
                row["indexes"] = {k: {f: v.get(f) for f in ("factory", "count", "recall_at_10", "search", "bytes")}
                                  for k, v in json.loads(info.stdout).get("indexes", {}).items()}
            except ValueError:
                row["info_error"] = info.stderr.strip()[-300:]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
