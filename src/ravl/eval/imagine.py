"""``ravl eval imagine``: generate an image for every prompt of a file and score the results with
the collection's own encoder.

* **alignment** — the cosine between each output and its prompt (CLIP-score style, in the
  collection's space), and the output's rank among the prompt's retrieved references;
* **R-precision** (Park et al., 2021, "Benchmark for Compositional Text-to-Image Synthesis", after
  Xu et al.'s AttnGAN protocol) — each output ranks its own prompt against up to 99 distractor
  prompts drawn from the other prompts of the file; a hit when its own prompt scores highest
  (ties count as misses). Chance is 1 / (distractors + 1);
* **time per image**, and a **contact sheet** PNG (prompt | references | output).

With ``out_dir`` every output is kept as ``images/NNNN.png`` with its provenance, and a rerun
reuses those whose provenance matches (prompt, generator, mode, seed, steps): interrupted runs resume.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..collection import Collection
from ..errors import ConfigError, ImageError, InputError
from ..generate.images.base import ImageGenerator, ImageParams
from ..images import open_image
from ..progress import Progress
from ..tasks.imagine import check_prompt, imagine, read_provenance

MAX_DISTRACTORS = 99
SHEET_ROWS = 60
THUMB = 128


@dataclass
class PromptRow:
    index: int
    prompt: str
    seed: int | None
    cosine: float
    rank: int
    of: int
    r_hit: bool | None
    distractors: int
    generate_s: float | None
    references: list[int]
    output: str | None = None
    cached: bool = False


@dataclass
class ImagineRun:
    rows: list[PromptRow]
    config: dict
    summary: dict
    sheet: Image.Image | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"summary": self.summary, "rows": [asdict(r) for r in self.rows], "notes": self.notes}


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line (blank lines and ``#`` comments skipped), or JSONL ``{"prompt": ...}``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the prompt file {path} ({exc}); give a UTF-8 text file, one prompt a line") from None
    prompts = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("{"):
            try:
                text = json.loads(text)["prompt"]
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{path}:{number}: a JSON line needs a \"prompt\" string") from None
        try:
            prompts.append(check_prompt(str(text)))
        except ConfigError as exc:
            raise InputError(f"{path}:{number}: {exc}") from None
    if not prompts:
        raise InputError(f"{path} holds no prompts; write one prompt per line")
    return prompts


def _cached(path: Path, prompt: str, generator: ImageGenerator, mode: str, seed, steps) -> dict | None:
    if not path.is_file():
        return None
    try:
        prov = read_provenance(path).get("ravl") or {}
    except (ImageError, ValueError):
        return None
    same = (prov.get("prompt") == prompt and prov.get("generator") == generator.spec and prov.get("mode") == mode
            and (seed is None or prov.get("seed") == seed) and (steps is None or prov.get("steps") == steps))
    return prov if same else None


def evaluate_imagine(collection: Collection, prompts: list[str], generator: ImageGenerator, *, mode: str = "text",
                     k: int = 4, params: ImageParams = ImageParams(), seed: int = 0,
                     distractors: int = MAX_DISTRACTORS, out_dir: str | Path | None = None,
                     progress: Progress | None = None) -> ImagineRun:
    if not 0 <= distractors <= MAX_DISTRACTORS:
        raise ConfigError(f"distractors must be between 0 and {MAX_DISTRACTORS}, not {distractors}")
    generator.check_mode(mode)
    images_dir = Path(out_dir) / "images" if out_dir else None
    if images_dir:
        images_dir.mkdir(parents=True, exist_ok=True)
    prompt_vecs = collection.encoder.encode_texts(prompts)
    rng = random.Random(seed)
    rows: list[PromptRow] = []
    sheet_rows: list[tuple[str, list[int], Image.Image]] = []
    for i, prompt in enumerate(prompts):
        p_seed = seed + i if generator.seeded else None
        p = ImageParams(**{**asdict(params), "seed": p_seed})
        target = images_dir / f"{i:04d}.png" if images_dir else None
        prov = _cached(target, prompt, generator, mode, p_seed, params.steps) if target else None
        if prov is not None and target is not None:
            image = open_image(target)
            refs = [r["id"] for r in prov.get("references", [])]
            used = [r["id"] for r in prov.get("references", []) if r.get("used")]
            align, gen_s, used_seed = prov.get("alignment") or {}, None, prov.get("seed")
            if not align:
                raise InputError(f"{target} has no self-check in its provenance; delete it to regenerate")
        else:
            result = imagine(collection, prompt, generator, mode=mode, k=k, params=p)
            image, gen_s, used_seed = result.image, result.timings["generate_s"], result.seed
            align = result.alignment or {}
            refs, used = [h.id for h in result.references], list(result.used_references)
            if target:
                tmp = target.with_name(f".{target.name}.tmp")
                tmp.write_bytes(result.png_bytes())
                tmp.replace(target)
        emb = collection.encoder.embed_images([image]).embedding[0]
        others = [j for j in range(len(prompts)) if j != i]
        chosen = rng.sample(others, min(distractors, len(others)))
        hit = None
        if chosen:
            scores = prompt_vecs[[i] + chosen] @ emb
            hit = bool(scores[0] > scores[1:].max())
        rows.append(PromptRow(i, prompt, used_seed, float(align["prompt_cosine"]), int(align["rank"]),
                              int(align["of"]), hit, len(chosen), gen_s, refs,
                              str(target) if target else None, prov is not None))
        if len(sheet_rows) < SHEET_ROWS:
            sheet_rows.append((prompt, used or refs[:k], image))
        if progress:
            progress(i + 1, len(prompts))
    times = [r.generate_s for r in rows if r.generate_s is not None]
    hits = [r.r_hit for r in rows if r.r_hit is not None]
    summary = {"prompts": len(rows), "mean_alignment": round(float(np.mean([r.cosine for r in rows])), 6),
               "mean_rank_among_references": round(float(np.mean([r.rank for r in rows])), 3),
               "r_precision": round(float(np.mean(hits)), 6) if hits else None,
               "r_precision_chance": round(1.0 / (1 + max(r.distractors for r in rows)), 6) if hits else None,
               "distractors": max(r.distractors for r in rows),
               "seconds_per_image": round(float(np.mean(times)), 4) if times else None,
               "generated": len(times), "reused": len(rows) - len(times)}
    config = {"task": "imagine", "collection": str(collection.path), "encoder": collection.encoder_spec,
              "generator": generator.spec, "mode": mode, "k": k, "seed": seed, "steps": params.steps,
              "guidance": params.guidance, "strength": params.strength if mode == "init" else None,
              "size": f"{params.width}x{params.height}" if params.width else None, "distractors": distractors}
    run = ImagineRun(rows, config, summary)
    if len(prompts) < 2:
        run.notes.append("R-precision needs at least 2 prompts (the others are the distractors)")
    run.sheet = contact_sheet(collection, sheet_rows, k)
    return run


def _thumb(image: Image.Image) -> Image.Image:
    img = image.convert("RGB").copy()
    img.thumbnail((THUMB, THUMB))
    tile = Image.new("RGB", (THUMB, THUMB), (235, 235, 235))
    tile.paste(img, ((THUMB - img.width) // 2, (THUMB - img.height) // 2))
    return tile


def _wrap(text: str, width: int = 30, lines: int = 7) -> str:
    words, out, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            out.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    out.append(line)
    return "\n".join(out[:lines])


def contact_sheet(collection: Collection, rows: list[tuple[str, list[int], Image.Image]], k: int) -> Image.Image:
    """One row per prompt: the prompt's text | its references | the output."""
    from ..ingest.images import load_image

    text_w, pad = 220, 6
    cols = max([len(r[1]) for r in rows] + [1])
    sheet = Image.new("RGB", (text_w + (cols + 1) * (THUMB + pad) + pad, max(1, len(rows)) * (THUMB + pad) + pad),
                      "white")
    draw = ImageDraw.Draw(sheet)
    items = collection.items(sorted({i for _, refs, _ in rows for i in refs}))
    for r, (prompt, refs, output) in enumerate(rows):
        y = pad + r * (THUMB + pad)
        draw.multiline_text((pad, y + 4), _wrap(prompt), fill=(20, 20, 20))
        for c, item_id in enumerate(refs):
            x = text_w + c * (THUMB + pad)
            try:
                tile = _thumb(load_image(items[item_id].uri, min_side=THUMB).image)
            except (ImageError, KeyError):
                tile = Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
            sheet.paste(tile, (x, y))
        x = text_w + cols * (THUMB + pad) + pad
        sheet.paste(_thumb(output), (x, y))
        draw.rectangle((x - 2, y - 2, x + THUMB + 1, y + THUMB + 1), outline=(29, 95, 209), width=2)
    return sheet


def render_imagine_markdown(run: ImagineRun, sheet_path: str | None = None) -> str:
    s = run.summary
    rp = "–" if s["r_precision"] is None else f"{100 * s['r_precision']:.1f} (chance {100 * s['r_precision_chance']:.1f})"
    spi = "–" if s["seconds_per_image"] is None else f"{s['seconds_per_image']:.2f}"
    lines = ["## Imagine", "", f"{s['prompts']} prompts ({s['generated']} generated, {s['reused']} reused from --out).",
             "", "| mean alignment (cosine) | mean rank among references | R-precision % | distractors | s / image |",
             "|---:|---:|---:|---:|---:|",
             f"| {s['mean_alignment']:.4f} | {s['mean_rank_among_references']:.2f} | {rp} | {s['distractors']} | {spi} |",
             ""]
    if sheet_path:
        lines += [f"Contact sheet (prompt | references | output): {sheet_path}", ""]
    lines += [f"- {n}" for n in run.notes]
    return "\n".join(lines)
