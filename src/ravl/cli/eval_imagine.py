"""ravl eval imagine --collection DIR --prompts FILE [--generator SPEC] ..."""
from __future__ import annotations

from .common import log, progress_bar


def add_parser(tasks, common) -> None:
    i = tasks.add_parser("imagine", help="generate an image per prompt and score them: alignment, R-precision, "
                                         "time per image, contact sheet",
                         description="Runs 'ravl imagine' for every prompt of --prompts and scores the outputs with "
                                     "the collection's encoder: mean cosine to the prompt, R-precision against up to "
                                     "99 distractor prompts from the same file (Park et al., 2021), seconds per image; "
                                     "with --out also the images (with provenance; a rerun reuses them) and a contact "
                                     "sheet PNG of prompt | references | output.")
    i.add_argument("--collection", "-c", required=True, metavar="DIR", help="the retrieval datastore")
    i.add_argument("--prompts", required=True, metavar="FILE",
                   help="one prompt per line (# comments skipped), or JSONL {\"prompt\": ...}")
    i.add_argument("--generator", "-g", metavar="SPEC", default=None,
                   help="image generator spec (default $RAVL_IMAGE_GENERATOR)")
    i.add_argument("--mode", choices=("text", "init", "reference"), default="text", help="as for ravl imagine")
    i.add_argument("--k", type=int, default=4, help="references per prompt (default 4)")
    i.add_argument("--steps", type=int, default=None, help="denoising steps (default: the generator's)")
    i.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the generator's)")
    i.add_argument("--strength", type=float, default=0.6, help="init mode strength in (0, 1] (default 0.6)")
    i.add_argument("--size", metavar="WxH", default=None, help="output size (default: the generator's)")
    i.add_argument("--seed", type=int, default=0, help="prompt i uses seed + i (default 0)")
    i.add_argument("--distractors", type=int, default=99, help="distractor prompts per output, at most 99 (default 99)")
    common(i)
    i.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..collection import open_collection
    from ..errors import NoImageGeneratorError
    from ..eval.imagine import evaluate_imagine, read_prompts, render_imagine_markdown
    from ..eval.report import build_report
    from ..generate.images.base import ImageParams, load_image_generator, parse_size
    from ..tasks.imagine import NO_GENERATOR, resolve_generator_spec
    from .eval_output import finish_report

    width, height = parse_size(args.size)
    params = ImageParams(width=width, height=height, steps=args.steps, guidance=args.guidance,
                         strength=args.strength).check()
    prompts = read_prompts(args.prompts)
    spec = resolve_generator_spec(args.generator)
    if not spec:
        raise NoImageGeneratorError(NO_GENERATOR)
    generator = load_image_generator(spec)
    with open_collection(args.collection, readonly=True) as coll:
        try:
            with progress_bar("imagining", unit="prompt") as bar:
                result = evaluate_imagine(coll, prompts, generator, mode=args.mode, k=args.k, params=params,
                                          seed=args.seed, distractors=args.distractors, out_dir=args.out,
                                          progress=bar)
        except KeyboardInterrupt:
            log("interrupted: " + ("finished images are kept in --out; run the same command to resume"
                                   if args.out else "pass --out DIR to keep finished images and resume next time"))
            return 130
    sheet_path = None
    if args.out and result.sheet is not None:
        sheet_path = str(Path(args.out) / "contact-sheet.png")
        result.sheet.save(sheet_path)
    else:
        log("no --out: the contact sheet and the images are not saved")
    report = build_report(config=result.config, extra={"imagine": {**result.to_dict(), "contact_sheet": sheet_path}})
    return finish_report(args, report, render_imagine_markdown(result, sheet_path))
