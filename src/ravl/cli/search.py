"""ravl search --collection DIR (--text T | --image PATH | --queries FILE) [--add T] [--subtract T]"""
from __future__ import annotations

from .common import add_collection_arg, add_search_knobs, emit_json, log


def add_parser(sub) -> None:
    p = sub.add_parser("search", help="search a collection by text or image",
                       description="Text->image, image->image and image->text search. Results go to stdout as "
                                   "'score<TAB>uri<TAB>caption' lines, or JSON lines with --json. A score is in "
                                   "[0, 1]: how likely the hit is the query's match (docs/search.md). Query "
                                   "arithmetic: 'beach -people', '2:sunset + beach', 'pepper NOT red'.")
    add_collection_arg(p)
    p.add_argument("--text", "-t", metavar="T",
                   help="text query; terms combine with + and -, N:term weighs a term ('beach -people')")
    p.add_argument("--image", "-i", metavar="PATH", help="image query (with --text: both terms combine)")
    p.add_argument("--add", "-a", metavar="TERM", action="append", default=[],
                   help="add a term: a text, or the path of an image file (repeatable)")
    p.add_argument("--subtract", "-s", metavar="TERM", action="append", default=[],
                   help="subtract a term: a text or an image path (repeatable); --subtract red is the option "
                        "form of '-red'")
    p.add_argument("--queries", metavar="FILE",
                   help="JSONL file, one {\"text\": ...} or {\"image\": path} per line (paths relative to the file)")
    p.add_argument("--target", choices=("images", "captions"), default="images",
                   help="what to return: images (default) or captions")
    p.add_argument("--k", "-k", type=int, default=10, help="number of results per query (default 10)")
    p.add_argument("--mode", choices=("auto", "vector", "keyword", "hybrid"), default="auto",
                   help="text queries: vector (shared space), keyword (BM25 over captions, sidecar and OCR text), "
                        "hybrid (both, scores fused) or auto (default: hybrid when the collection has text and the "
                        "query has a content word)")
    p.add_argument("--keyword-weight", type=float, default=None, metavar="W",
                   help="hybrid: rank by cosine + W x keyword coverage (default: fitted on the collection's own "
                        "captioned images, see 'ravl info')")
    p.add_argument("--min-score", type=float, default=0.0, metavar="S",
                   help="leave out hits scoring below S (0..1); a note on stderr says when nothing is a good match")
    f = p.add_argument_group("filters (photo metadata; applied before the top k)")
    f.add_argument("--after", metavar="DATE", help="taken in or after DATE (YYYY, YYYY-MM, YYYY-MM-DD)")
    f.add_argument("--before", metavar="DATE", help="taken in or before DATE (the whole period named)")
    f.add_argument("--folder", metavar="PREFIX", help="files under this folder")
    f.add_argument("--near", metavar="LAT,LON,KM", help="taken within KM of LAT,LON (EXIF GPS)")
    f.add_argument("--camera", metavar="TEXT", help="camera make or model containing TEXT")
    p.add_argument("--sort", choices=("relevance", "date"), default="relevance",
                   help="order of the hits shown: relevance (default) or date (newest first)")
    add_search_knobs(p)
    p.add_argument("--json", action="store_true", help="one JSON object per query: {\"query\": ..., \"results\": [...], "
                   "\"good_match\": ...}; hits carry score, vector_score, keyword_score and found_by")
    p.set_defaults(run=run)


def _term(value: str, weight: float):
    from pathlib import Path

    from ..request import Term, parse_query

    path = Path(value).expanduser()
    if path.is_file():
        return (Term("image", str(path.resolve()), weight),)
    return parse_query(value, weight)


def build_request(args):
    """The :class:`SearchRequest` the options describe (its terms empty with --queries)."""
    from pathlib import Path

    from ..errors import InputError
    from ..filters import Filters
    from ..hybrid import Fusion
    from ..request import SearchRequest, Term, parse_query

    if args.queries and (args.text or args.image or args.add or args.subtract):
        raise InputError("--queries runs a file of queries; give it without --text, --image, --add or --subtract")
    terms: tuple = ()
    if args.text is not None:
        terms += parse_query(args.text)
    if args.image:
        terms += (Term("image", str(Path(args.image).expanduser().resolve())),)
    for value in args.add:
        terms += _term(value, 1.0)
    for value in args.subtract:
        terms += _term(value, -1.0)
    if not terms and not args.queries:
        raise InputError("give a query: --text T, --image PATH, --add TERM or --queries FILE")
    placeholder = (Term("text", "query"),)
    filters = Filters.parse(after=args.after, before=args.before, folder=args.folder, near=args.near,
                            camera=args.camera)
    return SearchRequest(terms or placeholder, target=args.target, k=args.k, mode=args.mode,
                         fusion=Fusion(args.keyword_weight), min_score=args.min_score, ef_search=args.ef_search,
                         nprobe=args.nprobe, rerank=args.rerank, filters=None if filters.empty else filters,
                         sort=args.sort)


def run(args) -> int:
    from ..collection import open_collection
    from ..scores import GOOD_MATCH
    from ..tasks.search import read_queries, run_queries, search

    request = build_request(args)
    queries = read_queries(args.queries) if args.queries else None
    with open_collection(args.collection, readonly=True) as coll:
        answers = run_queries(coll, queries, request) if queries else [search(coll, request)]
    for answer in answers:
        if args.json:
            emit_json(answer)
        else:
            if len(answers) > 1:
                print(f"# {answer['query']}")
            for r in answer["results"]:
                text = r["caption"] if args.target == "captions" else (r["captions"][0] if r["captions"] else "")
                print(f"{r['score']:.4f}\t{r['uri']}\t{text}")
        if not answer["good_match"]:
            best = answer["best_score"]
            log(f"ravl search: no good match for {answer['query']}: "
                + ("no hit reaches --min-score" if best is None else
                   f"the best score is {best:.2f}, below {max(GOOD_MATCH, args.min_score):.2f}"))
    return 0
