"""ravl search --collection DIR (--text T | --image PATH | --queries FILE)"""
from __future__ import annotations

from .common import add_collection_arg, add_search_knobs, emit_json


def add_parser(sub) -> None:
    p = sub.add_parser("search", help="search a collection by text or image",
                       description="Text->image, image->image and image->text search. Results go to stdout as "
                                   "'score<TAB>uri<TAB>caption' lines, or JSON lines with --json.")
    add_collection_arg(p)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", "-t", metavar="T", help="text query")
    q.add_argument("--image", "-i", metavar="PATH", help="image query")
    q.add_argument("--queries", metavar="FILE",
                   help="JSONL file, one {\"text\": ...} or {\"image\": path} per line (paths relative to the file)")
    p.add_argument("--target", choices=("images", "captions"), default="images",
                   help="what to return: images (default) or captions")
    p.add_argument("--k", "-k", type=int, default=10, help="number of results per query (default 10)")
    p.add_argument("--mode", choices=("auto", "vector", "keyword", "hybrid"), default="auto",
                   help="text queries: vector (shared space), keyword (BM25 over captions, sidecar and OCR text), "
                        "hybrid (both, reciprocal rank fusion) or auto (default: hybrid when the collection has text)")
    p.add_argument("--vector-weight", type=float, default=1.0, metavar="W",
                   help="hybrid: weight of the vector ranking (default 1)")
    p.add_argument("--keyword-weight", type=float, default=1.0, metavar="W",
                   help="hybrid: weight of the keyword ranking (default 1)")
    p.add_argument("--rrf-k", type=float, default=60.0, metavar="K",
                   help="hybrid: rank offset of reciprocal rank fusion (default 60)")
    add_search_knobs(p)
    p.add_argument("--json", action="store_true", help="one JSON object per query: {\"query\": ..., \"results\": [...]}; "
                   "text results carry found_by: the rank each signal gave them")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..collection import open_collection
    from ..hybrid import Fusion
    from ..query import read_queries, run_queries

    if args.queries:
        queries = read_queries(args.queries)
    elif args.text is not None:
        queries = [{"text": args.text}]
    else:
        queries = [{"image": str(Path(args.image).expanduser().resolve())}]
    with open_collection(args.collection, readonly=True) as coll:
        fusion = Fusion(args.vector_weight, args.keyword_weight, args.rrf_k)
        answers = run_queries(coll, queries, target=args.target, k=args.k, mode=args.mode, fusion=fusion,
                              ef_search=args.ef_search, nprobe=args.nprobe)
    for answer in answers:
        if args.json:
            emit_json(answer)
            continue
        if len(answers) > 1:
            print(f"# {answer['query']}")
        for r in answer["results"]:
            if args.target == "images":
                caption = r["captions"][0] if r["captions"] else ""
                print(f"{r['score']:.4f}\t{r['uri']}\t{caption}")
            else:
                print(f"{r['score']:.4f}\t{r['caption']}\t{r['uri']}")
    return 0
