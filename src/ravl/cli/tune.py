"""ravl tune --collection DIR [--method linear|mlp|conse] [--val-fraction F] [--epochs N] [--reset]"""
from __future__ import annotations

from .common import add_collection_arg, emit_json, log, progress_bar


def add_parser(sub) -> None:
    from ..encoders.bridge import METHODS

    p = sub.add_parser("tune", help="learn a bridge from the collection's own image-caption pairs",
                       description="Train a small map from the stored image features to the text space on the "
                                   "collection's captioned images (towers frozen, nothing re-encoded), compare it "
                                   "with the base encoder on held-out caption groups, and keep it only when it "
                                   "helps. Later searches, captions, ask and serve use it.")
    add_collection_arg(p)
    p.add_argument("--method", default="linear", metavar="|".join(METHODS),
                   help="linear (default), mlp (one hidden layer) or conse (re-learn the ConSE class texts; "
                        "default encoder only)")
    p.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                   help="share of the pairs held out, by caption group, to judge the bridge (default 0.1)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="passes over the training pairs (default: chosen from the data size)")
    p.add_argument("--seed", type=int, default=0, help="split and initialisation seed (default 0)")
    p.add_argument("--reset", action="store_true", help="remove the tuned bridge: back to the base encoder")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..collection import open_collection
    from ..tune import check_options, reset_tuning, tune_collection

    if args.reset:
        with open_collection(args.collection) as coll:
            removed = reset_tuning(coll)
        if args.json:
            emit_json({"reset": True, "removed": removed})
        else:
            log("removed the tuned bridge; the collection uses its base encoder" if removed
                else "no tuned bridge was stored; nothing changed")
        return 0
    check_options(args.method, args.val_fraction, args.epochs)
    with open_collection(args.collection) as coll, progress_bar("tuning", unit="step") as bar:
        report = tune_collection(coll, method=args.method, val_fraction=args.val_fraction, epochs=args.epochs,
                                 seed=args.seed, progress=bar)
    if args.json:
        emit_json(report.to_dict())
        return 0
    print(f"{'':24}{'base':>8}{'tuned':>8}")
    for key in report.base:
        print(f"{key:24}{report.base[key]:8.1f}{report.tuned[key]:8.1f}")
    print(f"pairs {report.pairs} (train {report.train_pairs}, validation {report.val_pairs} over "
          f"{report.val_images} images), fusion weight of the base {report.weight:.2f}, "
          f"{report.seconds['total']:.1f}s")
    log(report.message)
    return 0
