"""A collection's search calibration (:mod:`ravl.scores`): fitted on its own captioned pairs by
the writer that finishes an ingest, stored in the collection, read by every search. Mixed into
:class:`~ravl.collection.core.Collection`."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..hits import Knobs
from ..hybrid import DEFAULT_LANGS, best_coverage, content_words, fold, fts_terms, idf
from ..scores import FIT_PAIRS, MIN_PAIRS, SUITE_DEFAULT, WEIGHT_GRID, Calibration, fit_logistic
from ..store import bulk
from ..store.db import OCR_SOURCE, ItemRow
from ..store.indexes import IndexSet
from ..store.tuning import PROBES
from .tuned import TunedBridge

#: generic text queries for tuning an image index when a collection has too few captions
PROBE_TEXTS = tuple(f"a photo of {w}" for w in (
    "a cat", "a dog", "a bird", "a car", "a person", "a tree", "a flower", "a house", "food", "a boat", "a city street",
    "a beach", "mountains", "a child", "a horse", "a bicycle", "a plane", "a train", "a bus", "a cup", "a table",
    "a chair", "a book", "a phone", "a computer", "a fish", "a bear", "an elephant", "a sign", "a bridge",
    "a river", "the sea", "snow", "a garden", "a kitchen", "a bedroom", "a face", "a crowd", "a road", "a field"))
#: candidates per ranking in a fit, and the hits a score is calibrated over
FIT_DEPTH = 50
#: collections with fewer captions refit after every change (cheap); larger ones after a 10% change
REFIT_ALWAYS = 500
SHOWN = 10


class Calibrating(TunedBridge):
    """Calibration, cached search facts and nearest-neighbour access of :class:`~ravl.collection.core.Collection`."""

    _indexes: IndexSet
    _search_facts: tuple[int, dict] | None

    if TYPE_CHECKING:  # defined by Collection
        def get_item(self, item_id: int) -> ItemRow: ...
        def item_vectors(self, item_ids: Sequence[int] | None = None, which: str = "emb") -> tuple[np.ndarray, np.ndarray]: ...
        def caption_vectors(self, caption_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]: ...
        def caption_rows(self, caption_ids: Sequence[int]) -> dict[int, tuple[str, int, str]]: ...

    def text_query_sample(self, n: int = 200) -> tuple[str, np.ndarray] | None:
        """Text queries for tuning the image index's search knobs: stored caption vectors (what
        text queries look like to this encoder), else the encoder's vectors for generic probes."""
        sample = bulk.caption_sample(self._db, n, seed=1, exclude_source=OCR_SOURCE)
        if len(sample) >= 20:
            return "text (captions)", self.caption_vectors([c for c, _, _ in sample])[1]
        return PROBES, self.encoder.encode_texts(list(PROBE_TEXTS))

    def image_query_sample(self, n: int = 200) -> tuple[str, np.ndarray] | None:
        """Image queries for tuning the caption index: stored images' shared-space embeddings."""
        return "image", self.item_embeddings(bulk.item_sample(self._db, n, seed=2))[1]

    def _nearest(self, queries: np.ndarray, index: str, k: int, exclude_items: Iterable[int] = (),
                 knobs: Knobs | None = None) -> list[list[tuple[int, float]]]:
        """(id, score) of the ``k`` nearest per query; ids are caption ids for ``captions``."""
        excluded = list(exclude_items)
        if index == "captions":
            excluded = [c for ids in self._db.caption_ids_for_items(excluded).values() for c in ids]
        return self._indexes.search(index, queries, k, excluded, knobs=knobs)

    def search_facts(self) -> dict:
        """Facts every search needs, read once per database state: item and caption counts, whether
        the keyword index exists, the stored calibration and the caption languages."""
        generation = self._db.generation()
        cached = self._search_facts
        if cached is None or cached[0] != generation:
            meta = self._db.get_meta()
            counts = self._db.counts()
            stored = meta.get("search_calibration")
            langs = tuple(x for x in str(meta.get("caption_langs") or "").split(",") if x) or DEFAULT_LANGS
            cached = (generation, {"images": counts["images"], "captions": counts["captions"],
                                   "keyword_index": self._db.has_keyword_index(),
                                   "calibration": Calibration.from_dict(json.loads(stored)) if stored else None,
                                   "langs": tuple(dict.fromkeys(("en", *langs))),
                                   "bridge": meta.get("bridge_sha256")})
            self._search_facts = cached
        return cached[1]

    def stopword_langs(self) -> tuple[str, ...]:
        """The languages whose stopwords are not keyword evidence: English and the collection's
        caption languages (``ravl index --caption-langs``)."""
        return self.search_facts()["langs"]

    def calibration(self) -> Calibration:
        """The collection's own calibration when it was fitted on enough pairs, else the suite's."""
        own = self.search_facts()["calibration"]
        return own if own is not None and own.pairs >= MIN_PAIRS else SUITE_DEFAULT

    def refit_calibration(self, *, lazy: bool = False) -> Calibration | None:
        """Fit and store the calibration when the collection changed enough since the last fit: a
        new tuned bridge, or a caption count 10% away from the fitted one (collections under
        ``REFIT_ALWAYS`` captions, cheap to fit, refit after every change). A fit is a statistic of
        the captioned pairs, so a small add to a big collection keeps it (and does not load the
        index). ``lazy`` is accepted for :meth:`refresh_indexes`' sake; the rule is the same."""
        facts = self.search_facts()
        old = facts["calibration"]
        if old is not None and old.generation == self._db.generation():
            return old
        if old is not None and old.fit.get("bridge") == facts["bridge"] and facts["captions"] >= REFIT_ALWAYS and \
                abs(facts["captions"] - old.fit.get("captions", 0)) < 0.1 * facts["captions"]:
            return old
        cal = self.fit_calibration()
        if not self._db.readonly:
            with self._db.transaction() as conn:
                self._db.set_meta({"search_calibration": json.dumps(cal.to_dict())}, conn)
            self._search_facts = None
        return cal

    def fit_calibration(self, pairs: int = FIT_PAIRS, seed: int = 0) -> Calibration:
        """Fit on up to ``pairs`` sampled captions (each a query whose match is its own image)."""
        generation = self._db.generation()
        sample = bulk.caption_sample(self._db, pairs, seed, exclude_source=OCR_SOURCE)
        n_captions = self.search_facts()["captions"]
        if len(sample) < MIN_PAIRS or self.search_facts()["images"] < 2:
            return Calibration(**{**SUITE_DEFAULT.to_dict(), "source": "suite", "pairs": len(sample),
                                  "generation": generation,
                                  "fit": {"captions": n_captions, "bridge": self.search_facts()["bridge"]}})
        got, vecs = self.caption_vectors([c for c, _, _ in sample])
        by_id = dict(zip(got.tolist(), vecs))
        queries = np.stack([by_id[c] for c, _, _ in sample])
        nearest = self._nearest(queries, "images", FIT_DEPTH)
        langs = self.stopword_langs()
        rows = []
        for (cid, item, text), vec in zip(sample, nearest):
            kw, same = self._fit_keywords(text, cid, langs)
            rows.append(({item} | same, dict(vec), kw))
        emb_by: dict = {}
        need = sorted({i for relevant, cos, kw in rows for i in [*relevant, *kw] if i not in cos})
        if need:
            ids, emb = self.item_embeddings(need)
            emb_by = dict(zip(ids.tolist(), emb))
        cosines = []
        for (relevant, cos, kw), q in zip(rows, queries):
            full = dict(cos)
            for i in [*relevant, *kw]:
                if i not in full and i in emb_by:
                    full[i] = float(emb_by[i] @ q)
            cosines.append(full)
        return _fit(rows, cosines, generation, {"captions": n_captions, "bridge": self.search_facts()["bridge"]})

    def _fit_keywords(self, text: str, own_caption: int, langs: tuple[str, ...]
                      ) -> tuple[dict[int, tuple[float, float]], set[int]]:
        """item -> (coverage, BM25) of a caption's keyword matches, its own caption left out, and
        the items captioned with the same text (they answer the query too)."""
        words = content_words(text, langs)
        if not words or not self.search_facts()["keyword_index"]:
            return {}, set()
        terms = fts_terms(words)
        found, df, total, held = bulk.keyword_evidence(self._db, terms, FIT_DEPTH)
        live = [t for t in terms if t in df]
        weights = [idf(max(0, df[t] - 1), max(1, total - 1)) for t in live]  # as if the own caption were gone
        # an identical caption holds every word: only those rows are read and compared
        full = [cid for cid, _, _ in found if cid != own_caption and len(held[cid]) == len(live)]
        texts = self.caption_rows(full) if full else {}
        key = _normal(text)
        same = {row[1] for row in texts.values() if _normal(row[0]) == key}
        out = best_coverage(found, held, live, weights, lambda cid, item: None if cid == own_caption else item)
        return dict(sorted(out.items(), key=lambda kv: (-kv[1][0], -kv[1][1]))[:FIT_DEPTH]), same


