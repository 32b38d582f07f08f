"""``ravl ask`` on questions with known short answers about the Tux Paint stamps, leave-one-out.

    python benchmarks/stamps_qa.py --workdir /tmp/ravl-qa [--generators consensus,smollm2] [--limit N]

The questions are ``benchmarks/data/stamps_qa.jsonl``: one stamp (path under
/usr/share/tuxpaint/stamps, Debian ``tuxpaint-stamps-default``), a question, the accepted short
answers, and the stamp's human description they were written from. The datastore is every
stamp (``ravl demo``'s stamps manifest); each question's own stamp, and any stamp with the same
bytes, is left out of its retrieval, so its own description can never be evidence.

Per generator, on the same retrieval (k=5 neighbours, ask's default 3 class labels, no OCR):

* accuracy: the answer, lower-cased with everything but letters and digits turned into spaces,
  contains an accepted answer as whole words, a plural "s"/"es" allowed ("pear" matches "A pear."
  and "pears", not "pearl"; "grape" matches "a bunch of grapes");
* reachable: an accepted answer is in the evidence text at all (the ceiling for any generator);
* citation validity: every ``[n]`` in the raw answer is counted; it is valid when evidence ``n``
  exists and comes from a retrieved neighbour (not the query stamp, not a class label);
  supporting when that evidence also contains an accepted answer;
* listing: answers that cite 3 or more pieces of evidence, usually by copying the numbered
  evidence list; "no-list" accuracy counts those as wrong even when the right word is in the list;
* seconds per question (retrieval + generation), measured in this run.

``consensus`` is a language-model-free baseline: ``ravl ask --generator consensus`` returns no
answer (only the evidence), so its "answer" here is the caption consensus picks among the
neighbours (what ``ravl caption --generator consensus`` prints), cited as the evidence of the
neighbour it came from.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

DATA = Path(__file__).resolve().parent / "data" / "stamps_qa.jsonl"
STAMPS = "/usr/share/tuxpaint/stamps/"
_CITE = re.compile(r"\[(\d{1,3})\]")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def normalise(text: str) -> str:
    return " " + " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split()) + " "


def matches(text: str, accepted) -> bool:
    """An accepted answer occurs in ``text`` as whole words (a plural 's'/'es' allowed)."""
    norm = normalise(text)
    return any(re.search(rf" {re.escape(a.lower())}(s|es)? ", norm) for a in accepted)


def load_questions(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _ask(coll, image, q, gen, exclude, k):
    from ravl.generate.base import GenerationParams
    from ravl.rag import AskOptions, ask_image

    return ask_image(coll, image, q["question"], generator=gen, exclude_items=exclude,
                     options=AskOptions(k=k, ocr=False, params=GenerationParams(max_tokens=48)))


def summarise(rows: list[dict], load_s: float | None = None) -> dict:
    """The figures for one generator's rows (see the module docstring)."""
    n = len(rows)
    cites = sum(len(r["citations"]) for r in rows)
    reach = [r for r in rows if r["reachable"]]
    listing = [r for r in rows if len(set(r["citations"])) >= 3]
    return {"n": n, "load_s": None if load_s is None else round(load_s, 1),
            "accuracy": sum(r["correct"] for r in rows) / n,
            "accuracy_not_listing": sum(r["correct"] and len(set(r["citations"])) < 3 for r in rows) / n,
            "listing": len(listing) / n,
            "reachable": len(reach) / n,
            "accuracy_when_reachable": sum(r["correct"] for r in reach) / max(1, len(reach)),
            "answers_citing": sum(bool(r["citations"]) for r in rows) / n,
            "citations": cites,
            "citations_valid": sum(len(r["valid"]) for r in rows) / cites if cites else None,
            "citations_supporting": sum(len(r["supporting"]) for r in rows) / cites if cites else None,
            "s_per_question": round(sum(r["seconds"] for r in rows) / n, 2), "rows": rows}


