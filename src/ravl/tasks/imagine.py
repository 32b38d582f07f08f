"""The imagine job every front door shares (``ravl imagine``, ``POST /imagine``, the MCP
``imagine`` tool). Retrieval-augmented text-to-image: retrieve the images nearest to a prompt, generate from the
prompt (``text``), from the best reference (``init``) or with the references as image prompts
(``reference``), then score the result with the collection's own encoder. Every image carries its
provenance: prompt, mode, generator, seed, steps and the references (ids, uris, scores), also
written into the PNG as text chunks (:func:`png_with_provenance`, read back by :func:`read_provenance`).
"""
from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .. import __version__
from ..collection import Collection, ImageHit
from ..errors import ConfigError, ImageError, NoImageGeneratorError
from ..generate.images.base import MODES, ImageGenerator, ImageParams
from ..images import read_file
from ..progress import Progress

#: environment variable naming the image generator when no --generator is given
GENERATOR_ENV = "RAVL_IMAGE_GENERATOR"
MAX_PROMPT_CHARS = 2000
NO_GENERATOR = ("no image generator is set: pass --generator with a diffusers folder "
                "('diffusers:/path/to/sd-turbo'), a local server ('a1111:http://127.0.0.1:7860') or an "
                "OpenAI-compatible endpoint ('openai-images:MODEL?base_url=URL'), or set $" + GENERATOR_ENV)


def check_prompt(prompt: str) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError("the prompt is empty; describe the image to make, e.g. \"a red bicycle by a lake\"")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ConfigError(f"the prompt is {len(prompt)} characters long; keep it under {MAX_PROMPT_CHARS}")
    return prompt.strip()


def check_request(prompt: str, mode: str, k: int, params: ImageParams) -> str:
    """Validate everything about a request before any model is loaded; returns the clean prompt."""
    from ..collection import check_k

    prompt = check_prompt(prompt)
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    check_k(k)
    params.check()
    return prompt


@dataclass
class ImagineResult:
    prompt: str
    mode: str
    generator: str
    references: list[ImageHit]
    image: Image.Image | None = None
    seed: int | None = None
    seeded: bool = True
    steps: int | None = None
    guidance: float | None = None
    strength: float | None = None
    width: int = 0
    height: int = 0
    negative_prompt: str = ""
    #: which references shaped the image: the init image, or the image prompts
    used_references: list[int] = field(default_factory=list)
    alignment: dict | None = None
    timings: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    encoder: str = ""
    created_at: str = ""

    def provenance(self) -> dict:
        """Everything needed to say where the image came from and to make it again."""
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt or None, "mode": self.mode,
                "generator": self.generator, "seed": self.seed, "seeded": self.seeded, "steps": self.steps,
                "guidance": self.guidance, "strength": self.strength, "size": f"{self.width}x{self.height}",
                "references": [{"id": r.id, "uri": r.uri, "score": round(float(r.score), 6),
                                "used": r.id in self.used_references} for r in self.references],
                "encoder": self.encoder, "alignment": self.alignment, "backend": self.extra or None,
                "created_at": self.created_at, "ravl_version": __version__}

    def to_dict(self) -> dict:
        return {**self.provenance(), "references": [{**r.to_dict(), "used": r.id in self.used_references}
                                                    for r in self.references],
                "timings": self.timings, "notes": self.notes}

    def png_bytes(self) -> bytes:
        if self.image is None:
            raise ConfigError("no image was generated")
        return png_with_provenance(self.image, self.provenance())


# --- PNG provenance ---------------------------------------------------------------------------
def a1111_parameters(prov: dict) -> str:
    """The ``parameters`` text AUTOMATIC1111 writes, so its "PNG Info" tab and similar tools read ours."""
    lines = [prov["prompt"]]
    if prov.get("negative_prompt"):
        lines.append(f"Negative prompt: {prov['negative_prompt']}")
    fields = [("Steps", prov.get("steps")), ("CFG scale", prov.get("guidance")), ("Seed", prov.get("seed")),
              ("Size", prov.get("size")), ("Model", prov.get("generator"))]
    if prov.get("mode") == "init":
        fields.append(("Denoising strength", prov.get("strength")))
    lines.append(", ".join(f"{k}: {v}" for k, v in fields if v is not None))
    return "\n".join(lines)


def png_with_provenance(image: Image.Image, prov: dict) -> bytes:
    """PNG bytes with the provenance as iTXt chunks: one per field (``prompt``, ``mode``,
    ``generator``, ``seed``, ``steps``, ``references`` as JSON, ...), the whole record as JSON
    under ``ravl``, and an A1111-style ``parameters`` chunk."""
    info = PngInfo()
    for key in ("prompt", "negative_prompt", "mode", "generator", "seed", "steps", "guidance", "strength", "size",
                "encoder", "created_at"):
        if prov.get(key) is not None:
            info.add_itxt(key, str(prov[key]))
    info.add_itxt("references", json.dumps(prov.get("references", []), ensure_ascii=False))
    info.add_itxt("ravl", json.dumps(prov, ensure_ascii=False))
    info.add_itxt("parameters", a1111_parameters(prov))
    info.add_itxt("Software", f"ravl {__version__}")
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_provenance(source) -> dict:
    """The text chunks of a PNG (a path, bytes or file object), with ``ravl`` and ``references``
    decoded from JSON; raises ImageError for a file that is not a PNG."""
    if isinstance(source, (str, os.PathLike)):
        source = read_file(os.fspath(source))  # the one safe way to read a user's file (regular file, byte cap)
    data = source if isinstance(source, (bytes, bytearray)) else None
    try:
        img = Image.open(io.BytesIO(data)) if data is not None else Image.open(source)
        with img:
            if img.format != "PNG":
                raise ImageError(f"{source!r} is not a PNG")
            chunks = dict(getattr(img, "text", {}) or {})
    except (OSError, SyntaxError) as exc:
        raise ImageError(f"cannot read PNG text chunks ({exc})") from None
    for key in ("ravl", "references"):
        if key in chunks:
            chunks[key] = json.loads(chunks[key])
    return chunks


