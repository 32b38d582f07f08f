"""Captions the collection already holds: their stored vectors instead of a text-model call.

A dataset indexed in parts (COCO's train then val, a folder that grows) repeats caption texts
that some stored item already carries. The text tower that made those vectors is the collection's
own (its fingerprint says so), so the stored vector is what encoding the text again would give.
Looking them up costs one read of the collection's rows, so it is done once per run, and only
when enough of the run's captions are held to pay for it (:data:`MIN_HELD_SHARE`).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .record import Record
from .write import KnownCaptions

#: look up stored vectors only when the held texts are at least this share of the stored items
#: (reading a stored row costs about 1/50 of encoding a caption with float32 MiniLM)
MIN_HELD_SHARE = 0.02
#: items read per chunk while looking up stored caption vectors
CHUNK = 2000


def held_texts(records: Iterable[Record], known_caps: KnownCaptions) -> set[str]:
    """The distinct caption texts of ``records`` that some stored item already carries."""
    stored = {text for caps in known_caps.values() for text in caps}
    if not stored:
        return set()
    return {c for rec in records for c in rec.captions if c in stored}


def stored_caption_vectors(collection, records: Iterable[Record], known_caps: KnownCaptions,
                           *, min_share: float = MIN_HELD_SHARE) -> dict[str, np.ndarray]:
    """``{text: stored vector}`` for the captions of ``records`` the collection already holds
    (empty when too few are held to pay for reading the collection's rows)."""
    wanted = held_texts(records, known_caps)
    if not wanted or len(wanted) < min_share * len(known_caps):
        return {}
    found: dict[str, np.ndarray] = {}
    for chunk in collection.export_rows(CHUNK):
        for row in chunk:
            for text, vec in zip(row["captions"], row["caption_embeddings"]):
                if text in wanted and text not in found:
                    found[text] = np.array(vec, np.float32)
        if len(found) == len(wanted):
            break
    return found
