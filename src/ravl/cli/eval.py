"""ravl eval retrieval | caption | zeroshot | imagine | compare"""
from __future__ import annotations

from .common import log, progress_bar
from .eval_output import finish_report

_OUT_HELP = "write report.json, report.md and PNG plots here (caption runs also keep their resumable cache here)"


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="benchmark retrieval, captioning and zero-shot classification",
                       description="Standard benchmarks with reports (JSON + Markdown + PNG plots): cross-modal "
                                   "Recall@K, retrieval-augmented captioning scored like the COCO caption evaluation, "
                                   "zero-shot classification; 'compare' puts two reports side by side.")
    tasks = p.add_subparsers(dest="eval_task", metavar="TASK")
    tasks.required = True

    r = tasks.add_parser("retrieval", help="image->text and text->image Recall@K (CLIP benchmark protocol)",
                         description="Every caption queries the images (its own image is the answer); every image "
                                     "queries the captions (a hit if any of its captions is in the top K). Uses the "
                                     "vectors stored in the collection; --data indexes a dataset first.")
    r.add_argument("--collection", "-c", metavar="DIR", help="collection to evaluate (with --data: index into it; "
                                                             "default: a temporary collection)")
    r.add_argument("--data", nargs="+", metavar="SOURCE", help="dataset to index and evaluate (any source "
                                                               "'ravl index' reads: folder, .jsonl/.csv, COCO, Karpathy)")
    r.add_argument("--encoder", metavar="SPEC", help="encoder for a new collection (default: 'default'); for an "
                                                     "existing one it must match what it was built with")
    r.add_argument("--images-root", metavar="DIR", help="folder holding the images of a COCO/Karpathy file")
    r.add_argument("--split", metavar="NAME", help="evaluate one split only (Karpathy: train, val, test, restval)")
    r.add_argument("--k", default="1,5,10", metavar="K,K,..", help="recall cut-offs (default 1,5,10)")
    r.add_argument("--ties", choices=("pessimistic", "optimistic", "index"), default="pessimistic",
                   help="how exact score ties rank (default pessimistic)")
    r.add_argument("--queries", metavar="FILE",
                   help="held-out text queries instead of the stored captions: JSONL lines {\"query\": text, "
                        "\"relevant\": [image paths]} (relative to --images-root), scored through search in every "
                        "mode (vector, keyword, hybrid, default) with --collection")
    _common(r)
    r.set_defaults(run=run_retrieval)

    c = tasks.add_parser("caption", help="caption a dataset from the collection and score it (BLEU, METEOR, "
                                         "ROUGE-L, CIDEr-D, SPICE)",
                         description="Captions every image of --data with the collection as the retrieval datastore "
                                     "and scores against the references as pycocoevalcap does. --leave-one-out "
                                     "captions images of the collection itself, each excluded from its own retrieval. "
                                     "With --out an interrupted run resumes from cached per-image captions.")
    c.add_argument("--collection", "-c", required=True, metavar="DIR", help="the retrieval datastore")
    c.add_argument("--data", nargs="+", required=True, metavar="SOURCE", help="evaluation images with references")
    c.add_argument("--images-root", metavar="DIR", help="folder holding the images of a COCO/Karpathy file")
    c.add_argument("--split", metavar="NAME", help="Karpathy split to evaluate (e.g. test)")
    c.add_argument("--generator", "-g", metavar="SPEC", default="consensus",
                   help="'consensus' (no model, default) or a language model, e.g. 'hf:/path/to/model'")
    c.add_argument("--k", type=int, default=5, help="neighbour images retrieved per image (default 5)")
    c.add_argument("--leave-one-out", action="store_true",
                   help="evaluate images of the collection, each excluded from its own retrieval")
    c.add_argument("--backend", choices=("auto", "java", "python"), default="auto",
                   help="metrics: java = pycocoevalcap (PTB tokenizer, METEOR, SPICE if present); python = no Java, "
                        "no METEOR/SPICE; auto = java when available (default)")
    c.add_argument("--max-tokens", type=int, default=48, help="generation length limit (default 48)")
    c.add_argument("--template", metavar="FILE", help="prompt template file with a {captions} placeholder")
    _common(c)
    c.set_defaults(run=run_caption)

    z = tasks.add_parser("zeroshot", help="folder-per-class zero-shot accuracy (top-1/top-5) from class prompts",
                         description="Each sub-folder of --data is a class ('_' and '-' read as spaces); each class "
                                     "becomes the prompt 'a photo of a {class}.' and images go to the closest prompt.")
    z.add_argument("--data", required=True, metavar="FOLDER", help="folder with one sub-folder of images per class")
    z.add_argument("--encoder", metavar="SPEC", default="default", help="encoder to test (default: 'default')")
    z.add_argument("--template", default="a photo of a {}.", help="prompt template, {} is the class name")
    _common(z)
    z.set_defaults(run=run_zeroshot)

    from . import eval_imagine

    eval_imagine.add_parser(tasks, _common)

    m = tasks.add_parser("compare", help="two reports side by side", description="Prints every setting and figure "
                         "of two reports written by 'ravl eval ... --out', with differences (B - A).")
    m.add_argument("a", metavar="A.json")
    m.add_argument("b", metavar="B.json")
    m.add_argument("--only-changed", action="store_true", help="show only rows that differ")
    m.set_defaults(run=run_compare)


def _common(p) -> None:
    p.add_argument("--out", "-o", metavar="DIR", help=_OUT_HELP)
    p.add_argument("--json", action="store_true", help="print the report as JSON (per-image rows left out)")


