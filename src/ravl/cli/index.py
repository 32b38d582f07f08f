"""ravl index SOURCE... --collection DIR"""
from __future__ import annotations

from .common import add_collection_arg, add_index_args, add_vector_dtype_arg, emit_json, index_settings, log, progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("index", help="index image folders, manifests, COCO or Karpathy files into a collection",
                       description="Index images (and their captions) into a collection. Re-running is incremental: "
                                   "unchanged files are skipped, an interrupted run resumes.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a folder of images (name.txt sidecars hold captions), an image, a .jsonl/.csv manifest, "
                        "a COCO captions .json or a Karpathy split .json")
    add_collection_arg(p)
    p.add_argument("--encoder", metavar="SPEC", default=None,
                   help="encoder for a new collection: 'default' (offline), 'open_clip:ARCH/TAG', 'hf:REPO_OR_PATH'")
    p.add_argument("--images-root", metavar="DIR", help="folder holding the images of a COCO/Karpathy file")
    p.add_argument("--split", metavar="NAME", help="Karpathy split to index: train, val, test or restval")
    p.add_argument("--batch-size", type=int, default=None, help="images per model call (default: the encoder's)")
    p.add_argument("--workers", type=int, default=None, help="decoding threads (default: min(4, cores))")
    p.add_argument("--ocr", action="store_true",
                   help="also read text printed on the images (Tesseract) and store it as captions (source 'ocr'), "
                        "so 'ravl search --text WORDS --target captions' finds them")
    p.add_argument("--ocr-lang", default="eng", metavar="LANG", help="Tesseract language(s) for --ocr (default eng)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default: decoding threads + this process's model) or ray (read, decode and encode on "
                        "Ray actors, one model load per actor; pip install 'ravl[ray]'); this process writes")
    p.add_argument("--ray-address", metavar="HOST:PORT", default=None,
                   help="with --engine ray: the cluster's head (default: start a Ray instance on this machine)")
    p.add_argument("--num-workers", type=int, default=None, metavar="N",
                   help="with --engine ray: encoder actors (default: one per two CPUs of the cluster)")
    p.add_argument("--keep-missing", action="store_true",
                   help="keep items whose file is gone from a folder being indexed (default: they are removed, "
                        "and a moved file's item follows it)")
    p.add_argument("--prune-missing", action="store_true",
                   help="remove missing items even when the folder looks emptied or unmounted (the guard holds "
                        "back a sync that would remove more than half of a folder's items)")
    p.add_argument("--sync", action="store_true",
                   help="make the collection match the sources exactly: also remove items that are in none of "
                        "the given manifests or datasets (folders are always synced)")
    p.add_argument("--caption-langs", metavar="LANGS", default=None,
                   help="languages of tagged sidecar lines (Tux Paint's 'fr.utf8=...') to index, e.g. 'en,fr' "
                        "(default: the collection's, English for a new one); recorded in the collection")
    p.add_argument("--verbose", action="store_true", help="also list files passed over for their extension")
    add_index_args(p)
    add_vector_dtype_arg(p)
    p.add_argument("--json", action="store_true", help="print the ingest report as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..collection import open_collection
    from ..errors import ConfigError
    from ..ingest.pipeline import index_sources
    from ..ingest.sources import scan_sources

    # read and validate every source (and the index and engine options) before anything is created or written
    index_settings(args)
    _check_engine(args)
    if args.keep_missing and (args.prune_missing or args.sync):
        raise ConfigError("--keep-missing cannot go with --prune-missing or --sync; choose one")
    scan = scan_sources(args.sources, images_root=args.images_root, split=args.split, exclude=[args.collection])
    if args.ocr:
        from ..errors import MissingDependencyError
        from ..ocr import available_engines

        if not available_engines():
            raise MissingDependencyError("--ocr needs an OCR engine; install Tesseract with: apt-get install "
                                         "tesseract-ocr and pip install 'ravl[ocr]'")
    with open_collection(args.collection, encoder=args.encoder, create=True, vector_dtype=args.vector_dtype) as coll:
        settings = index_settings(args)
        if settings:
            coll.set_index_config(**settings)  # checked against the collection's size; built at the end
        ray = {"num_workers": args.num_workers, "ray_address": args.ray_address} if args.engine == "ray" else None
        with progress_bar("indexing") as bar:
            report = index_sources(coll, args.sources, batch_size=args.batch_size, workers=args.workers, progress=bar,
                                   scan=scan, keep_missing=args.keep_missing, prune_missing=args.prune_missing,
                                   sync=args.sync, engine=args.engine, ray=ray, caption_langs=args.caption_langs)
        ocr_report = None
        if args.ocr and not report.interrupted:
            from ..ingest.ocr_hook import ocr_collection

            with progress_bar("reading text") as bar:
                ocr_report = ocr_collection(coll, lang=args.ocr_lang, progress=bar)
        counts = coll.counts()
        indexes = coll.index_facts()
    if args.json:
        emit_json({**report.to_dict(), "collection": counts, "ocr": ocr_report.to_dict() if ocr_report else None,
                   "indexes": indexes})
    else:
        s = report.seconds
        print(report.summary())
        print(f"collection now holds {counts['images']} images and {counts['captions']} captions")
        for name, facts in indexes.items():
            if facts.get("over_budget"):
                log(f"warning: the {name} index is over its budget: {facts['over_budget']}")
        if "ray_start" in s:
            print(f"time: {s.get('total', 0):.1f}s total (Ray start {s['ray_start']:.1f}s, waiting for workers "
                  f"{s.get('wait_workers', 0):.1f}s, write {s.get('write', 0):.1f}s)")
        else:
            print(f"time: {s.get('total', 0):.1f}s total")
            for line in report.profile_lines():
                print(f"  {line}")
        if report.caption_vectors_reused:
            print(f"{report.caption_vectors_reused} caption texts already in the collection: their vectors were reused")
        if ocr_report:
            print(f"text read from {ocr_report.items_read} images ({ocr_report.items_with_text} with text): "
                  f"{ocr_report.captions_added} OCR captions added")
            for uri, reason in ocr_report.failed[:20]:
                log(f"ocr skipped {uri}: {reason}")
        for uri, reason in report.skipped[:20]:
            log(f"skipped {uri}: {reason}")
        if len(report.skipped) > 20:
            log(f"... and {len(report.skipped) - 20} more skipped (use --json for the full list)")
        others = [path for folder in scan.folders for path in folder.other_files]
        if others and args.verbose:
            for path in others:
                log(f"passed over {path}: not an image file ravl reads (its extension)")
        elif others:
            log(f"{len(others)} other files passed over for their extension (--verbose lists them)")
        for folder in scan.folders:
            for path in folder.unreadable:
                log(f"warning: cannot read folder {path} (permission?); its items are kept as they are")
        for note in report.notes:
            log(note)
    if report.interrupted:
        log("interrupted: every committed batch is kept; run the same command again to resume")
        return 130
    return 0


def _check_engine(args) -> None:
    """One-line errors for the engine options before anything is written: Ray options without
    --engine ray, Ray not installed, a --ray-address where nothing answers."""
    from ..errors import ConfigError

    if args.engine != "ray" and (args.ray_address or args.num_workers is not None):
        raise ConfigError("--ray-address and --num-workers apply to --engine ray")
    if args.num_workers is not None and not 1 <= args.num_workers <= 4096:
        raise ConfigError(f"--num-workers must be a whole number from 1 to 4096, got {args.num_workers}")
    if args.engine == "ray":
        from ..ingest.ray_engine import check_address, import_ray

        import_ray()
        if args.ray_address:
            check_address(args.ray_address)
