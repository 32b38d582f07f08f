"""ravl read IMAGE... [--translate-to LANG --generator SPEC]"""
from __future__ import annotations

from .common import emit_json, log


def add_parser(sub) -> None:
    p = sub.add_parser("read", help="read text in images (signs, labels, adverts), optionally translated",
                       description="Read the lines of text in images with Tesseract or RapidOCR. Each line is "
                                   "printed as 'confidence<TAB>left,top,width,height<TAB>text', with its translation "
                                   "after another TAB when --translate-to is given.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files to read")
    p.add_argument("--engine", choices=("auto", "tesseract", "rapidocr"), default="auto",
                   help="OCR engine (default: the first installed, Tesseract preferred)")
    p.add_argument("--lang", default="eng", help="Tesseract language(s), e.g. eng, deu, fra+eng (default eng)")
    p.add_argument("--min-confidence", type=float, default=0.4, help="drop lines below this (0-1, default 0.4)")
    p.add_argument("--translate-to", metavar="LANG", help="translate the lines into LANG through --generator")
    p.add_argument("--generator", "-g", metavar="SPEC", default=None,
                   help="language model for --translate-to, e.g. 'openai:llama3.2?base_url=http://localhost:11434/v1'")
    p.add_argument("--force", action="store_true",
                   help="translate even with a model that declares it cannot (the bundled 'smollm2' is too small)")
    p.add_argument("--max-tokens", type=int, default=None, help="translation length limit (default: from the text)")
    p.add_argument("--seed", type=int, default=None, help="seed for sampling")
    p.add_argument("--json", action="store_true", help="one JSON object per image: lines with boxes and confidences")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..generate.base import GenerationParams, load_generator
    from ..images import load_image
    from ..ocr import read_image_text

    generator = None
    if args.translate_to:
        if not args.generator:
            raise ConfigError("--translate-to needs a language model: add --generator SPEC, e.g. "
                              "'openai:llama3.2?base_url=http://localhost:11434/v1'")
        from ..ocr import check_can_translate

        check_can_translate(args.generator, force=args.force)  # before a slow model load
        generator = load_generator(args.generator)
        check_can_translate(generator, force=args.force)
    elif args.generator:
        raise ConfigError("--generator is only used with --translate-to LANG")
    params = None
    if args.max_tokens is not None or args.seed is not None:
        params = GenerationParams(max_tokens=args.max_tokens or 256, seed=args.seed)
    images = [(str(Path(p).expanduser().resolve()), load_image(p).image) for p in args.images]
    for uri, image in images:
        result = read_image_text(image, name=uri, engine=args.engine, lang=args.lang,
                                 min_confidence=args.min_confidence, translate_to=args.translate_to,
                                 generator=generator, params=params)
        if args.json:
            emit_json(result.to_dict())
            continue
        if len(images) > 1:
            print(f"# {uri}")
        for i, line in enumerate(result.lines):
            row = f"{line.confidence:.2f}\t{','.join(map(str, line.box))}\t{line.text}"
            if result.translations is not None:
                row += f"\t{result.translations[i] or ''}"
            print(row)
        if not result.lines:
            log(f"note: no text found in {uri}")
        if result.error:
            log(f"note: {result.error}")
    return 0
