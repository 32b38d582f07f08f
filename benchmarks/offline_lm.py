"""Consensus vs the bundled SmolLM2 for retrieval-augmented captioning, and ``ravl ask`` accuracy.

    python benchmarks/offline_lm.py --workdir /tmp/ravl-lm-bench [--n 150 | --sample 200 --seed 14]
        [--emoji DIR] [--skip-ask]

Captioning: leave-one-out on a fixed subset (every k-th item, sorted by path) of the Tux Paint
stamps (Debian ``tuxpaint-stamps-default``) and, with ``--emoji``, of an npm
``emoji-datasource-google`` / ``-twitter`` folder (the emoji's Unicode name as its caption). The
whole set is the retrieval datastore; each evaluated image is excluded from its own retrieval.
Scores are BLEU-4, METEOR, ROUGE-L and CIDEr-D as pycocoevalcap computes them (Java backend when
present), and seconds per caption measured in the same run.

Prompts compared (all with k=5 neighbours, the 4 best consensus-ranked captions in the prompt):

* ``smallcap-plain`` — SmallCap's template continued as plain text (``smollm2?chat=0``);
* ``smallcap-chat`` — the same text inside SmolLM2's chat template;
* ``instruct`` — an instruction in the chat template: "write one short caption in the same style".

``ask``: questions with known answers written from the stamps' descriptions; an answer is right
when it contains one of the accepted words, and a citation is valid when it names evidence whose
text contains the answer word.

The emoji reader here is minimal (issue 12 adds a proper one): ``emoji.json`` gives each image's
file name and Unicode name; flags are left out.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

INSTRUCT = ("Here are captions of images similar to a new image:\n\n{captions}\n\n"
            "Write one short caption for the new image, in the same style. Reply with the caption only.")
PROMPTS = {"smallcap-plain": ("smollm2?chat=0", None), "smallcap-chat": ("smollm2", None),
           "instruct": ("smollm2", INSTRUCT)}

# (stamp file stem, question, accepted answer words) written from the stamps' descriptions
QUESTIONS = [
    ("animals/birds/crow", "What animal is this?", ("crow", "bird")),
    ("animals/birds/magpie", "What animal is this?", ("magpie", "bird")),
    ("animals/mammals/camel/camel", "What animal is this?", ("camel",)),
    ("animals/mammals/giraffe", "What animal is this?", ("giraffe",)),
    ("food/fruit/strawberry", "What fruit is this?", ("strawberr",)),
    ("food/fruit/lemon", "What fruit is this?", ("lemon",)),
    ("food/vegetables/carrot", "What vegetable is this?", ("carrot",)),
    ("food/vegetables/garlic", "What vegetable is this?", ("garlic",)),
    ("plants/flowers/rose", "What flower is this?", ("rose",)),
    ("hobbies/music/string/guitar_electric", "What musical instrument is this?", ("guitar",)),
    ("household/dishes/coffeecup", "What drink is this?", ("coffee",)),
    ("household/tools/wrench", "What tool is this?", ("wrench", "spanner")),
    ("vehicles/auto/beetle", "What kind of vehicle is this?", ("car", "beetle")),
    ("vehicles/construction/cartoon/terex", "What kind of vehicle is this?", ("truck",)),
    ("vehicles/flight/cartoon/eddieCopter", "What kind of vehicle is this?", ("helicopter",)),
]


STOP = {"this", "that", "image", "shows", "evidence", "there", "with", "from", "what", "which", "cannot", "tell"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def emoji_manifest(folder: Path, out: Path) -> int:
    """A JSONL manifest of an emoji-datasource-* folder: 64px PNG + lower-cased Unicode name."""
    data = json.loads((folder / "emoji.json").read_text(encoding="utf-8"))
    vendor = folder.name.split("-")[-1]
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for e in data:
            img = folder / "img" / vendor / "64" / e["image"]
            if e.get("category") == "Flags" or not img.is_file() or not e.get("name"):
                continue
            fh.write(json.dumps({"image": str(img), "caption": e["name"].lower()}) + "\n")
            n += 1
    return n


def stamps_manifest(out: Path) -> int:
    from ravl.demo import write_stamps_manifest

    return write_stamps_manifest(out)


def collection_for(workdir: Path, name: str, manifest: Path):
    from ravl.collection import open_collection
    from ravl.ingest.pipeline import index_sources

    coll = open_collection(workdir / name, create=True)
    t = time.perf_counter()
    report = index_sources(coll, [str(manifest)])
    log(f"{name}: indexed in {time.perf_counter() - t:.0f} s ({report.to_dict().get('added', '?')} added)")
    return coll


def subset(records, n: int):
    records = sorted(records, key=lambda r: r.uri)
    step = max(1, len(records) // n)
    return records[::step][:n]


def caption_runs(coll, records, workdir: Path, name: str, prompts: list[str]) -> list[dict]:
    from ravl.eval.captioning import evaluate_captioning
    from ravl.generate.base import GenerationParams, load_generator

    rows = []
    params = GenerationParams(max_tokens=24)
    loaded: dict[str, object] = {}
    for label in ["consensus", *prompts]:
        spec, template = ("consensus", None) if label == "consensus" else PROMPTS[label]
        if spec not in loaded:
            t = time.perf_counter()
            loaded[spec] = load_generator(spec)
            log(f"loaded {spec} in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        run = evaluate_captioning(coll, records, generator=loaded[spec], k=5, leave_one_out=True, params=params,
                                  template=template, cache_dir=workdir / f"cache-{name}-{label}")
        seconds = time.perf_counter() - t
        metrics = dict(run.scores.corpus)
        gen_s = run.seconds.get("generate", 0.0)
        row = {"dataset": name, "prompt": label, "n": len(records), "computed": run.computed,
               "s_per_caption": round(gen_s / max(1, run.computed), 3), "wall_s": round(seconds, 1),
               "errors": run.n_errors, "metrics": metrics,
               "examples": [(u.rsplit("/", 1)[-1], row["caption"], run.references[u][0])
                            for u, row in list(run.captions.items())[:6]]}
        row["per_image"] = {u: v.get("CIDEr-D") for u, v in run.scores.per_image.items()}
        row["captions"] = {u: r["caption"] for u, r in run.captions.items()}
        rows.append(row)
        log(json.dumps({k: v for k, v in row.items() if k not in ("examples", "per_image", "captions")}))
    return rows


ARTICLES = {"", "a", "an", "the"}  # as ravl.rag.caption rejects them


def degenerate(caption: str) -> bool:
    """A caption that is only an article (SmolLM2 sometimes stops after "a"), or nothing."""
    return " ".join(re.sub(r"[^a-z]+", " ", caption.lower()).split()) in ARTICLES


def with_fallback(rows: list[dict], records, name: str) -> list[dict]:
    """What each LM prompt would score if a :func:`degenerate` caption were replaced by the
    consensus caption: scored, not generated again."""
    from ravl.eval.scoring import score_captions

    base = next(r for r in rows if r["prompt"] == "consensus")
    refs = {r.uri: list(r.captions) for r in records}
    out = []
    for row in rows:
        if row is base:
            continue
        caps = {u: base["captions"][u] if degenerate(c) else c for u, c in row["captions"].items()}
        scores = score_captions(refs, caps)
        out.append({"dataset": name, "prompt": row["prompt"] + "+fallback", "n": len(caps),
                    "s_per_caption": row["s_per_caption"], "metrics": dict(scores.corpus),
                    "replaced": sum(1 for c in row["captions"].values() if degenerate(c)),
                    "per_image": {u: v.get("CIDEr-D") for u, v in scores.per_image.items()}})
        log(json.dumps({k: v for k, v in out[-1].items() if k != "per_image"}))
    return out


def paired_bootstrap(base: dict, other: dict, rounds: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean per-image CIDEr-D difference (other - base) on the images both scored, with a 95%
    bootstrap interval over images (same IDF: both are scored against the same references)."""
    keys = sorted(set(base) & set(other))
    diffs = [float(other[u]) - float(base[u]) for u in keys if base[u] is not None and other[u] is not None]
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(rounds))
    return sum(diffs) / len(diffs), means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def ask_runs(coll, questions, spec: str = "smollm2") -> dict:
    from ravl.generate.base import GenerationParams, load_generator
    from ravl.images import load_image
    from ravl.rag import AskOptions, ask_image

    items = {Path(u).with_suffix("").as_posix(): (item_id, u) for u, (item_id, *_rest) in coll.file_states().items()}
    gen = load_generator(spec)
    results: list[dict] = []
    stats = dict.fromkeys(("correct", "cited", "citations", "supporting", "reachable"), 0)
    for stem, question, accepted in questions:
        match = [key for key in items if key.endswith(stem)]
        if not match:
            log(f"ask: no stamp {stem}, skipped")
            continue
        item_id, uri = items[match[0]]
        t = time.perf_counter()
        res = ask_image(coll, load_image(uri).image, question, generator=gen, exclude_items=[item_id],
                        options=AskOptions(k=5, ocr=False, labels=3, params=GenerationParams(max_tokens=48)))
        answer = res.answer.lower()
        ok = any(a in answer for a in accepted)
        words = {w for w in re.findall(r"[a-z]{4,}", answer)} - STOP
        good = [c for c in res.citations if words & set(re.findall(r"[a-z]{4,}", res.evidence[c - 1]["text"].lower()))]
        reachable = any(a in ev["text"].lower() for ev in res.evidence for a in accepted)
        stats["correct"] += ok
        stats["cited"] += bool(res.citations)
        stats["citations"] += len(res.citations)
        stats["supporting"] += len(good)
        stats["reachable"] += reachable
        results.append({"stamp": stem, "question": question, "answer": res.answer, "correct": ok,
                        "answer_in_evidence": reachable, "citations": res.citations, "supporting_citations": good,
                        "seconds": round(time.perf_counter() - t, 2)})
        log(json.dumps(results[-1], ensure_ascii=False))
    n = len(results)
    return {"n": n, "accuracy": stats["correct"] / n, "answer_in_evidence": stats["reachable"] / n,
            "answers_citing": stats["cited"] / n,
            "citations_supporting": stats["supporting"] / stats["citations"] if stats["citations"] else None,
            "rows": results}