# --- the pipeline -----------------------------------------------------------------------------
def find_references(collection: Collection, prompt: str, k: int) -> tuple[np.ndarray, list[ImageHit]]:
    """(the prompt's vector, its k nearest images) in the shared space."""
    query = collection.encoder.encode_texts([prompt])
    hits = [h for h in collection.search_vectors(query, index="images", k=k)[0] if isinstance(h, ImageHit)]
    return query[0], hits


def load_references(hits: list[ImageHit], limit: int) -> tuple[list[tuple[ImageHit, Image.Image]], list[str]]:
    """Decode up to ``limit`` reference files, best first; unreadable ones are skipped with a note."""
    from ..ingest.images import load_image

    out: list[tuple[ImageHit, Image.Image]] = []
    notes: list[str] = []
    for hit in hits:
        if len(out) >= limit:
            break
        try:
            out.append((hit, load_image(hit.uri, min_side=512).image))
        except ImageError as exc:
            notes.append(f"reference {hit.id} skipped: {exc}")
    return out, notes


def self_check(collection: Collection, prompt_vec: np.ndarray, image: Image.Image,
               references: list[ImageHit]) -> dict:
    """Cosine of the output to the prompt in the collection's space, and its rank among the
    prompt's retrieved references (1 = closer to the prompt than every reference)."""
    emb = collection.encoder.embed_images([image.convert("RGB")]).embedding[0]
    cosine = float(np.dot(emb, prompt_vec))
    scores = [float(r.score) for r in references]
    rank = 1 + sum(s > cosine for s in scores)
    return {"prompt_cosine": round(cosine, 6), "rank": rank, "of": len(scores) + 1,
            "reference_mean": round(float(np.mean(scores)), 6) if scores else None,
            "reference_best": round(max(scores), 6) if scores else None}


def imagine(collection: Collection, prompt: str, generator: ImageGenerator | None, *, mode: str = "text",
            k: int = 4, params: ImageParams = ImageParams(), check: bool = True,
            progress: Progress | None = None) -> ImagineResult:
    """Retrieve the ``k`` images nearest to ``prompt``, generate with ``generator`` in ``mode`` and
    self-check the result. ``generator=None`` raises :class:`NoImageGeneratorError` after
    retrieval, with the references on the exception (``exc.references``) so callers can show them."""
    prompt = check_request(prompt, mode, k, params)
    if generator is not None:
        generator.check_mode(mode)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    prompt_vec, hits = find_references(collection, prompt, k)
    timings["retrieve_s"] = time.perf_counter() - started
    if generator is None:
        err = NoImageGeneratorError(NO_GENERATOR)
        err.references = hits  # type: ignore[attr-defined]
        raise err
    params = params.with_seed() if generator.seeded else params
    result = ImagineResult(prompt=prompt, mode=mode, generator=generator.spec, references=hits,
                           seeded=generator.seeded, strength=params.strength if mode == "init" else None,
                           negative_prompt=params.negative_prompt, encoder=collection.encoder_spec,
                           created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    t0 = time.perf_counter()
    init_image, refs = None, []
    if mode in ("init", "reference"):
        loaded, notes = load_references(hits, 1 if mode == "init" else k)
        result.notes.extend(notes)
        if not loaded:
            raise ConfigError(f"mode {mode!r} needs a reference image, but none of the {len(hits)} retrieved "
                              "images could be read; re-index the collection or use --mode text")
        result.used_references = [h.id for h, _ in loaded]
        init_image = loaded[0][1] if mode == "init" else None
        refs = [img for _, img in loaded] if mode == "reference" else []
    timings["load_references_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = generator.generate(prompt, mode=mode, params=params, init_image=init_image, references=refs,
                             progress=progress)
    timings["generate_s"] = time.perf_counter() - t0
    result.image = out.image
    result.seed, result.steps, result.guidance = out.seed, out.steps, out.guidance
    result.width, result.height = out.image.size
    result.extra = dict(out.extra)
    if check:
        t0 = time.perf_counter()
        result.alignment = self_check(collection, prompt_vec, out.image, hits)
        timings["check_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    result.timings = {key: round(value, 4) for key, value in timings.items()}
    return result


def resolve_generator_spec(spec: str | None) -> str | None:
    """The image generator spec: the argument, else ``$RAVL_IMAGE_GENERATOR``, else None."""
    import os

    spec = (spec or "").strip() or os.environ.get(GENERATOR_ENV, "").strip()
    return spec or None
