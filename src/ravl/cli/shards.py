"""ravl shards DIR [DIR ...] [--address ADDR] [--host H] [--port P] [--replicas N] [--replica-cpus C] [--retry-s S] [--pin]"""
from __future__ import annotations

from .common import log


def add_parser(sub) -> None:
    p = sub.add_parser("shards", help="search several collections (shards) as one, on Ray Serve",
                       description="Deploy one Ray Serve deployment per shard (an ordinary collection, e.g. one per "
                                   "host) and a router that fans each query out and fuses the answers: GET /search "
                                   "takes the parameters of 'ravl serve' and returns its JSON, with item ids named "
                                   "SHARD:ID (shard0:12). Shards must share the encoder. Needs pip install "
                                   "'ravl[ray]'; runs until interrupted.")
    p.add_argument("paths", nargs="+", metavar="DIR", help="shard collection folders (shard0, shard1, ... in this order)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join, e.g. ray://head:10001 or auto (default: start Ray on this machine)")
    p.add_argument("--host", default="127.0.0.1", help="interface Serve's HTTP proxy listens on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="Serve's HTTP port (default 8000)")
    p.add_argument("--replicas", type=int, default=1, help="replicas per shard, each loading the encoder (default 1)")
    p.add_argument("--replica-cpus", type=float, default=0.5,
                   help="logical CPUs Ray reserves per shard replica (default 0.5)")
    p.add_argument("--retry-s", type=float, default=30.0, metavar="S",
                   help="how long the router retries a shard whose replica died before answering 503 (default 30)")
    p.add_argument("--pin", action="store_true",
                   help="run shard N's replicas only on Ray nodes offering the resource ravl_shardN (the hosts "
                        "holding its files: ray start --resources '{\"ravl_shard0\": 1}')")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..shards.deploy import ShardsOptions, run_forever

    options = ShardsOptions(tuple(args.paths), address=args.address, host=args.host, port=args.port,
                            replicas=args.replicas, replica_cpus=args.replica_cpus, retry_s=args.retry_s, pin=args.pin)
    try:
        run_forever(options, on_ready=lambda url: log(f"searching {len(args.paths)} shards at {url} (Ctrl-C stops)"))
    except KeyboardInterrupt:
        pass
    return 0
