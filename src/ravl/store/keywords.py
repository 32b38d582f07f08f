"""Keyword search over captions, sidecar and OCR text: FTS5 with BM25 ranking.

A query's words are OR-ed, so captions matching more and rarer words rank first. Words found in at
least half of all captions are left out when another word remains: FTS5's BM25 floors their weight
(IDF) at 1e-6, so they cannot rank anything, yet ranking the thousands of captions they match
(nearly every caption holds "a") cost most of a hybrid query (docs/performance.md). Which words
are that common is remembered per database state, since the same words come back query after query.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

#: words remembered per database state before the memo starts over
MEMO_LIMIT = 20_000
#: captions below which no word counts as too common for hybrid evidence
MIN_COMMON = 20


class KeywordSearch:
    def __init__(self) -> None:
        self._memo: tuple[tuple, dict] = ((), {})
        self._lock = threading.Lock()

    def search(self, conn: sqlite3.Connection, terms: Sequence[str], limit: int) -> list[tuple[int, int, float]]:
        """(caption id, item id, BM25 score, higher is better), best first, for captions matching
        any of ``terms`` (quoted FTS5 strings)."""
        common = self.common_terms(conn, terms)
        return self._ranked(conn, [t for t in terms if t not in common] or list(terms), limit)

    def _ranked(self, conn: sqlite3.Connection, terms: Sequence[str], limit: int) -> list[tuple[int, int, float]]:
        if not terms:
            return []
        match = " OR ".join(terms)
        # rank inside FTS5 first, then look up item ids for the LIMIT rows only (joining every
        # match to the captions table before sorting took twice as long)
        rows = conn.execute(
            "SELECT s.id, c.item_id, s.score FROM (SELECT rowid AS id, -bm25(captions_fts) AS score "
            "FROM captions_fts WHERE captions_fts MATCH ? ORDER BY bm25(captions_fts), rowid LIMIT ?) s "
            "JOIN captions c ON c.id = s.id ORDER BY s.score DESC, s.id", (match, limit)).fetchall()
        return [(int(a), int(b), float(s)) for a, b, s in rows]

    def evidence(self, conn: sqlite3.Connection, terms: Sequence[str], limit: int
                 ) -> tuple[list[tuple[int, int, float]], dict[str, int], int, dict[int, set[str]]]:
        """What hybrid fusion needs for ``terms`` that are not too common: the ranked rows as
        :meth:`search` gives them, each term's document frequency, the caption count, and which of
        the terms each returned caption holds (FTS5's own matching: stemming, folded diacritics)."""
        total = conn.execute("SELECT COUNT(*) FROM captions").fetchone()[0]
        if total >= MIN_COMMON:  # in a handful of captions every word is "common"
            terms = [t for t in terms if t not in self.common_terms(conn, terms)]
        rows = self._ranked(conn, terms, limit)
        df = {t: self._count(conn, t) for t in terms}
        held: dict[int, set[str]] = {cid: set() for cid, _, _ in rows}
        ids = list(held)
        for t in terms:
            for start in range(0, len(ids), 900):
                chunk = ids[start:start + 900]
                for (cid,) in conn.execute(f"SELECT rowid FROM captions_fts WHERE captions_fts MATCH ? AND rowid IN "
                                           f"({','.join('?' * len(chunk))})", (t, *chunk)):
                    held[int(cid)].add(t)
        return rows, df, int(total), held

    def _count(self, conn: sqlite3.Connection, term: str) -> int:
        key = "#df " + term
        memo = self._memo_for(conn)
        if key not in memo:
            memo[key] = conn.execute("SELECT COUNT(*) FROM captions_fts WHERE captions_fts MATCH ?", (term,)).fetchone()[0]
        return int(memo[key])

    def _memo_for(self, conn: sqlite3.Connection) -> dict:
        state = tuple(conn.execute("SELECT value FROM meta WHERE key IN ('generation', 'state') ORDER BY key"))
        with self._lock:
            if self._memo[0] != state or len(self._memo[1]) > MEMO_LIMIT:
                self._memo = (state, {})
            return self._memo[1]  # bound to this state: a search of another state never writes here

    def common_terms(self, conn: sqlite3.Connection, terms: Sequence[str]) -> set[str]:
        """The terms found in at least half of all captions (BM25's IDF is <= 0 for them)."""
        memo = self._memo_for(conn)
        unknown = [t for t in terms if t not in memo]
        if unknown:
            total = conn.execute("SELECT COUNT(*) FROM captions").fetchone()[0]
            for t in unknown:  # LIMIT/OFFSET: the scan stops at the half-way row
                memo[t] = bool(total) and conn.execute(
                    "SELECT 1 FROM captions_fts WHERE captions_fts MATCH ? LIMIT 1 OFFSET ?",
                    (t, (total + 1) // 2 - 1)).fetchone() is not None
        return {t for t in terms if memo[t]}
