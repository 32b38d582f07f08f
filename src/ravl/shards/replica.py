"""The two Ray Serve deployment classes: ``Shard`` (one collection, many replicas) and ``Router``
(the HTTP ingress: parses ``GET /search`` as ``ravl serve`` does, fans out through the shards'
handles, renders the same JSON). Imported by Ray workers; :mod:`ravl.shards.deploy` binds them."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from ..errors import InputError, RavlError, ShardUnavailableError

#: how long the router keeps retrying a shard whose replica died (Serve starts a new one meanwhile)
RETRY_S = 30.0
#: GET /search parameters (those of ``ravl serve``), with their types
_INT = ("k", "ef_search", "nprobe", "rerank")
_FLOAT = ("keyword_weight", "min_score")
_TEXT = ("q", "item", "target", "mode", "sort", "after", "before", "folder", "near", "camera")


class Shard:
    """One replica of one shard: a read-only collection with its encoder loaded at start."""

    def __init__(self, path: str, name: str):
        from .worker import ShardWorker

        self.worker = ShardWorker(path, name)
        self.worker.warm()

    def facts(self) -> dict:
        return self.worker.facts()

    def vectors(self, request):
        return self.worker.vectors(request)

    def evidence(self, request, qvec, images, exclude):
        return self.worker.evidence(request, qvec, images, exclude)

    def render(self, target: str, scored):
        return self.worker.render(target, scored)

    def whoami(self) -> str:
        """This replica's Ray actor name (namespace ``serve``): what a test kills."""
        import ray

        return ray.get_runtime_context().get_actor_name() or ""

    def node(self) -> str:
        """The Ray node this replica runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def check_health(self) -> None:
        """Called by Ray Serve every few seconds; raising marks the replica unhealthy (it is replaced)."""
        self.worker.check()


class Router:
    """The ingress: ``GET /search``, ``GET /health``, ``GET /info``; errors are JSON
    ``{"type", "message"}`` with the status ``ravl serve`` gives them (503 for a shard that is down)."""

    def __init__(self, names: Sequence[str], retry_s: float, *shards: Any):
        from .router import ShardSearch

        self.names = list(names)
        self.retry_s = retry_s
        self.handles = list(shards)
        self.searcher = ShardSearch(self.names, self._call)
        self.checked = False

    async def _call(self, s: int, method: str, *args):
        return await call_with_retry(self.handles[s], self.names[s], method, *args, deadline_s=self.retry_s)

    async def _facts(self) -> list[dict]:
        from .router import check_shards, gather_facts

        facts = await gather_facts(self._call, len(self.names))
        check_shards(facts)
        self.checked = True
        return facts

    async def check(self) -> list[dict]:
        """The shards' facts, checked to share one encoder (``ravl shards`` calls this once deployed)."""
        return await self._facts()

    async def __call__(self, http_request):
        from starlette.responses import JSONResponse

        try:
            path = http_request.url.path.rstrip("/") or "/"
            if path == "/health":
                return JSONResponse({"status": "ok", "shards": self.names})
            if path == "/info":
                return JSONResponse({"shards": await self._facts()})
            if path != "/search" or http_request.method != "GET":
                from ..server.errors import NotFoundError

                raise NotFoundError(f"no route {http_request.method} {path}; this router answers GET /search, "
                                    "/health and /info")
            if not self.checked:
                await self._facts()
            params = dict(http_request.query_params)
            request = request_of(params)
            body = await self.searcher.search(request)
            return JSONResponse({**body, "mode": params.get("mode", "auto")})
        except RavlError as e:
            from ..server.errors import error_body, status_for

            status = 503 if isinstance(e, ShardUnavailableError) else status_for(e)
            return JSONResponse(error_body(e), status_code=status)
        except Exception as e:  # a bug, not the user's doing: still JSON, with the type to report
            return JSONResponse({"type": "InternalError", "message": f"{type(e).__name__}: {e}"}, status_code=500)


def request_of(params: dict[str, str]):
    """A :class:`~ravl.request.SearchRequest` from ``GET /search``'s parameters (an ``item`` is a
    namespaced id, carried as an image term the router resolves)."""
    from ..filters import Filters
    from ..hybrid import Fusion
    from ..request import SearchRequest, Term, parse_query

    unknown = sorted(set(params) - {*_INT, *_FLOAT, *_TEXT})
    if unknown:
        raise InputError(f"unknown parameter(s) {', '.join(unknown)}; /search takes {', '.join((*_TEXT, *_INT, *_FLOAT))}")
    q, item = params.get("q"), params.get("item")
    if not q and not item:
        raise InputError("give q (text), item (a namespaced item id such as shard0:12) or both, e.g. /search?q=a+red+car")
    nums: dict[str, Any] = {}
    for key, kind in [*((k, int) for k in _INT), *((k, float) for k in _FLOAT)]:
        if key in params:
            try:
                nums[key] = kind(params[key])
            except ValueError:
                raise InputError(f"{key} must be a number, got {params[key]!r}") from None
    terms = (parse_query(q) if q else ()) + ((Term("image", item),) if item else ())
    f = Filters.parse(after=params.get("after"), before=params.get("before"), folder=params.get("folder"),
                      near=params.get("near"), camera=params.get("camera"))
    return SearchRequest(terms, target=params.get("target", "images"), k=nums.get("k", 10),
                         mode=params.get("mode", "auto"), fusion=Fusion(nums.get("keyword_weight")),
                         min_score=nums.get("min_score", 0.0), ef_search=nums.get("ef_search"),
                         nprobe=nums.get("nprobe"), rerank=nums.get("rerank"), filters=None if f.empty else f,
                         sort=params.get("sort", "relevance"))


async def call_with_retry(handle, name: str, method: str, *args, deadline_s: float = RETRY_S):
    """``handle.method.remote(*args)``, retried while the shard's replicas are being replaced; the
    cause of a RavlError raised in the shard is re-raised as is."""
    from ray import exceptions as rx
    from ray.serve import exceptions as sx

    retry = (rx.RayActorError, rx.WorkerCrashedError, rx.NodeDiedError, rx.RaySystemError,
             sx.ReplicaUnavailableError, sx.DeploymentUnavailableError, sx.BackPressureError)
    start_t = time.monotonic()
    wait = 0.2
    while True:
        left = max(1.0, deadline_s - (time.monotonic() - start_t))
        try:  # a hung replica is given the time left, then the call goes elsewhere
            return await asyncio.wait_for(_result(getattr(handle, method).remote(*args)), left)
        except TimeoutError as e:
            last: BaseException = e
        except RavlError:
            raise
        except rx.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, RavlError):
                raise cause from None
            if not isinstance(cause, retry):
                raise
            last = e
        except retry as e:
            last = e
        if time.monotonic() - start_t >= deadline_s:
            raise ShardUnavailableError(f"shard {name} did not answer for {deadline_s:.0f} s ({type(last).__name__}); "
                                        "Ray Serve is replacing its replica: retry shortly, or check 'serve status'")
        await asyncio.sleep(wait)
        wait = min(2.0, wait * 2)


async def _result(response):
    return await response
