"""One index for images and features (docs/scale.md, "Storing less"): while every item's features
are its embedding and no tuned bridge is set (a CLIP collection), :class:`~.indexes.IndexSet`
answers ``features`` searches with the ``images`` index. These are the two things that index then
carries for image queries: the search knobs a ``features`` index of its own would have been tuned
to, and the facts ``ravl info`` shows for ``features``."""
from __future__ import annotations

from ..progress import Progress, describe
from .ann import AnnIndex, Chunks, Fetch

#: the key of an ``images`` index's info holding its knobs for image queries
AS_FEATURES = "as_features"


def tune_for_image_queries(index: object, chunks: Chunks, fetch: Fetch, progress: Progress | None) -> None:
    """Record in the shared ``images`` index (inside the build's snapshot) the knobs and recall a
    ``features`` index of its own was tuned to (on a sample of the stored vectors), so image ->
    image answers are what that copy gave; nothing for exact search or an index tuned on stored
    vectors already (the same knobs)."""
    if not isinstance(index, AnnIndex) or not len(index) or index.info.get("recall_query_kind") in (None, "stored"):
        return
    describe(progress, "index images: tuning for image queries (the features index)")
    index.info[AS_FEATURES] = index.tuned_as(chunks, fetch)


def image_query_knobs(index: object) -> dict | None:
    """The knobs the shared ``images`` index answers image queries with (None: its own)."""
    info = getattr(index, "info", None) or {}
    extra = info.get(AS_FEATURES)
    return extra.get("search") if isinstance(extra, dict) else None


def shared_facts(facts: dict[str, dict]) -> dict[str, dict]:
    """``facts`` (index name -> recorded build facts) with ``features`` shown as the ``images``
    index answering image queries (``shared_with: 'images'``); a copy recorded before is dropped."""
    facts.pop("features", None)
    images = facts.get("images")
    if images is not None:
        facts["features"] = {**images, **(images.get(AS_FEATURES) or {}), "shared_with": "images"}
        facts["features"].pop(AS_FEATURES, None)
    return facts
