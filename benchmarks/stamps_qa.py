"""``ravl ask`` on questions with known short answers about the Tux Paint stamps, leave-one-out,
and about images that are not in the collection at all.

    python benchmarks/stamps_qa.py --workdir /tmp/ravl-qa [--generators consensus,smollm2] [--limit N]
                                   [--sets stamps,outside]

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

The ``outside`` set (``benchmarks/data/outside_qa.jsonl``) asks about images the collection does not
hold: scikit-image's bundled photos (a cat, coffee, a rocket, a motorcycle, the moon, ...), shapes
drawn in one colour and rendered signs ("What is this?", "What colour is it?", "Is this a cat or a
dog?", "What does the sign say?"); OCR is on (when Tesseract is installed) and nothing is left out.
Questions marked ``abstain_ok`` have no right object to name ("Is this a cat or a dog?" about
coffee): abstaining is correct there.

Grounding (:mod:`ravl.rag.grounding`), per generator, on what the user is shown:

* grounded: an answer (not an abstention) whose every content word occurs in or is entailed by the
  evidence (the strict check, WordNet synonyms and hypernyms included);
* unsupported: an answer (not an abstention) with a word no evidence supports or entails: what a
  user would quote as ravl's claim without any basis in what ravl found (hallucinated);
* abstentions: "I can't tell from the evidence" (with or without the closest matches) or the
  model's own "cannot tell";
* correct: the accepted answer is in the answer (for ``abstain_ok`` questions: an abstention or
  "neither"); "committed" counts only answers that are not abstentions;
* raw unsupported: the same check on what the model wrote before ravl's check replaced it (so the
  rate the check prevents).

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
OUTSIDE = Path(__file__).resolve().parent / "data" / "outside_qa.jsonl"
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


_ABSTAIN = re.compile(r"\b(can't|cannot|can not|unable to) (tell|say|determine|answer)|\bnot sure\b", re.I)


def outside_image(name: str):
    """``skimage:NAME`` (scikit-image's bundled photos), ``shape:KIND:COLOUR`` or ``sign:TEXT``."""
    from PIL import Image, ImageDraw, ImageFont

    kind, _, rest = name.partition(":")
    if kind == "skimage":
        import numpy as np
        import skimage.data

        arr = getattr(skimage.data, rest)()
        arr = arr[0] if isinstance(arr, tuple) else arr
        if arr.dtype == bool:
            arr = np.where(arr, 0, 255).astype("uint8")
        return Image.fromarray(arr).convert("RGB")
    image = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(image)
    if kind == "shape":
        shape, colour = rest.split(":")
        box = (48, 48, 208, 208)
        {"disc": draw.ellipse, "square": draw.rectangle}.get(shape, lambda b, fill: draw.polygon(
            [(128, 40), (216, 210), (40, 210)], fill=fill))(box, fill=colour)
        return image
    font_path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
    font = ImageFont.truetype(str(font_path), 56) if font_path.exists() else ImageFont.load_default(size=56)
    image = Image.new("RGB", (120 + 40 * len(rest), 160), (250, 250, 240))
    ImageDraw.Draw(image).text((40, 50), rest, font=font, fill=(10, 10, 10))
    return image


def _ask(coll, image, q, gen, exclude, k, ocr=False):
    from ravl.generate.base import GenerationParams
    from ravl.rag import AskOptions, ask_image

    return ask_image(coll, image, q["question"], generator=gen, exclude_items=exclude,
                     options=AskOptions(k=k, ocr=ocr, params=GenerationParams(max_tokens=48)))


def grounding_row(answer: str, raw: str, evidence: list[dict], question: str) -> dict:
    """Abstention / grounded / unsupported for the answer shown, and unsupported for the model's own."""
    from ravl.rag.grounding import STRICT, check_answer

    abstained = bool(_ABSTAIN.search(answer))
    grounded = (not abstained) and check_answer(answer, evidence, question=question, mode=STRICT).grounded
    raw_abstained = bool(_ABSTAIN.search(raw))
    raw_grounded = (not raw_abstained) and check_answer(raw, evidence, question=question, mode=STRICT).grounded
    return {"abstained": abstained, "grounded": grounded, "unsupported": not abstained and not grounded,
            "raw_unsupported": not raw_abstained and not raw_grounded}


def summarise(rows: list[dict], load_s: float | None = None) -> dict:
    """The figures for one generator's rows (see the module docstring)."""
    n = len(rows)
    cites = sum(len(r["citations"]) for r in rows)
    reach = [r for r in rows if r["reachable"]]
    listing = [r for r in rows if len(set(r["citations"])) >= 3]
    return {"n": n, "load_s": None if load_s is None else round(load_s, 1),
            "accuracy": sum(r["correct"] for r in rows) / n,
            "accuracy_committed": sum(r["correct"] and not r.get("abstained") for r in rows) / n,
            "accuracy_not_listing": sum(r["correct"] and len(set(r["citations"])) < 3 for r in rows) / n,
            "grounded": sum(r.get("grounded", False) for r in rows) / n,
            "unsupported": sum(r.get("unsupported", False) for r in rows) / n,
            "abstained": sum(r.get("abstained", False) for r in rows) / n,
            "raw_unsupported": sum(r.get("raw_unsupported", False) for r in rows) / n,
            "listing": len(listing) / n,
            "reachable": len(reach) / n,
            "accuracy_when_reachable": sum(r["correct"] for r in reach) / max(1, len(reach)),
            "answers_citing": sum(bool(r["citations"]) for r in rows) / n,
            "citations": cites,
            "citations_valid": sum(len(r["valid"]) for r in rows) / cites if cites else None,
            "citations_supporting": sum(len(r["supporting"]) for r in rows) / cites if cites else None,
            "s_per_question": round(sum(r["seconds"] for r in rows) / n, 2), "rows": rows}


def _exclusions(coll):
    from ravl.eval.runner import file_sha256

    states = coll.file_states()  # uri -> (id, size, mtime_ns, sha256)
    by_sha: dict[str, list[int]] = {}
    for item_id, _size, _mtime, sha in states.values():
        by_sha.setdefault(sha, []).append(item_id)

    def exclude(path: str) -> list[int]:
        return sorted({states[path][0], *by_sha.get(file_sha256(Path(path)), [])})
    return exclude


def run(coll, questions, specs, k: int = 5, outside: bool = False) -> dict:
    """Every question through every generator; ``outside``: the questions name images outside the
    collection (:func:`outside_image`), read with OCR, nothing left out of retrieval."""
    from ravl.generate.base import load_generator
    from ravl.images import load_image
    from ravl.rag import caption_image

    exclusions = None if outside else _exclusions(coll)
    out = {}
    for spec in specs:
        t = time.perf_counter()
        gen = load_generator(spec)
        load_s = time.perf_counter() - t
        rows = []
        for q in questions:
            if outside:
                image, exclude, name = outside_image(q["image"]), [], q["image"]
            else:
                path = STAMPS + q["stamp"]
                image, exclude, name = load_image(path).image, exclusions(path), q["stamp"]
            t = time.perf_counter()
            res = _ask(coll, image, q, gen, exclude, k, ocr=None if outside else False)
            neighbour_ids = {n.id for n in res.neighbours}
            if gen.is_language_model:
                answer = res.answer
                raw_text = res.model_answer if res.model_answer is not None else res.answer
                raw = [int(m) for m in _CITE.findall(answer)]
            else:  # the consensus pick among the same neighbours' captions, cited as its neighbour's evidence
                cap = caption_image(coll, image, k=k, generator=gen, exclude_items=exclude)
                answer = raw_text = cap.caption
                src = next((c.get("image_id") for c in cap.candidates if c.get("caption") == answer), None)
                raw = [e["number"] for e in res.evidence if e["item_id"] is not None and e["item_id"] == src][:1]
            seconds = time.perf_counter() - t
            ev = {e["number"]: e for e in res.evidence}
            valid = [n for n in raw if n in ev and ev[n]["item_id"] in neighbour_ids and ev[n]["item_id"] not in exclude]
            supporting = [n for n in valid if matches(ev[n]["text"], q["answers"])]
            g = grounding_row(answer, raw_text, res.evidence, q["question"])
            correct = matches(answer, q["answers"]) or bool(q.get("abstain_ok") and g["abstained"])
            rows.append({"image": name, "question": q["question"], "expected": q["answers"][0],
                         "answer": answer, "model_answer": raw_text, "correct": correct, **g,
                         "reachable": any(matches(e["text"], q["answers"]) for e in res.evidence),
                         "citations": raw, "valid": valid, "supporting": supporting,
                         "evidence": [e["text"] for e in res.evidence], "seconds": round(seconds, 2)})
            log(json.dumps({"generator": spec, **{key: rows[-1][key] for key in
                                                  ("image", "answer", "correct", "grounded", "unsupported",
                                                   "abstained", "seconds")}}, ensure_ascii=False))
        out[spec] = summarise(rows, load_s)
    return out


def print_table(results: dict) -> None:
    print(f"{'set':8s} {'generator':10s} {'n':>3s} {'correct':>7s} {'commit':>6s} {'grounded':>8s} {'unsupp':>6s} "
          f"{'abstain':>7s} {'raw-uns':>7s} {'reach':>5s} {'valid':>6s} {'s/q':>5s}")
    for name, per_spec in results.items():
        for spec, r in per_spec.items():
            valid = "   n/a" if r["citations_valid"] is None else f"{r['citations_valid']:6.2f}"
            print(f"{name:8s} {spec:10s} {r['n']:3d} {r['accuracy']:7.2f} {r['accuracy_committed']:6.2f} "
                  f"{r['grounded']:8.2f} {r['unsupported']:6.2f} {r['abstained']:7.2f} {r['raw_unsupported']:7.2f} "
                  f"{r['reachable']:5.2f} {valid} {r['s_per_question']:5.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True, type=Path, help="holds the stamps collection (reused when present)")
    ap.add_argument("--generators", default="consensus,smollm2")
    ap.add_argument("--sets", default="stamps,outside", help="stamps (leave-one-out), outside (not in the collection)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions of each set")
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
    sets = [s for s in args.sets.split(",") if s]
    saved = args.workdir / "qa-results.json"
    if args.rescore:
        results = {name: {spec: summarise(r["rows"], r.get("load_s")) for spec, r in per.items()}
                   for name, per in json.loads(saved.read_text()).items()}
    else:
        specs = [s for s in args.generators.split(",") if s]
        results = {}
        with open_collection(args.workdir / "stamps", create=True) as coll:
            index_sources(coll, [str(manifest)])  # a no-op when the collection is up to date
            for name in sets:
                questions = load_questions(DATA if name == "stamps" else OUTSIDE)[: args.limit or None]
                results[name] = run(coll, questions, specs, k=args.k, outside=name == "outside")
    saved.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
