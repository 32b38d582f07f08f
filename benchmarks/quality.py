"""The quality suite: held-out text->image queries on public data, every search mode, base and tuned.

Datasets (offline, built from Debian's Tux Paint stamps and, when `make data` has run, npm emoji):
  stamps-half     562 stamps; a deterministic half carries its description as a caption; the other
                  half's descriptions are the queries (relevant: the stamps with that description)
  stamps-nocap    the same stamps with no caption at all (a photo folder); the same queries
  typed-half      80 short typed queries ("a cat", "a cup of coffee", "something red", ...) with
                  relevant stamps labelled by hand (benchmarks/data/typed_queries.jsonl), on stamps-half
  typed-nocap     the typed queries on stamps-nocap
  emoji           Noto emoji captioned with their names on a split; the other names are the queries
                  (only with .data/npm from `make data`)
Modes: vector, keyword, hybrid and the default (auto), on the base collection and after `ravl tune`.
The rule the default must keep: R@1 and R@10 >= the better of vector and keyword alone, minus 0.5.
Also: how often a top hit with score >= 0.5 is right (is the score true?), and the calibration fitted
on stamps-half (the source of ravl.scores.SUITE_DEFAULT).

    .venv/bin/python benchmarks/quality.py [--out benchmarks/out/quality] [--no-tune] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources
from ravl.ingest.tuxpaint import load_stamps, split_half

KS = (1, 5, 10)
MODES = ("vector", "keyword", "hybrid", "auto")
TYPED = Path(__file__).parent / "data" / "typed_queries.jsonl"
RULE_SLACK = 0.5


def _norm(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


def build(path: Path, rows: list[dict], encoder: str, fresh: bool) -> Path:
    """A collection at ``path`` from manifest rows ({"image", "caption"?}); reused when it exists."""
    if path.exists() and fresh:
        shutil.rmtree(path)
    if not path.exists():
        manifest = path.with_suffix(".jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with open_collection(path, encoder=encoder, create=True) as coll:
            index_sources(coll, [manifest])
    return path


def recall(coll, queries: list[tuple[str, set[str]]], mode: str, k: int = 10) -> dict:
    """R@1/5/10 (percent) and the top-1 precision of hits scoring >= 0.5."""
    hits = coll.search_text([q for q, _ in queries], mode=mode, k=k) if mode != "keyword" or coll.counts()["captions"] \
        else [[] for _ in queries]
    found = {f"R@{n}": 0.0 for n in KS}
    confident = right = 0
    for (_, relevant), row in zip(queries, hits):
        uris = [h.uri for h in row]
        for n in KS:
            found[f"R@{n}"] += any(u in relevant for u in uris[:n])
        if row and row[0].score >= 0.5:
            confident += 1
            right += uris[0] in relevant
    out = {key: round(100.0 * v / len(queries), 2) for key, v in found.items()}
    out["confident"] = confident
    out["confident_right"] = round(100.0 * right / confident, 1) if confident else None
    return out


def stamps_queries(stamps, report) -> list[tuple[str, set[str]]]:
    by_desc: dict[str, set[str]] = {}
    for s in stamps:
        by_desc.setdefault(_norm(s.description), set()).add(str(s.image))
    seen, out = set(), []
    for s in report:
        key = _norm(s.description)
        if key not in seen:
            seen.add(key)
            out.append((s.description, by_desc[key]))
    return out


def typed_queries(root: Path) -> list[tuple[str, set[str]]]:
    out = []
    for line in TYPED.read_text().splitlines():
        d = json.loads(line)
        out.append((d["query"], {str(root / r) for r in d["relevant"]}))
    return out


def emoji_sets(data: Path, out: Path, encoder: str, fresh: bool):
    """(collection path, queries) for Noto emoji captioned by name on a hashed half, or None."""
    pkg = data / "emoji-datasource-google"
    if not pkg.exists():
        return None
    import zlib

    from ravl.ingest.emoji import read_emoji_datasource

    records = list(read_emoji_datasource(pkg))
    rows, queries = [], []
    for r in records:
        name = r.captions[0] if r.captions else None
        if not name:
            continue
        if zlib.crc32(name.encode()) % 2:
            rows.append({"image": str(r.path), "caption": name})
        else:
            rows.append({"image": str(r.path)})
            queries.append((name, {str(r.path)}))
    return build(out / "emoji.ravl", rows, encoder, fresh), queries


def ann_recall(path: Path, out: Path, queries: list[str]) -> dict:
    """Text-query recall@10 of each ANN kind against exact search on a copy of ``path``, and the
    recall its build estimated (on the collection's caption vectors, the text queries it receives)."""
    with open_collection(path, readonly=True) as coll:
        exact = [[h.id for h in row] for row in coll.search_text(queries, mode="vector", k=10)]
    result = {}
    for kind in ("hnsw", "ivfpq"):
        copy = out / f"ann-{kind}.ravl"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(path, copy)
        with open_collection(copy) as coll:
            facts = coll.reindex(kind)["images"]
            got = [[h.id for h in row] for row in coll.search_text(queries, mode="vector", k=10)]
        shown = sum(len(set(a) & set(b)) for a, b in zip(got, exact)) / max(1, sum(len(b) for b in exact))
        result[kind] = {"estimate": facts.get("recall_at_10"), "query_kind": facts.get("recall_query_kind"),
                        "search": facts.get("search"), "text_queries_recall_at_10": round(shown, 4),
                        "note": facts.get("note")}
        shutil.rmtree(copy, ignore_errors=True)
    return result


def check_rule(table: dict) -> list[str]:
    fails = []
    for name, modes in table.items():
        for key in ("R@1", "R@10"):
            best_part = max(modes["vector"][key], modes["keyword"][key])
            if modes["auto"][key] < best_part - RULE_SLACK:
                fails.append(f"{name}: default {key} {modes['auto'][key]} < best part {best_part} - {RULE_SLACK}")
    return fails


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 3.6))
    width = 0.2
    for n, mode in enumerate(MODES):
        ax.bar([i + (n - 1.5) * width for i in range(len(names))], [table[d][mode]["R@10"] for d in names], width,
               label="default (auto)" if mode == "auto" else mode)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("text->image R@10 (%)")
    ax.set_title("ravl quality suite: each mode on held-out queries")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/quality"))
    ap.add_argument("--encoder", default="default")
    ap.add_argument("--data", type=Path, default=Path(".data/npm/node_modules"))
    ap.add_argument("--no-tune", action="store_true", help="skip the tuned collection")
    ap.add_argument("--fresh", action="store_true", help="rebuild the collections")
    ap.add_argument("--no-ann", action="store_true", help="skip the ANN recall check")
    ap.add_argument("--plot", default="docs/img/quality.png", help="where to draw the R@10 chart ('' for none)")
    args = ap.parse_args(argv)
    from ravl.ingest.tuxpaint import STAMPS_ROOT

    stamps = load_stamps()
    select, report = split_half(stamps)
    chosen = {str(s.image) for s in select}
    half_rows = [{"image": str(s.image), **({"caption": s.description} if str(s.image) in chosen else {})}
                 for s in stamps]
    half = build(args.out / "stamps-half.ravl", half_rows, args.encoder, args.fresh)
    nocap = build(args.out / "stamps-nocap.ravl", [{"image": str(s.image)} for s in stamps], args.encoder, args.fresh)
    sq, tq = stamps_queries(stamps, report), typed_queries(Path(STAMPS_ROOT))
    suites = {"stamps-half": (half, sq), "stamps-nocap": (nocap, sq), "typed-half": (half, tq),
              "typed-nocap": (nocap, tq)}
    emoji = emoji_sets(args.data, args.out, args.encoder, args.fresh)
    if emoji:
        suites["emoji"] = emoji
    if not args.no_tune:
        tuned = args.out / "stamps-half-tuned.ravl"
        if args.fresh or not tuned.exists():
            shutil.rmtree(tuned, ignore_errors=True)
            shutil.copytree(half, tuned)
            from ravl.tune import tune_collection

            with open_collection(tuned) as coll:
                rep = tune_collection(coll)
                print(f"# tune: {rep.message}", file=sys.stderr)
        suites["stamps-half tuned"] = (tuned, sq)
        suites["typed-half tuned"] = (tuned, tq)
    table: dict = {}
    calibrations = {}
    for name, (path, queries) in suites.items():
        with open_collection(path, readonly=True) as coll:
            table[name] = {mode: recall(coll, queries, mode) for mode in MODES}
            calibrations[path.name] = coll.calibration().to_dict()
        print(f"{name:20s} " + "  ".join(f"{m}: {table[name][m]['R@1']:.1f}/{table[name][m]['R@10']:.1f}"
                                         for m in MODES), file=sys.stderr)
    fails = check_rule(table)
    ann = {} if args.no_ann else ann_recall(half, args.out, [q for q, _ in sq + tq])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps({"table": table, "calibrations": calibrations,
                                                       "rule_failures": fails, "ann": ann}, indent=1))
    print("| dataset | queries | vector R@1/5/10 | keyword R@1/5/10 | hybrid R@1/5/10 | **default** R@1/5/10 "
          "| default top-1 right when score >= 0.5 |")
    print("|---|---|---|---|---|---|---|")
    for name, modes in table.items():
        cells = [" / ".join(f"{modes[m][f'R@{n}']:.1f}" for n in KS) for m in MODES]
        conf = modes["auto"]
        right = f"{conf['confident_right']}% of {conf['confident']}" if conf["confident"] else "none scored >= 0.5"
        print(f"| {name} | {len(suites[name][1])} | {cells[0]} | {cells[1]} | {cells[2]} | **{cells[3]}** | {right} |")
    print("\nrule (default >= best part - 0.5 on R@1 and R@10): " + ("PASS" if not fails else "FAIL: " + "; ".join(fails)))
    for kind, r in ann.items():
        print(f"\nANN {kind} on stamps-half: build estimate {r['estimate']} on {r['query_kind']} queries "
              f"({r['search']}); the suite's {len(sq) + len(tq)} text queries get {r['text_queries_recall_at_10']} "
              f"of the exact top 10" + (f" ({r['note']})" if r["note"] else ""))
    print("\ncalibration fitted on stamps-half:", json.dumps(calibrations.get(half.name)))
    if args.plot:
        plot(table, Path(args.plot))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
