"""Search over a collection, driven by one :class:`~ravl.request.SearchRequest`: the query vector
from its terms, the vector and keyword rankings, their fusion, calibrated scores, exclusions and
the minimum score. Mixed into :class:`~ravl.collection.core.Collection`."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..encoders.base import ImageVectors, l2_normalize
from ..errors import ConfigError
from ..hits import MAX_K, CaptionHit, ImageHit, check_texts
from ..hybrid import best_coverage, check_mode, content_words, fts_terms, fuse, idf
from ..request import SearchRequest, Term
from ..scores import Calibration, image_similarity
from ..store import bulk
from ..store.sqlite_errors import translating_sqlite_errors
from .filtered import Filtering

#: items a negative term may exclude (its keyword matches); more are left to the vector's steering
MAX_EXCLUDED = 10_000

Scored = list[tuple[int, float, dict]]  # (id, score, extras: found_by and the components), best first


class Searching(Filtering):
    """Search methods of :class:`~ravl.collection.core.Collection`."""

    # --- entry points ----------------------------------------------------------------------------
    def search(self, request: SearchRequest, *, text_vectors: dict[str, np.ndarray] | None = None,
               images: Sequence[ImageVectors] = (), exclude_items: Iterable[int] = ()) -> list:
        """The hits for one request. Text terms are encoded here unless ``text_vectors`` (text ->
        vector) has them; image terms take their base-encoder vectors from ``images``, in order."""
        return self.search_batch([request], [self.query_vector(request, text_vectors, images)],
                                 exclude_items=exclude_items, images=[images])[0]

    @translating_sqlite_errors
    def search_batch(self, requests: Sequence[SearchRequest], vectors: Sequence[np.ndarray | None], *,
                     exclude_items: Iterable[int] = (), images: Sequence[Sequence[ImageVectors]] = (),
                     exclude_each: Sequence[Iterable[int]] = ()) -> list[list]:
        """Hits for requests whose query vectors (from :meth:`query_vector`) are ready; requests
        sharing target and index knobs share one index call (image similarity too). ``exclude_items``
        leaves items out of every request's answer, ``exclude_each[n]`` out of request ``n``'s."""
        self._check_not_empty()
        excluded = set(exclude_items)
        out: list[list] = [[] for _ in requests]
        plain: dict[tuple, list[int]] = {}
        similar: dict[tuple, list[int]] = {}
        allowed = {n: self.allowed_set(r.filters) for n, r in enumerate(requests)}
        own = {n: excluded | set(exclude_each[n] if n < len(exclude_each) else ()) for n in range(len(requests))}
        for n, request in enumerate(requests):
            alone = n if allowed[n] is not None else -1  # filtered requests search alone (their candidates differ)
            if request.single_image and request.target == "images":
                similar.setdefault((request.k, request.knobs(), alone), []).append(n)
            else:
                plain.setdefault((request.target, request.knobs(), alone), []).append(n)
        for (k, knobs, _), rows in similar.items():  # one index call per group of image queries
            feats = np.vstack([self._image_features(requests[n].terms[0], images[n] if n < len(images) else ())
                               for n in rows])
            only = allowed[rows[0]]
            if only is not None:
                found = [self._filtered_nearest(feats[0], "features", k, only, own[rows[0]], knobs)]
            else:
                depth = k + max(len(own[n] - excluded) for n in rows)
                found = [[(i, s) for i, s in row if i not in own[n]][:k]
                         for n, row in zip(rows, self._nearest(feats, "features", depth, list(excluded), knobs))]
            for n, row in zip(rows, found):
                out[n] = self._similar_hits(row, requests[n])
        for (target, knobs, _), rows in plain.items():
            modes = [self.text_mode(requests[n].mode) if requests[n].texts else "vector" for n in rows]
            vec_rows = [n for n, m in zip(rows, modes) if m != "keyword"]
            depth = max((requests[n].k if m == "vector" else min(MAX_K, max(50, 3 * requests[n].k)))
                        for n, m in zip(rows, modes))
            negatives = {n: self._negative_items(requests[n]) for n in rows}
            nearest: dict[int, list[tuple[int, float]]] = {}
            if vec_rows:
                qs = np.vstack([_need_vector(vectors[n]) for n in vec_rows])
                extra = max(len(negatives[n]) + len(own[n]) for n in vec_rows)
                only = allowed[vec_rows[0]]
                if only is not None:  # one filtered request
                    found = [self._filtered_nearest(qs[0], target, depth, only, own[vec_rows[0]] | negatives[vec_rows[0]],
                                                    knobs)]
                else:
                    found = self._nearest(qs, target, min(MAX_K + extra, depth + extra), list(excluded), knobs)
                nearest = dict(zip(vec_rows, found))
            for n, mode in zip(rows, modes):
                skip = own[n] | negatives[n]
                vec = [(i, s) for i, s in nearest.get(n, []) if i not in skip]
                out[n] = self._ranked_hits(requests[n], mode, vectors[n], vec, skip, allowed[n])
        return out

    def query_vector(self, request: SearchRequest, text_vectors: dict[str, np.ndarray] | None = None,
                     images: Sequence[ImageVectors] = ()) -> np.ndarray | None:
        """The request's query in the shared space: the normalised weighted sum of its terms'
        vectors (None in keyword mode)."""
        if request.mode == "keyword":
            return None
        given = dict(text_vectors or {})
        missing = [str(t.value) for t in request.texts if str(t.value) not in given]
        if missing:
            check_texts(missing)
            given.update(zip(missing, self.encoder.encode_texts(missing)))
        pictures = iter(images)
        total = np.zeros(self.dim, np.float64)
        for term in request.terms:
            if term.kind == "text":
                v = np.asarray(given[str(term.value)], np.float64).reshape(-1)
            elif term.kind == "item":
                self.get_item(int(term.value))
                v = self.item_embeddings([int(term.value)])[1][0]
            else:
                vecs = next(pictures, None)
                if vecs is None:
                    raise ConfigError(f"image term {term.value!r} has no vectors; pass the image's vectors in 'images'")
                v = self.bridged(vecs).embedding[0]
            total += term.weight * v
        if not np.any(total):
            raise ConfigError("the query's terms cancel out; change their weights")
        return l2_normalize(total.astype(np.float32)[None, :])[0]

    def text_mode(self, mode: str) -> str:
        """``mode`` checked, ``auto`` resolved: ``hybrid`` when the collection holds text, else ``vector``."""
        check_mode(mode)
        facts = self.search_facts()
        has_index, has_text = facts["keyword_index"], facts["captions"] > 0
        if mode == "auto":
            return "hybrid" if has_index and has_text else "vector"
        if mode != "vector" and not has_index:
            raise ConfigError(f"collection {self.path} predates keyword search; run 'ravl index' on it once (any "
                              "source) to build its keyword index, or use --mode vector")
        return mode

    # --- legacy shapes (one target, many texts or images) ------------------------------------------
    def search_text(self, texts: Sequence[str], **options) -> list[list]:
        """Each text as its own request (its arithmetic included); ``options`` as for :class:`SearchRequest`."""
        check_texts(texts)
        requests = [SearchRequest.of_text(t, **options) for t in texts]
        plain = sorted({str(t.value) for r in requests if r.mode != "keyword" for t in r.texts})
        given = dict(zip(plain, self.encoder.encode_texts(plain))) if plain else {}
        return self.search_batch(requests, [self.query_vector(r, given) for r in requests])

    def search_text_vectors(self, texts: Sequence[str], vectors: np.ndarray | None, request: SearchRequest) -> list[list]:
        """:meth:`search_text` for plain texts whose vectors are ready (the server's batcher);
        ``request`` gives the options (its terms are replaced by each text)."""
        from dataclasses import replace

        reqs = [replace(request, terms=(Term("text", t),)) for t in texts]
        vecs = [None] * len(texts) if vectors is None else [l2_normalize(v[None, :])[0] for v in vectors]
        return self.search_batch(reqs, vecs)

    def search_image(self, images: Sequence, *, exclude_items: Iterable[int] = (), **options) -> list[list]:
        """Image -> similar images (image features) or image -> captions (shared space)."""
        vecs = self.base_encoder.embed_images([im.convert("RGB") for im in images])
        return self.search_image_vectors(vecs, exclude_items=exclude_items, **options)

    def search_image_vectors(self, vecs: ImageVectors, *, exclude_items: Iterable[int] = (), **options) -> list[list]:
        """:meth:`search_image` with the base encoder's vectors already computed (e.g. by a batcher)."""
        rows = [vecs.take(i) for i in range(len(vecs.embedding))]
        requests = [SearchRequest((Term("image", "query"),), **options) for _ in rows]
        vectors = [self.query_vector(r, None, [v]) for r, v in zip(requests, rows)]
        return self.search_batch(requests, vectors, exclude_items=exclude_items, images=[[v] for v in rows])

    def search_item(self, item_id: int, *, include_self: bool = False, **options) -> list:
        """Search with a stored item's own vectors (no image decoding or model call)."""
        request = SearchRequest((Term("item", item_id),), **options)
        self.get_item(item_id)
        return self.search(request, exclude_items=() if include_self else (item_id,))

    # --- parts ---------------------------------------------------------------------------------------
    def _check_not_empty(self) -> None:
        if not self.search_facts()["images"]:
            raise ConfigError(f"the collection {self.path} is empty; add images with 'ravl index SOURCE -c {self.path}'")

    def _image_features(self, term: Term, given: Sequence[ImageVectors]) -> np.ndarray:
        if term.kind == "item":
            self.get_item(int(term.value))
            return self.item_vectors([int(term.value)], which="feat")[1]
        if not given:
            raise ConfigError(f"image term {term.value!r} has no vectors; pass the image's vectors in 'images'")
        return given[0].features[:1]

    def _similar_hits(self, found: list[tuple[int, float]], request: SearchRequest) -> list:
        scored = [(i, float(image_similarity(s)), {"found_by": {"vector": r}, "vector_score": round(s, 6)})
                  for r, (i, s) in enumerate(found, 1)]
        return self._hits("images", [self._finish(scored, request, "images")])[0]

    def _finish(self, scored: Scored, request: SearchRequest, target: str) -> Scored:
        """The top ``k`` at or above the minimum score, newest first with ``sort="date"``."""
        top = _cut(scored, request)
        return self._by_date(target, top) if request.sort == "date" else top

    def _negative_items(self, request: SearchRequest) -> set[int]:
        """Items whose text holds a negative term's words (they are left out of the results)."""
        words = [w for t in request.texts if t.weight < 0 for w in content_words(str(t.value), self.stopword_langs())]
        if not words or not self.search_facts()["keyword_index"]:
            return set()
        rows = self._db.keyword_search(fts_terms(words), MAX_EXCLUDED)
        return {item for _, item, _ in rows}

    def _positive_terms(self, request: SearchRequest) -> list[str]:
        """The full-text terms of the content words of the request's positive text terms."""
        words = [w for t in request.texts if t.weight > 0 for w in content_words(str(t.value), self.stopword_langs())]
        return fts_terms(dict.fromkeys(words)) if words else []

    def _keyword_side(self, request: SearchRequest, target: str, depth: int,
                      allowed: set[int] | None = None) -> dict[int, tuple[float, float]]:
        """id -> (coverage, BM25) of the keyword matches of the request's positive words (of
        ``allowed`` items only, when given)."""
        terms = self._positive_terms(request)
        if not terms:
            return {}
        rows, df, total, held = bulk.keyword_evidence(self._db, terms, depth if target == "captions" else depth * 4)
        live = [t for t in terms if t in df]
        weights = [idf(df[t], total) for t in live]
        return best_coverage(rows, held, live, weights,
                             lambda cid, item: None if allowed is not None and item not in allowed
                             else cid if target == "captions" else item)

    def _ranked_hits(self, request: SearchRequest, mode: str, qvec: np.ndarray | None,
                     vector: list[tuple[int, float]], skip: set[int], allowed: set[int] | None = None) -> list:
        target = request.target
        cal: Calibration = self.calibration()
        depth = candidate_depth(mode, request.k)
        keyword = {} if mode == "vector" else {i: v for i, v in self._keyword_side(request, target, depth, allowed).items()
                                                if i not in skip}
        if mode == "hybrid" and not keyword:
            mode = "vector"  # no content word (or none that discriminates): pure vector search
        vrank = {i: r for r, (i, _) in enumerate(vector, 1)}
        krank = {i: r for r, i in enumerate(sorted(keyword, key=lambda i: (-keyword[i][0], -keyword[i][1])), 1)}
        cos = dict(vector)
        if mode == "hybrid":
            missing = [i for i in keyword if i not in cos]
            if missing and qvec is not None:
                cos.update(zip(missing, self._cosines(target, missing, qvec)))
        ids = list(vrank) if mode == "vector" else list(krank) if mode == "keyword" else list(dict.fromkeys([*vrank, *krank]))
        w = cal.weight_for(request.fusion.keyword_weight)
        scored: Scored = fuse(ids, mode, cos, keyword, {"vector": vrank, "keyword": krank}, w)
        text_query = any(t.kind == "text" and t.weight > 0 for t in request.terms)
        scored = [(i, _score(target, text_query, mode, raw, w, cal), extras) for i, raw, extras in scored]
        return self._hits(target, [self._finish(scored, request, target)])[0]

    def _cosines(self, target: str, ids: list[int], qvec: np.ndarray) -> list[float]:
        got, vecs = self.caption_vectors(ids) if target == "captions" else self.item_embeddings(ids)
        by_id = dict(zip(got.tolist(), (vecs @ qvec).tolist()))
        return [float(by_id.get(i, 0.0)) for i in ids]

    def _hits(self, target: str, scored: list[Scored]) -> list:
        """Hits for scored id lists: only the rows shown are read from the store."""
        wanted = sorted({i for row in scored for i, _, _ in row})
        if target == "captions":
            rows = self._db.caption_rows(wanted)
            return [[CaptionHit(c, rows[c][0], rows[c][1], rows[c][2], s, **ex) for c, s, ex in row if c in rows]
                    for row in scored]
        items = self._db.items(wanted)
        return [[ImageHit(i, items[i].uri, s, items[i].captions, **ex) for i, s, ex in row if i in items]
                for row in scored]


def candidate_depth(mode: str, k: int) -> int:
    """Candidates each ranking contributes for a top ``k`` in ``mode`` (the shard router asks each
    shard for as many)."""
    return k if mode == "vector" else min(MAX_K, max(50, 3 * k))


def _need_vector(v: np.ndarray | None) -> np.ndarray:
    if v is None:
        raise ConfigError("this search mode needs the query's vector")
    return np.asarray(v, np.float32).reshape(1, -1)


def _score(target: str, text_query: bool, mode: str, raw: float, weight: float, cal: Calibration) -> float:
    """A hit's score: calibrated for text -> images and image -> captions (both compare a text with
    an image); text -> captions compares two texts, which no pairs calibrate: its cosine, clipped."""
    if target == "captions" and text_query:
        return round(float(np.clip(raw / (1.0 + (weight if mode == "hybrid" else 0.0)), 0.0, 1.0)), 6)
    return round(float(cal.score(mode, raw)), 6)


def _cut(scored: Scored, request: SearchRequest) -> Scored:
    """The top ``k`` at or above the request's minimum score."""
    return [s for s in scored if s[1] >= request.min_score][:request.k]