def run(coll, questions, specs, k: int = 5) -> dict:
    from ravl.eval.runner import file_sha256
    from ravl.generate.base import load_generator
    from ravl.images import load_image
    from ravl.rag import caption_image

    states = coll.file_states()  # uri -> (id, size, mtime_ns, sha256)
    by_sha: dict[str, list[int]] = {}
    for item_id, _size, _mtime, sha in states.values():
        by_sha.setdefault(sha, []).append(item_id)
    out = {}
    for spec in specs:
        t = time.perf_counter()
        gen = load_generator(spec)
        load_s = time.perf_counter() - t
        rows = []
        for q in questions:
            path = STAMPS + q["stamp"]
            own = states[path][0]
            exclude = sorted({own, *by_sha.get(file_sha256(Path(path)), [])})
            image = load_image(path).image
            t = time.perf_counter()
            res = _ask(coll, image, q, gen, exclude, k)
            neighbour_ids = {n.id for n in res.neighbours}
            if gen.is_language_model:
                answer = res.answer
                raw = [int(m) for m in _CITE.findall(answer)]
            else:  # the consensus pick among the same neighbours' captions, cited as its neighbour's evidence
                cap = caption_image(coll, image, k=k, generator=gen, exclude_items=exclude)
                answer = cap.caption
                src = next((c.get("image_id") for c in cap.candidates if c.get("caption") == answer), None)
                raw = [e["number"] for e in res.evidence if e["item_id"] is not None and e["item_id"] == src][:1]
            seconds = time.perf_counter() - t
            ev = {e["number"]: e for e in res.evidence}
            valid = [n for n in raw if n in ev and ev[n]["item_id"] in neighbour_ids and ev[n]["item_id"] not in exclude]
            supporting = [n for n in valid if matches(ev[n]["text"], q["answers"])]
            rows.append({"stamp": q["stamp"], "question": q["question"], "expected": q["answers"][0],
                         "answer": answer, "correct": matches(answer, q["answers"]),
                         "reachable": any(matches(e["text"], q["answers"]) for e in res.evidence),
                         "citations": raw, "valid": valid, "supporting": supporting,
                         "evidence": [e["text"] for e in res.evidence], "seconds": round(seconds, 2)})
            log(json.dumps({"generator": spec, **{key: rows[-1][key] for key in
                                                  ("stamp", "answer", "correct", "citations", "valid", "seconds")}},
                           ensure_ascii=False))
        out[spec] = summarise(rows, load_s)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True, type=Path, help="holds the stamps collection (reused when present)")
    ap.add_argument("--generators", default="consensus,smollm2")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--rescore", action="store_true", help="recompute the figures from WORKDIR/qa-results.json")
    args = ap.parse_args()
    from ravl.collection import open_collection
    from ravl.demo import write_stamps_manifest
    from ravl.ingest.pipeline import index_sources

    args.workdir.mkdir(parents=True, exist_ok=True)
    manifest = args.workdir / "stamps.jsonl"
    if not write_stamps_manifest(manifest):
        raise SystemExit("Tux Paint stamps not installed: apt-get install tuxpaint-stamps-default")
    questions = load_questions()[: args.limit or None]
    saved = args.workdir / "qa-results.json"
    if args.rescore:
        results = {spec: summarise(r["rows"], r.get("load_s")) for spec, r in json.loads(saved.read_text()).items()}
    else:
        with open_collection(args.workdir / "stamps", create=True) as coll:
            index_sources(coll, [str(manifest)])  # a no-op when the collection is up to date
            results = run(coll, questions, [s for s in args.generators.split(",") if s], k=args.k)
    saved.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(f"{'generator':12s} {'n':>3s} {'accuracy':>8s} {'no-list':>7s} {'reachable':>9s} {'acc|reach':>9s} "
          f"{'citing':>6s} {'valid':>6s} {'support':>7s} {'s/q':>6s}")
    for spec, r in results.items():
        def f(x):
            return "   n/a" if x is None else f"{x:6.2f}"
        print(f"{spec:12s} {r['n']:3d} {r['accuracy']:8.2f} {r['accuracy_not_listing']:7.2f} {r['reachable']:9.2f} "
              f"{r['accuracy_when_reachable']:9.2f} "
              f"{r['answers_citing']:6.2f} "
              f"{f(r['citations_valid'])} {f(r['citations_supporting']):>7s} {r['s_per_question']:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