def score_caches(workdir: Path, name: str, manifest: Path, labels: list[str], backend: str) -> list[dict]:
    """Score what an interrupted run left in its per-image caches, on the images every prompt reached
    (each cache line is one finished caption, so the comparison stays paired)."""
    from ravl.eval.scoring import score_captions
    from ravl.ingest.sources import read_sources

    refs = {r.uri: list(r.captions) for r in read_sources([str(manifest)])}
    got = {}
    for label in labels:
        rows = {}
        for f in (workdir / f"cache-{name}-{label}").glob("*.jsonl"):
            for line in f.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                rows[row["key"]] = row["value"]
        got[label] = rows
    common = sorted(set.intersection(*(set(rows) for rows in got.values())))
    out = []
    for label in labels:
        scores = score_captions({u: refs[u] for u in common}, {u: got[label][u]["caption"] for u in common},
                                backend=backend)
        out.append({"dataset": name, "prompt": label, "n": len(common), "s_per_caption": float("nan"),
                    "metrics": dict(scores.corpus),
                    "fell_back": sum(1 for u in common if got[label][u].get("method") == "consensus")})
    return out


def _metric(metrics: dict, name: str) -> float:
    value = metrics.get(name)
    return float("nan") if value is None else float(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--n", type=int, default=150, help="evaluated images per dataset (fixed subset)")
    ap.add_argument("--sample", type=int, default=0, help="evaluate a fixed random subset of this many images "
                                                          "(seeded by --seed; overrides --n and --stride)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--stride", type=int, default=1, help="then keep every STRIDE-th of those (a smaller run "
                                                          "whose captions are a subset of the full run's)")
    ap.add_argument("--questions", type=int, default=len(QUESTIONS), help="ask only the first N questions")
    ap.add_argument("--emoji", type=Path, help="an emoji-datasource-google (or -twitter) folder from npm")
    ap.add_argument("--prompts", default=",".join(PROMPTS), help="comma-separated prompt labels")
    ap.add_argument("--skip-ask", action="store_true")
    ap.add_argument("--skip-captions", action="store_true", help="only the ask questions")
    ap.add_argument("--skip-stamps", action="store_true")
    ap.add_argument("--from-caches", action="store_true", help="only score the captions the caches hold, on the "
                                                               "images every prompt reached")
    ap.add_argument("--backend", default="auto", choices=("auto", "java", "python"))
    args = ap.parse_args()
    from ravl.ingest.sources import read_sources

    args.workdir.mkdir(parents=True, exist_ok=True)
    prompts = [p for p in args.prompts.split(",") if p]
    out: dict = {"captioning": [], "ask": None}
    datasets = []
    if not args.skip_stamps:
        m = args.workdir / "stamps.jsonl"
        if stamps_manifest(m):
            datasets.append(("stamps", m))
    if args.emoji:
        m = args.workdir / "emoji.jsonl"
        emoji_manifest(args.emoji, m)
        datasets.append((f"emoji-{args.emoji.name.split('-')[-1]}", m))
    for name, manifest in datasets:
        if args.from_caches:
            out["captioning"] += score_caches(args.workdir, name, manifest, ["consensus", *prompts], args.backend)
            continue
        coll = collection_for(args.workdir, name, manifest)
        if args.sample:
            records = sorted(read_sources([str(manifest)]), key=lambda r: r.uri)
            records = random.Random(args.seed).sample(records, min(args.sample, len(records)))
        else:
            records = subset(read_sources([str(manifest)]), args.n)[::args.stride]
        if not args.skip_captions:
            rows = caption_runs(coll, records, args.workdir, name, prompts)
            out["captioning"] += rows + with_fallback(rows, records, name)
        if name == "stamps" and not args.skip_ask:
            out["ask"] = ask_runs(coll, QUESTIONS[:args.questions])
        coll.close()
    (args.workdir / "results.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
    print(f"{'dataset':14s} {'prompt':15s} {'n':>4s} {'BLEU-4':>7s} {'METEOR':>7s} {'ROUGE-L':>7s} {'CIDEr-D':>7s} {'s/cap':>6s}")
    for r in out["captioning"]:
        m = r["metrics"]
        print(f"{r['dataset']:14s} {r['prompt']:15s} {r['n']:4d} {_metric(m, 'BLEU-4'):7.3f} "
              f"{_metric(m, 'METEOR'):7.3f} {_metric(m, 'ROUGE-L'):7.3f} "
              f"{_metric(m, 'CIDEr-D'):7.3f} {r['s_per_caption']:6.2f}")
    for r in out["captioning"]:
        base = next((b for b in out["captioning"] if b["dataset"] == r["dataset"] and b["prompt"] == "consensus"), None)
        if base is not None and r is not base and r.get("per_image") and base.get("per_image"):
            mean, lo, hi = paired_bootstrap(base["per_image"], r["per_image"])
            print(f"{r['dataset']}: per-image CIDEr-D {r['prompt']} - consensus = {mean:+.3f} "
                  f"(95% bootstrap interval {lo:+.3f} .. {hi:+.3f}, {len(r['per_image'])} images)")
    if out["ask"]:
        a = out["ask"]
        print(f"ask (smollm2, {a['n']} questions): accuracy {a['accuracy']:.2f} (answer word in the evidence: "
              f"{a['answer_in_evidence']:.2f}), answers citing evidence {a['answers_citing']:.2f}, citations whose "
              f"evidence shares a word with the answer {a['citations_supporting']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
