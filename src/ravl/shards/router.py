"""A search across shards, independent of how shards are reached: the query's vectors from one
shard, every shard's candidates, the fusion (:mod:`ravl.shards.merge`), the winners' hits from the
shards holding them, and the same JSON as one collection's ``/search`` with item ids namespaced
(``shard0:123``). :mod:`ravl.shards.deploy` reaches shards through Ray Serve handles; a test may
pass plain :class:`~ravl.shards.worker.ShardWorker` objects."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from ..errors import ConfigError, ShardError
from ..request import SearchRequest, Term

#: ``call(shard index, method name, *args)``: one shard's answer
Call = Callable[..., Awaitable[Any]]


def check_shards(facts: Sequence[dict]) -> None:
    """Shards must share the encoder (and tuned bridge): their vectors must live in one space."""
    if not facts:
        raise ShardError("no shards given; pass two or more collection folders")
    first = facts[0]
    for f in facts[1:]:
        if (f["fingerprint"], f["dim"], f["feature_dim"]) != (first["fingerprint"], first["dim"], first["feature_dim"]):
            raise ShardError(f"shard {f['name']} ({f['path']}) was built with encoder {f['fingerprint']!r} but "
                             f"{first['name']} with {first['fingerprint']!r}; re-index it with the same --encoder "
                             "(and the same tuned bridge) or leave it out")


def split_id(value: str, names: Sequence[str]) -> tuple[int, int]:
    """``"shard1:42"`` -> (1, 42)."""
    name, sep, rest = str(value).partition(":")
    if not sep or name not in names or not rest.strip().lstrip("-").isdigit():
        raise ConfigError(f"item ids across shards are 'SHARD:ID' (e.g. {names[0]}:12), got {value!r}; "
                          f"shards: {', '.join(names)}")
    return names.index(name), int(rest)


class ShardSearch:
    """Fans one request out over named shards and fuses the answers."""

    def __init__(self, names: Sequence[str], call: Call):
        self.names = list(names)
        self.call = call
        self._turn = 0  # text queries take turns encoding on each shard (they share one encoder)

    async def search(self, request: SearchRequest, *, include_self: bool = False) -> dict:
        """The ``/search`` JSON for ``request``, whose image terms name stored items by namespaced id
        (``Term("image", "shard0:12")``); an item alone is left out of its own neighbours unless
        ``include_self``."""
        from ..tasks.search import answer
        from .merge import fuse

        if request.sort != "relevance":
            raise ConfigError("sort=date is not supported across shards; search one shard for it, or sort by relevance")
        items = {str(t.value): split_id(str(t.value), self.names) for t in request.terms if t.kind != "text"}
        owners = {s for s, _ in items.values()}
        if len(owners) > 1:
            raise ConfigError("a query across shards may name items of one shard only; drop the other item terms")
        if owners:
            owner = owners.pop()
        else:
            owner, self._turn = self._turn % len(self.names), self._turn + 1
        local = replace(request, terms=tuple(Term("item", items[str(t.value)][1], t.weight) if t.kind != "text" else t
                                             for t in request.terms))
        qvec, iv = None, None
        if local.mode != "keyword" or local.single_image:
            qvec, iv = await self.call(owner, "vectors", local)
        images = [iv] if iv is not None else []
        exclude = {owner: [local.terms[0].value]} if local.single_image and not include_self else {}
        found = await asyncio.gather(*(self.call(s, "evidence", request, qvec, images, exclude.get(s, []))
                                       for s in range(len(self.names))))
        fused = fuse(request, found)
        ready = {(s, i): replace(e.hits[i], score=sc, **ex) for s, e in enumerate(found)
                 for s2, i, sc, ex in fused.hits if s2 == s and i in e.hits}
        by_shard: dict[int, list[tuple[int, float, dict]]] = {}
        for s, i, sc, ex in fused.hits:
            if (s, i) not in ready:
                by_shard.setdefault(s, []).append((i, sc, ex))
        order = list(by_shard)
        rendered = await asyncio.gather(*(self.call(s, "render", request.target, by_shard[s]) for s in order))
        hits_of = {**ready, **{(s, int(h.id)): h for s, hits in zip(order, rendered) for h in hits}}
        hits = [self._namespaced(s, hits_of[(s, i)]) for s, i, _, _ in fused.hits if (s, i) in hits_of]
        out = answer(request, hits)
        out["query"] = _named_query(out["query"])
        return out

    def _namespaced(self, s: int, hit):
        name = self.names[s]
        if hasattr(hit, "image_id"):
            return replace(hit, id=f"{name}:{hit.id}", image_id=f"{name}:{hit.image_id}")
        return replace(hit, id=f"{name}:{hit.id}")


def _named_query(query: dict) -> dict:
    """The query as shown: an item named by its namespaced id is an ``item``, as one collection shows it."""
    if "image" in query:
        return {"item": query["image"]}
    return {**query, "terms": [{**t, "kind": "item"} if t["kind"] == "image" else t for t in query["terms"]]} \
        if "terms" in query else query


async def gather_facts(call: Call, n: int) -> list[dict]:
    return list(await asyncio.gather(*(call(s, "facts") for s in range(n))))