def run_retrieval(args) -> int:
    import shutil
    import tempfile

    from ..collection import open_collection
    from ..errors import ConfigError
    from ..eval.report import build_report
    from ..eval.runner import check_records, evaluate_retrieval, parse_ks, retrieval_config

    ks = parse_ks(args.k)
    if not args.collection and not args.data:
        raise ConfigError("give --collection DIR (an indexed collection) or --data SOURCE (indexed first)")
    if args.queries:
        return _run_heldout(args, ks)
    temp = None
    try:
        if args.data:
            from ..ingest.pipeline import index_sources
            from ..ingest.sources import read_sources

            records = read_sources(args.data, images_root=args.images_root, split=args.split)
            check_records(records, ", ".join(args.data))
            path = args.collection or (temp := tempfile.mkdtemp(prefix="ravl-eval-"))
            with open_collection(path, encoder=args.encoder, create=True) as coll:
                with progress_bar("indexing") as bar:
                    ingest = index_sources(coll, args.data, images_root=args.images_root, split=args.split,
                                           progress=bar, records=records)
                if ingest.interrupted:
                    log("interrupted while indexing: committed batches are kept; run the same command to resume")
                    return 130
                run = evaluate_retrieval(coll, ks=ks, uris=[r.uri for r in records], ties=args.ties)
                config = retrieval_config(coll, run, ks, data=args.data, ties=args.ties)
        else:
            with open_collection(args.collection, encoder=args.encoder, readonly=True) as coll:
                run = evaluate_retrieval(coll, ks=ks, split=args.split, ties=args.ties)
                config = retrieval_config(coll, run, ks, ties=args.ties)
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
    if temp:
        config["collection"] = None  # it no longer exists
    report = build_report(config=config, retrieval=run.scores, curve_max_k=max(max(ks), 20),
                          extra={"chance": run.details})
    return finish_report(args, report)


def _run_heldout(args, ks) -> int:
    from ..collection import open_collection
    from ..errors import ConfigError
    from ..eval.heldout import evaluate_heldout, read_heldout, render_heldout
    from ..eval.report import build_report
    from ..eval.runner import ravl_version

    if args.data or not args.collection:
        raise ConfigError("--queries scores an indexed collection: give --collection DIR (and no --data)")
    queries = read_heldout(args.queries, args.images_root)
    with open_collection(args.collection, encoder=args.encoder, readonly=True) as coll:
        result = evaluate_heldout(coll, queries, ks=ks)
        config = {"task": "retrieval-heldout", "encoder": coll.encoder_spec, "encoder_fingerprint": coll.active_fingerprint,
                  "k": list(ks), "queries": str(args.queries), "collection": str(coll.path),
                  "ravl_version": ravl_version()}
    if result["relevant_missing"]:
        log(f"note: {result['relevant_missing']} relevant paths of {args.queries} are not in the collection")
    return finish_report(args, build_report(config=config, extra={"heldout": result}), render_heldout(result, ks))


def run_caption(args) -> int:
    from pathlib import Path

    from ..collection import open_collection
    from ..eval.captioning import CACHE_NAME, caption_extra, evaluate_captioning
    from ..eval.report import build_report
    from ..generate.base import GenerationParams, load_generator
    from ..generate.prompts import load_template
    from ..ingest.sources import read_sources

    records = read_sources(args.data, images_root=args.images_root, split=args.split)
    generator = load_generator(args.generator)
    template = load_template(args.template, "caption") if args.template else None
    params = GenerationParams(max_tokens=args.max_tokens)
    cache_path = Path(args.out) / CACHE_NAME if args.out else None
    with open_collection(args.collection, readonly=True) as coll:
        try:
            with progress_bar("captioning") as bar:
                run = evaluate_captioning(coll, records, generator=generator, k=args.k,
                                          leave_one_out=args.leave_one_out, params=params, template=template,
                                          backend=args.backend, cache_dir=args.out, data=args.data,
                                          split=args.split, progress=bar)
        except KeyboardInterrupt:
            if cache_path:
                log(f"interrupted: finished captions are kept in {cache_path}; run the same command to resume")
            else:
                log("interrupted: pass --out DIR to keep finished captions and resume next time")
            return 130
    if cache_path:
        log(f"captions: {run.cache_hits} from the cache, {run.computed} generated now ({cache_path})")
    report = build_report(config=run.config, captions=run.scores, extra=caption_extra(run, cache_path))
    return finish_report(args, report)


def run_zeroshot(args) -> int:
    from ..encoders.base import load_encoder
    from ..eval.report import build_report
    from ..eval.zeroshot import evaluate_zeroshot, render_zeroshot_markdown, zeroshot_config

    encoder = load_encoder(args.encoder)
    with progress_bar("classifying") as bar:
        run = evaluate_zeroshot(encoder, args.data, template=args.template, progress=bar)
    report = build_report(config=zeroshot_config(encoder, run, args.data, args.template),
                          extra={"zeroshot": run.to_dict()})
    return finish_report(args, report, render_zeroshot_markdown(report))


def run_compare(args) -> int:
    from ..eval.report import compare_reports, load_report, render_comparison
    from ..eval.zeroshot import zeroshot_rows

    a, b = load_report(args.a), load_report(args.b)
    rows = compare_reports(a, b) + zeroshot_rows(a, b)
    print(f"A: {args.a}\nB: {args.b}\n")
    print(render_comparison(rows, only_changed=args.only_changed))
    return 0
