"""Ray Serve does the cluster work: one deployment per shard (``num_replicas`` replicas, each a
:class:`~ravl.shards.worker.ShardWorker`), and a router deployment as the HTTP ingress behind
Serve's proxy, answering ``GET /search`` (same parameters and JSON as ``ravl serve``; item ids
``shard0:123``), ``GET /health`` and ``GET /info``. Placement, health checks and restarts are Ray
Serve's; the router retries a call that hit a dying replica and otherwise answers 503 with a
one-line error."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError, MissingExtraError, RavlError
from .replica import RETRY_S

APP = "ravl-shards"


@dataclass(frozen=True)
class ShardsOptions:
    """``ravl shards``: the shard folders, where Ray runs, Serve's HTTP port, replicas per shard;
    ``pin``: shard N's replicas run only on nodes offering the custom resource ``ravl_shardN`` (the
    hosts holding its files: ``ray start --resources '{"ravl_shard0": 1}'``)."""
    paths: tuple[str, ...]
    address: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    replica_cpus: float = 0.5
    retry_s: float = RETRY_S
    pin: bool = False

    def __post_init__(self):
        from ..errors import ConfigError

        if len(self.paths) < 1:
            raise ConfigError("give the shard collections, e.g. ravl shards /data/a /data/b")
        if not isinstance(self.replicas, int) or not 1 <= self.replicas <= 64:
            raise ConfigError(f"--replicas must be between 1 and 64, got {self.replicas!r}")
        if not 0 <= self.replica_cpus <= 64:
            raise ConfigError(f"--replica-cpus must be between 0 and 64, got {self.replica_cpus!r}")
        if not 0 < self.retry_s <= 3600:
            raise ConfigError(f"--retry-s must be between 0 and 3600 seconds, got {self.retry_s!r}")


def shard_names(n: int) -> list[str]:
    return [f"shard{i}" for i in range(n)]


def pin_resource(name: str) -> str:
    return f"ravl_{name}"


def local_facts(paths: Sequence[str]) -> list[dict]:
    """Each shard's facts read here (no model load), checked to share one encoder before Serve starts."""
    from .router import check_shards
    from .worker import ShardWorker

    facts = []
    for name, path in zip(shard_names(len(paths)), paths):
        w = ShardWorker(path, name)
        try:
            facts.append(w.facts())
        finally:
            w.close()
    check_shards(facts)
    return facts


def _serve():
    try:
        from ray import serve
    except ImportError as e:
        raise MissingExtraError(f"search across shards needs Ray Serve ({e}); pip install 'ravl[ray]'") from None
    return serve


def build_app(options: ShardsOptions):
    """The Serve application: shard deployments bound into the router (nothing starts yet)."""
    serve = _serve()
    from .replica import Router, Shard  # Ray workers import them by this module path

    def opts(name: str) -> dict:
        pin = {"resources": {pin_resource(name): 0.01}} if options.pin else {}
        return {"num_cpus": options.replica_cpus, **pin}

    shards = [serve.deployment(Shard, name=name, num_replicas=options.replicas, ray_actor_options=opts(name),
                               health_check_period_s=2, health_check_timeout_s=30).bind(str(Path(p).resolve()), name)
              for name, p in zip(shard_names(len(options.paths)), options.paths)]
    router = serve.deployment(Router, name="router", num_replicas=1, ray_actor_options={"num_cpus": 0})
    return router.bind(shard_names(len(options.paths)), options.retry_s, *shards)


def start(options: ShardsOptions) -> str:
    """Check the shards, connect to Ray (``address``, else a local Ray), start Serve's HTTP proxy and
    deploy; returns the URL of ``/search``. The deployments keep running in the Ray cluster."""
    serve = _serve()  # a one-line error without Ray Serve
    import ray

    if all(Path(p).is_dir() for p in options.paths):  # else the shards live on other hosts: checked there
        local_facts(options.paths)
    try:
        if not ray.is_initialized():  # a local Ray needs no dashboard; a cluster keeps its own settings
            if options.address:
                ray.init(address=options.address, log_to_driver=False)
            else:
                ray.init(log_to_driver=False, include_dashboard=False)
        check_resources(options, ray.cluster_resources())
        # one HTTP proxy, on the head node: several nodes of one host cannot share the port
        serve.start(proxy_location="HeadOnly", http_options={"host": options.host, "port": options.port})
        router = serve.run(build_app(options), name=APP, route_prefix="/")
        try:  # the shards' encoders, as the replicas see them
            router.check.remote().result(timeout_s=120)
        except Exception as e:
            serve.delete(APP)
            cause = getattr(e, "cause", e)
            if isinstance(cause, RavlError):
                raise cause from None
            raise
    except RavlError:
        raise
    except Exception as e:  # Ray's own failures: unreachable cluster, port taken, replica start failure
        raise EngineError(f"could not start the shards on Ray Serve ({type(e).__name__}: {e}); check --address "
                          f"and that port {options.port} is free") from e
    return f"http://{options.host}:{options.port}/search"


def check_resources(options: ShardsOptions, have: dict) -> None:
    """Refuse a deployment Ray could never place (Serve would wait for it forever)."""
    from ..errors import ShardError

    need = len(options.paths) * options.replicas * options.replica_cpus
    if need > have.get("CPU", 0):
        raise ShardError(f"{len(options.paths)} shards x {options.replicas} replicas x {options.replica_cpus:g} CPU "
                         f"need {need:g} logical CPUs but the Ray cluster has {have.get('CPU', 0):g}; lower --replicas "
                         "or --replica-cpus, or add nodes")
    if options.pin:
        missing = [pin_resource(n) for n in shard_names(len(options.paths)) if have.get(pin_resource(n), 0) <= 0]
        if missing:
            raise ShardError(f"--pin: no Ray node offers {', '.join(missing)}; start each shard's host with "
                             f"ray start --resources '{{\"{missing[0]}\": 1}}' (and the others likewise)")


def stop() -> None:
    """Delete the application (its deployments and replicas)."""
    serve = _serve()
    serve.delete(APP)


def run_forever(options: ShardsOptions, on_ready=None) -> None:
    """:func:`start`, then wait until interrupted; the deployments are deleted on the way out."""
    url = start(options)
    if on_ready is not None:
        on_ready(url)
    try:
        while True:
            time.sleep(3600)
    finally:
        stop()
