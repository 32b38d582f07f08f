"""One image to index: its path, captions and metadata (what every dataset reader produces)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Record:
    path: Path
    captions: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return str(self.path)