def _normal(text: str) -> str:
    return " ".join(fold(text).replace(".", " ").split())


def _fit(rows, cosines, generation: int, facts: dict) -> Calibration:
    """Choose the keyword weight by Recall@1 + Recall@10 on the pairs, then a logistic curve per mode
    over the hits a user would see (the top ``SHOWN``)."""
    def ranking(n: int, w: float) -> list[int]:
        _, cos, kw = rows[n]
        cands = set(cos) | set(kw)
        return sorted(cands, key=lambda i: -(cosines[n].get(i, 0.0) + w * kw.get(i, (0.0, 0.0))[0]))

    def recalls(w: float) -> tuple[float, float]:
        r1 = r10 = 0
        for n, (relevant, _, _) in enumerate(rows):
            top = ranking(n, w)[:SHOWN]
            r1 += bool(top) and top[0] in relevant
            r10 += bool(relevant.intersection(top))
        return 100.0 * r1 / len(rows), 100.0 * r10 / len(rows)

    tried = {w: recalls(w) for w in WEIGHT_GRID}
    best = max(WEIGHT_GRID, key=lambda w: (round(sum(tried[w]), 6), -w))

    def curve(value, order) -> tuple[float, float]:
        xs, ys = [], []
        for n, (relevant, _, _) in enumerate(rows):
            for i in order(n)[:SHOWN]:
                xs.append(value(n, i))
                ys.append(i in relevant)
        return fit_logistic(np.array(xs), np.array(ys)) if xs and any(ys) else SUITE_DEFAULT.vector

    def kw_order(n: int) -> list[int]:
        kw = rows[n][2]
        return sorted(kw, key=lambda i: (-kw[i][0], -kw[i][1]))

    vector = curve(lambda n, i: cosines[n].get(i, 0.0), lambda n: ranking(n, 0.0))
    hybrid = curve(lambda n, i: cosines[n].get(i, 0.0) + best * rows[n][2].get(i, (0.0, 0.0))[0],
                   lambda n: ranking(n, best))
    keyword = curve(lambda n, i: rows[n][2][i][0], kw_order) if any(r[2] for r in rows) else SUITE_DEFAULT.keyword
    fit = {**facts, "recall": {str(w): [round(a, 2), round(b, 2)] for w, (a, b) in tried.items()}}
    return Calibration(best, vector, hybrid, keyword, "collection", len(rows), generation, fit)
