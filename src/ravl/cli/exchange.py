"""ravl export --collection DIR --out DIR  /  ravl import SRC --collection DIR [--encoder SPEC]"""
from __future__ import annotations

from .common import add_collection_arg, add_vector_dtype_arg, emit_json, log, progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a collection's items, captions and vectors as Parquet",
                       description="Write every item (id, uri, captions, metadata, vectors) as Parquet files plus a "
                                   "manifest naming the encoder, readable by 'ravl import', pandas or Spark.")
    add_collection_arg(p)
    p.add_argument("--out", required=True, metavar="DIR", help="new or empty folder to write into")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_export)

    p = sub.add_parser("import", help="import embeddings: a ravl export or clip-retrieval inference output",
                       description="Import precomputed embeddings into a collection: a folder written by 'ravl export', "
                                   "or clip-retrieval's output (img_emb/img_emb_*.npy + metadata/metadata_*.parquet, "
                                   "text_emb/ when present). The vectors must come from the collection's encoder.")
    p.add_argument("source", metavar="SRC", help="folder holding the export or the clip-retrieval output")
    add_collection_arg(p)
    p.add_argument("--encoder", metavar="SPEC", default=None,
                   help="the encoder the vectors came from, for a new collection (a ravl export names its own; "
                        "clip-retrieval output needs it, e.g. open_clip:ViT-B-32/laion2b_s34b_b79k)")
    add_vector_dtype_arg(p, "; from a ravl export, default: the exported collection's")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_import)


def _require_parquet(command: str) -> None:
    """Before any progress bar: the Parquet library is an extra."""
    from ..extras import install_hint, require

    require(f"ravl {command}", ("pyarrow",), install_hint("parquet"))


def run_export(args) -> int:
    from ..collection import open_collection
    from ..ingest.embeddings import export_collection

    _require_parquet("export")

    with open_collection(args.collection, readonly=True) as coll:
        with progress_bar("exporting") as bar:
            report = export_collection(coll, args.out, progress=bar)
    if args.json:
        emit_json(report.to_dict())
    else:
        print(f"{report.rows} items and {report.captions} captions written to {args.out} "
              f"({len(report.files)} Parquet files) in {report.seconds:.1f}s")
    return 0


def run_import(args) -> int:
    from pathlib import Path

    from ..collection import open_collection
    from ..errors import ConfigError
    from ..ingest.embeddings import detect_layout, import_embeddings, read_manifest

    _require_parquet("import")

    layout = detect_layout(args.source)
    encoder, dtype = args.encoder, args.vector_dtype
    new = not (Path(args.collection).expanduser() / "ravl.sqlite").exists()
    if layout == "ravl" and new:
        manifest = read_manifest(args.source)
        encoder = encoder or manifest["encoder_spec"]
        dtype = dtype or manifest.get("vector_dtype")  # a float16 collection's export comes back float16
    if layout == "clip-retrieval" and encoder is None and new:
        raise ConfigError("clip-retrieval output does not name its model; pass --encoder SPEC (the model that made "
                          "the vectors, e.g. open_clip:ViT-B-32/laion2b_s34b_b79k)")
    with open_collection(args.collection, encoder=encoder, create=True, vector_dtype=dtype) as coll:
        with progress_bar("importing") as bar:
            report = import_embeddings(coll, args.source, progress=bar)
        counts = coll.counts()
    if args.json:
        emit_json({**report.to_dict(), "collection": counts})
    else:
        print(f"{report.written} items and {report.captions} captions imported from {report.layout} output; "
              f"collection now holds {counts['images']} images and {counts['captions']} captions")
        for uri, reason in report.skipped[:20]:
            log(f"skipped {uri}: {reason}")
    if report.interrupted:
        log("interrupted: every committed batch is kept; run the same command again to resume")
        return 130
    return 0
