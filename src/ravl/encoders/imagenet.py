"""ImageNet-1k class names, shipped with ravl (``ravl/data/imagenet_classes.tsv``).

One row per class in the classifier's output order: the WordNet id, its lemmas (comma-separated)
and its gloss, tab-separated. The rows are timm's ``imagenet_synsets.txt`` joined with its two
``synset<TAB>text`` tables (the files ravl read before it stopped needing timm), so the parsed
classes, and with them every ConSE fingerprint, are unchanged. No WordNet hierarchy is used.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import ModelNotAvailableError

CLASSES_FILE = "imagenet_classes.tsv"


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


def data_files() -> list[Path]:
    """The class table shipped with ravl (one file; a list, as the class digest's memo takes)."""
    path = Path(str(resources.files("ravl") / "data" / CLASSES_FILE))
    if not path.is_file():
        raise ModelNotAvailableError(f"ravl's ImageNet class table is missing at {path}: pip install --force-reinstall ravl")
    return [path]


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1000 ImageNet-1k classes in the classifier's output order."""
    (path,) = data_files()
    classes = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        wnid, _, rest = line.partition("\t")
        lemmas, _, definition = rest.partition("\t")
        names = tuple(n.strip() for n in lemmas.split(",") if n.strip())
        classes.append(ImageNetClass(i, wnid.strip(), names or (wnid.strip(),), definition.strip()))
    if len(classes) != 1000:
        raise ModelNotAvailableError(f"{path} lists {len(classes)} classes, expected 1000: pip install --force-reinstall ravl")
    return tuple(classes)


def class_names() -> list[str]:
    """The first lemma of each class, in output order."""
    return [c.name for c in imagenet_classes()]
