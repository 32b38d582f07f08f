"""ravl imagine PROMPT --collection DIR [--generator SPEC] [--mode text|init|reference] ..."""
from __future__ import annotations

from .common import add_collection_arg, emit_json, log, progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("imagine", help="generate an image from a prompt, guided by the nearest images in a collection",
                       description="Retrieval-augmented text-to-image: retrieves the k images nearest to the prompt, "
                                   "then generates from the prompt alone (text), from the best reference "
                                   "(init, image-to-image) or with the references as image prompts (reference, "
                                   "IP-Adapter). The PNG carries its provenance in text chunks; the result is "
                                   "scored against the prompt with the collection's encoder.")
    p.add_argument("prompt", metavar="PROMPT", help='what to make, e.g. "a red bicycle by a lake"')
    add_collection_arg(p)
    p.add_argument("--generator", "-g", metavar="SPEC", default=None,
                   help="image generator: 'diffusers:/path/to/pipeline', 'a1111:http://127.0.0.1:7860', "
                        "'openai-images:MODEL?base_url=URL', 'sdcpp:/path/model.gguf' (default $RAVL_IMAGE_GENERATOR)")
    p.add_argument("--mode", choices=("text", "init", "reference"), default="text",
                   help="text: prompt only (default); init: start from the best reference; "
                        "reference: the references as image prompts")
    p.add_argument("--k", "-k", type=int, default=4, help="reference images to retrieve (default 4)")
    p.add_argument("--strength", type=float, default=0.6,
                   help="init mode: how far to move from the reference, in (0, 1] (default 0.6)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the generator's, 20 for diffusers)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the generator's)")
    p.add_argument("--negative", metavar="TEXT", default="", help="negative prompt: what to keep out of the image")
    p.add_argument("--size", metavar="WxH", default=None,
                   help="output size, multiples of 8, e.g. 512x512 (default: the generator's native size)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: random, recorded in the PNG)")
    p.add_argument("--out", "-o", metavar="FILE.png", default=None,
                   help="where to write the PNG (default ./ravl-imagine-SEED.png, never overwriting)")
    p.add_argument("--no-check", action="store_true", help="skip the self-check (scoring the image against the prompt)")
    p.add_argument("--json", action="store_true", help="print the provenance, self-check and timings as JSON")
    p.set_defaults(run=run)


def _out_path(out, seed):
    from pathlib import Path

    if out:
        path = Path(out).expanduser()
        if path.suffix.lower() != ".png":
            from ..errors import ConfigError

            raise ConfigError(f"--out {out} must end in .png (the provenance lives in PNG text chunks)")
        if path.is_dir():
            from ..errors import ConfigError

            raise ConfigError(f"--out {out} is a folder; give a file name ending in .png")
        return path.resolve()
    stem = f"ravl-imagine-{seed if seed is not None else 'unseeded'}"
    path, n = Path(f"{stem}.png"), 1
    while path.exists():
        path, n = Path(f"{stem}-{n}.png"), n + 1
    return path.resolve()


def _write(path, data: bytes) -> None:
    import os

    from ..errors import ConfigError

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path} ({exc.strerror or exc}); choose another --out") from None


def run(args) -> int:
    from contextlib import nullcontext

    from ..collection import open_collection
    from ..errors import NoImageGeneratorError
    from ..generate.images.base import ImageParams, load_image_generator, parse_size
    from ..tasks.imagine import check_request, imagine, resolve_generator_spec

    width, height = parse_size(args.size)
    params = ImageParams(width=width, height=height, steps=args.steps, guidance=args.guidance,
                         strength=args.strength, seed=args.seed, negative_prompt=args.negative)
    prompt = check_request(args.prompt, args.mode, args.k, params)  # before anything loads
    if args.out:
        _out_path(args.out, None)
    spec = resolve_generator_spec(args.generator)
    generator = load_image_generator(spec) if spec else None
    if generator is not None:
        generator.check_mode(args.mode)
    with open_collection(args.collection, readonly=True) as coll:
        try:
            with (progress_bar("generating", unit="step") if generator and generator.supports_progress else nullcontext()) as bar:
                result = imagine(coll, prompt, generator, mode=args.mode, k=args.k, params=params,
                                 check=not args.no_check, progress=bar)
        except NoImageGeneratorError as exc:
            hits = getattr(exc, "references", [])
            if args.json:
                emit_json({"prompt": prompt, "generator": None, "references": [h.to_dict() for h in hits]})
            else:
                print(f"nearest images to {prompt!r} (no image generated):")
                for h in hits:
                    first = h.captions[0] if h.captions else ""
                    print(f"  {h.score:.4f}\t{h.uri}\t{first}")
            raise
    path = _out_path(args.out, result.seed)
    _write(path, result.png_bytes())
    if args.json:
        emit_json({"output": str(path), **result.to_dict()})
        return 0
    print(path)
    used = set(result.used_references)
    for h in result.references:
        first = h.captions[0] if h.captions else ""
        mark = "*" if h.id in used else " "
        print(f" {mark}{h.score:.4f}\t{h.uri}\t{first}")
    a = result.alignment
    if a:
        print(f"self-check: cosine {a['prompt_cosine']:.4f} to the prompt (references: best {a['reference_best']:.4f}, "
              f"mean {a['reference_mean']:.4f}); rank {a['rank']} of {a['of']}")
    seed = result.seed if result.seeded else f"{result.seed} (not honoured by this backend)"
    log(f"{result.mode} mode, {result.generator}, seed {seed}, {result.steps} steps, "
        f"{result.width}x{result.height}, {result.timings.get('generate_s', 0):.2f} s to generate")
    for note in result.notes:
        log(f"note: {note}")
    return 0
