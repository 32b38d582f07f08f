"""The offline demo: builds a sample collection from data that ships with installed packages
(scikit-image's bundled photos, captioned with their own docstrings) and, when Debian's
``tuxpaint-stamps-default`` is installed, ~1,000 stamps with their human-written descriptions."""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path

from .errors import SourceError
from .progress import Progress

SKIMAGE_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "camera", "coins", "horse", "moon", "brick",
                  "grass", "gravel", "colorwheel", "logo", "hubble_deep_field", "immunohistochemistry",
                  "stereo_motorcycle", "text", "page")
#: photos kept out of the collection and used as "new" images to search with and caption
HELD_OUT = ("coffee", "chelsea")
TEXT_QUERIES = ("a cat", "a cup of coffee", "a rocket launch into the sky", "a musical instrument",
                "a red fruit", "a vehicle with wheels")


def export_skimage_photos(folder: Path) -> dict[str, Path]:
    """Write scikit-image's bundled photos as PNGs with a sidecar caption (their docstring's first
    line, written by scikit-image's authors). Photos that would need a download are skipped."""
    import numpy as np
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in SKIMAGE_PHOTOS:
        fn = getattr(skimage.data, name, None)
        if fn is None:
            continue
        try:
            arr = fn()
        except Exception:  # a photo that needs a download (offline) is simply left out
            continue
        if isinstance(arr, tuple):  # stereo_motorcycle returns (left, right, disparity)
            arr = arr[0]
        path = folder / f"{name}.png"
        if not path.exists():
            Image.fromarray(np.asarray(arr)).save(path)
        caption = (fn.__doc__ or name).strip().splitlines()[0].strip().rstrip(".")
        path.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
        out[name] = path
    return out


def write_stamps_manifest(path: Path) -> int:
    """A JSONL manifest of the Tux Paint stamps (English description as caption); 0 if not installed."""
    from .ingest.tuxpaint import load_stamps

    try:
        stamps = load_stamps()
    except SourceError:
        return 0
    with open(path, "w", encoding="utf-8") as fh:
        for s in stamps:
            fh.write(json.dumps({"image": str(s.image), "caption": s.description, "category": s.category}) + "\n")
    return len(stamps)


#: the question the demo asks about its first held-out photo
DEMO_QUESTION = "What is in the picture?"


def run_demo(collection_dir: Path, *, use_stamps: bool = True, k: int = 5, generator: str | None = None,
             progress: Progress | None = None,
             on_status: Callable[[str], None] | None = None) -> dict:
    """Build (or update) the demo collection and run a few searches, captions and a question on it.

    ``generator``: the language model that captions the held-out photos and answers
    :data:`DEMO_QUESTION` (default: the bundled SmolLM2 when installed, else consensus only).
    ``on_status`` hears one line before each slow step."""
    from .collection import open_collection
    from .generate.base import load_generator
    from .generate.defaults import LM_CAPTION, default_generator
    from .images import load_image
    from .ingest.pipeline import index_sources
    from .rag import caption_image
    from .rag.ask import AskOptions, ask_image

    collection_dir = Path(collection_dir)
    work = collection_dir / "demo-data"
    photos = export_skimage_photos(work / "photos")
    held = {name: photos.pop(name) for name in HELD_OUT if name in photos}
    indexed_photos = work / "indexed"
    indexed_photos.mkdir(parents=True, exist_ok=True)
    sources = []
    for path in photos.values():  # only the photos that are not held out
        for src in (path, path.with_suffix(".txt")):
            dst = indexed_photos / src.name
            if not dst.exists():
                dst.write_bytes(src.read_bytes())
    sources.append(str(indexed_photos))
    n_stamps = 0
    if use_stamps:
        manifest = work / "stamps.jsonl"
        n_stamps = write_stamps_manifest(manifest)
        if n_stamps:
            sources.append(str(manifest))
    with open_collection(collection_dir, create=True) as coll:
        report = index_sources(coll, sources, progress=progress)
        texts = coll.search_text(list(TEXT_QUERIES), k=k)
        result = {
            "collection": str(coll.path), "stamps": n_stamps, "photos": len(photos),
            "index": report.to_dict(), "info": coll.info(),
            "text_search": [{"query": q, "results": [h.to_dict() for h in hits]} for q, hits in zip(TEXT_QUERIES, texts)],
        }
        if held:
            first = next(iter(held.values()))
            image = load_image(first).image
            result["image_search"] = {"query": str(first),
                                      "results": [h.to_dict() for h in coll.search_image([image], k=k)[0]]}
            spec = generator or default_generator("demo")
            if spec != "consensus" and on_status:
                on_status(f"loading the language model {spec} (first use builds its cache, about a minute)")
            t = time.perf_counter()
            gen = load_generator(spec)
            gen_info: dict = {"spec": gen.spec, "load_seconds": round(time.perf_counter() - t, 2)}
            result["generator"] = gen_info
            cap_gen = gen
            if generator is None and gen.spec == "smollm2":  # caption with the LM's best measured prompt
                cap_gen = copy.copy(gen)  # the same loaded model, continuing the caption prompt as plain text
                cap_gen.use_chat, cap_gen.spec = False, LM_CAPTION  # type: ignore[attr-defined]
            gen_info["caption_spec"] = cap_gen.spec
            captions = []
            for path in held.values():
                image = load_image(path).image
                t = time.perf_counter()
                row = caption_image(coll, image, k=k, generator=cap_gen, name=str(path)).to_dict()
                row["seconds"] = round(time.perf_counter() - t, 2)
                if gen.is_language_model:  # the consensus pick beside the model's words
                    row["consensus"] = row["candidates"][0]["caption"] if row["candidates"] else ""
                captions.append(row)
            result["captions"] = captions
            if gen.is_language_model:
                question_image = next(iter(held.values()))
                answer = ask_image(coll, load_image(question_image).image, DEMO_QUESTION, generator=gen,
                                   options=AskOptions(k=k, ocr=False), name=str(question_image))
                result["ask"] = answer.to_dict()
    return result
