"""Small real evaluation sets that can be built offline on any machine with ravl's extras:

* :func:`write_stamps_manifest`: the Tux Paint stamps (Debian ``tuxpaint-stamps-default``) as a
  JSONL manifest, one line per stamp with its English description as the caption (letters,
  digits, chess, money and math stamps left out, see :mod:`ravl.ingest.tuxpaint`).
* :func:`write_skimage_classes`: a folder-per-class zero-shot set from scikit-image's bundled
  photos. Each class has one source photo (two for motorcycle: the stereo pair) and four
  deterministic views of each: the whole photo, a centre crop of 80 %, the top-left 75 %, and
  the mirror image. Greyscale photos are converted to RGB.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import MissingDependencyError

#: class folder -> scikit-image loaders (names in ``skimage.data``)
SKIMAGE_CLASSES: dict[str, tuple[str, ...]] = {
    "astronaut": ("astronaut",), "brick_wall": ("brick",), "cat": ("chelsea",), "clock": ("clock",),
    "coin": ("coins",), "cup_of_coffee": ("coffee",), "grass": ("grass",), "gravel": ("gravel",),
    "motorcycle": ("stereo_motorcycle",), "rocket": ("rocket",),
}


def write_stamps_manifest(path: Path | str, root: Path | str | None = None) -> int:
    """Write the stamps as ``{"image", "caption", "category"}`` JSONL lines; returns the count."""
    from ..ingest.tuxpaint import STAMPS_ROOT, load_stamps

    stamps = load_stamps(root or STAMPS_ROOT)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for s in stamps:
            fh.write(json.dumps({"image": str(s.image), "caption": s.description, "category": s.category},
                                ensure_ascii=False) + "\n")
    return len(stamps)


def _views(image):
    from PIL import ImageOps

    w, h = image.size
    cw, ch = int(w * 0.8), int(h * 0.8)
    return {"full": image,
            "centre": image.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)),
            "topleft": image.crop((0, 0, int(w * 0.75), int(h * 0.75))),
            "mirror": ImageOps.mirror(image)}


def write_skimage_classes(root: Path | str) -> dict[str, int]:
    """Build the folder-per-class set under ``root``; returns images per class."""
    try:
        import skimage.data
    except ImportError as exc:
        raise MissingDependencyError("the zero-shot photo set needs scikit-image: pip install 'ravl[demo]'") from exc
    from PIL import Image

    root = Path(root)
    counts = {}
    for folder, loaders in SKIMAGE_CLASSES.items():
        out = root / folder
        out.mkdir(parents=True, exist_ok=True)
        n = 0
        for loader in loaders:
            data = getattr(skimage.data, loader)()
            arrays = list(data[:2]) if loader == "stereo_motorcycle" else [data]
            for i, arr in enumerate(arrays):
                image = Image.fromarray(arr).convert("RGB")
                for view, im in _views(image).items():
                    im.save(out / f"{loader}{i}-{view}.jpg", quality=92)
                    n += 1
        counts[folder] = n
    return counts
