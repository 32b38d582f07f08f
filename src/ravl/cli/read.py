"""ravl read IMAGE... [--lang LANG] [--translate-to LANG [--from LANG] [--translator SPEC | --generator SPEC]]"""
from __future__ import annotations

from .common import emit_json, log


def add_parser(sub) -> None:
    p = sub.add_parser("read", help="read text in images (signs, labels, adverts), optionally translated",
                       description="Read the lines of text in images with Tesseract or RapidOCR. Each line is "
                                   "printed as 'confidence<TAB>left,top,width,height<TAB>text', with its translation "
                                   "after another TAB when --translate-to is given. When nothing is read, the "
                                   "installed Tesseract packs of other scripts are tried and a note says which "
                                   "--lang reads the image. Translation is offline with Apertium for its installed "
                                   "pairs (see 'ravl backends'), or through a language model (--generator); the "
                                   "route used is printed on stderr, and the exit status is 2 when translation was "
                                   "asked and could not be done.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files to read")
    p.add_argument("--engine", choices=("auto", "tesseract", "rapidocr"), default="auto",
                   help="OCR engine (default: the first installed, Tesseract preferred)")
    p.add_argument("--lang", default="eng",
                   help="Tesseract language(s): packs (eng, chi_sim, fra+eng), ISO codes (zh, de) or names "
                        "(default eng)")
    p.add_argument("--min-confidence", type=float, default=0.4, help="drop lines below this (0-1, default 0.4)")
    p.add_argument("--translate-to", metavar="LANG",
                   help="translate the lines into LANG (a name or ISO code: Spanish, es, spa)")
    p.add_argument("--from", dest="source", metavar="LANG",
                   help="the text's language (default: detected from the text, else the --lang read with)")
    p.add_argument("--translator", metavar="SPEC", default=None,
                   help="translator backend, e.g. 'apertium' (default: apertium when it has the pair installed, "
                        "unless --generator is given)")
    p.add_argument("--generator", "-g", metavar="SPEC", default=None,
                   help="language model to translate with, e.g. 'openai:llama3.2?base_url=http://localhost:11434/v1'")
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
    from ..ocr import check_can_translate, read_image_text

    generator = None
    if not args.translate_to and (args.generator or args.translator or args.source):
        raise ConfigError("--generator, --translator and --from are only used with --translate-to LANG")
    if args.generator and args.translator:
        raise ConfigError("pass either --translator (rule-based) or --generator (a language model), not both")
    if args.generator:
        check_can_translate(args.generator, force=args.force)  # before a slow model load
        generator = load_generator(args.generator)
        check_can_translate(generator, force=args.force)
    params = None
    if args.max_tokens is not None or args.seed is not None:
        params = GenerationParams(max_tokens=args.max_tokens or 256, seed=args.seed)
    images = [(str(Path(p).expanduser().resolve()), load_image(p).image) for p in args.images]
    status = 0
    for uri, image in images:
        result = read_image_text(image, name=uri, engine=args.engine, lang=args.lang,
                                 min_confidence=args.min_confidence, translate_to=args.translate_to,
                                 generator=generator, translator=args.translator, source_lang=args.source,
                                 params=params)
        if result.error:
            status = 2
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
            log(f"note: no text found in {uri}" + (f"; {result.hint['message']}" if result.hint else ""))
        elif result.translation:
            t = result.translation
            log(f"note: translated with {t['describe']}; source language {t['source_lang'] or 'not detected'} "
                f"({t['source_from']})")
        if result.error:
            log(f"note: {result.error}")
    return status
