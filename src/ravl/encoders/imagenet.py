"""ImageNet-1k class names read from timm's data files (without importing timm).

timm ships ``imagenet_synsets.txt`` (the 1000 WordNet ids in class-index order) and two
``synset<TAB>text`` tables with lemmas and glosses. No WordNet hierarchy is used: none ships
offline inside a PyPI package installable here (nltk's WordNet is a separate download).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import MissingDependencyError

_FILES = ("imagenet_synsets.txt", "imagenet_synset_to_lemma.txt", "imagenet_synset_to_definition.txt")


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    synset: str  # WordNet id, e.g. "n02123045"
    lemmas: tuple[str, ...]  # e.g. ("tabby", "tabby cat")
    definition: str

    @property
    def name(self) -> str:
        """The first lemma: the usual short label."""
        return self.lemmas[0]


def data_dir() -> Path:
    """timm's ``data/_info`` folder, found without importing timm (which imports torchvision)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.origin:
        raise MissingDependencyError("ImageNet class names come from timm's data files: pip install timm")
    folder = Path(spec.origin).parent / "data" / "_info"
    missing = [f for f in _FILES if not (folder / f).is_file()]
    if missing:
        raise MissingDependencyError(
            f"timm at {folder.parent.parent} lacks {', '.join(missing)}: pip install --upgrade 'timm>=1.0'"
        )
    return folder


def data_files() -> list[Path]:
    """The three class-data files, in a fixed order."""
    folder = data_dir()
    return [folder / f for f in _FILES]


def _table(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("\t")
        if sep:
            out[key.strip()] = value.strip()
    return out


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1000 ImageNet-1k classes in the classifier's output order."""
    folder = data_dir()
    synsets = [s.strip() for s in (folder / _FILES[0]).read_text().splitlines() if s.strip()]
    lemmas, definitions = _table(folder / _FILES[1]), _table(folder / _FILES[2])
    if len(synsets) != 1000:
        raise MissingDependencyError(f"{folder / _FILES[0]} lists {len(synsets)} synsets, expected 1000: reinstall timm")
    classes = []
    for i, wnid in enumerate(synsets):
        names = tuple(n.strip() for n in lemmas.get(wnid, wnid).split(",") if n.strip())
        classes.append(ImageNetClass(i, wnid, names or (wnid,), definitions.get(wnid, "")))
    return tuple(classes)


def class_names() -> list[str]:
    """The first lemma of each class, in output order."""
    return [c.name for c in imagenet_classes()]
