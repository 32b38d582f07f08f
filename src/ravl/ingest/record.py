"""One image to index: its path, captions and metadata (what every dataset reader produces)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Record:
    path: Path
    captions: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    #: how its captions are stored: 'ingest' (added to, never removed: manifests, datasets) or
    #: 'sidecar' (a folder's name.txt: replaced when the sidecar changes)
    caption_source: str = "ingest"
    #: caption -> locale, for sidecar lines tagged ``LOCALE.utf8=`` (untagged captions are absent)
    caption_locales: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return str(self.path)

    def caption_tag(self, caption: str) -> str:
        """The source stored with ``caption``: ``sidecar:vi`` for a tagged sidecar line."""
        locale = self.caption_locales.get(caption)
        return f"{self.caption_source}:{locale}" if locale else self.caption_source


def clean_captions(captions: Iterable) -> list[str]:
    """Strings only, whitespace folded, empty and repeated ones dropped, in order."""
    out: list[str] = []
    for c in captions:
        if not isinstance(c, str):
            continue
        # lone surrogates (JSON "\udcff", undecodable bytes) cannot be stored as text: U+FFFD
        text = " ".join(c.split()).encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        if text and text not in out:
            out.append(text)
    return out
