"""Search across shards: several ordinary collections (e.g. one per host) searched as one through
Ray Serve, one deployment per shard and a router that fans a query out and fuses the answers
(``ravl shards``). :mod:`.merge` is the router's arithmetic, :mod:`.router` the fan-out,
:mod:`.worker` one shard, :mod:`.replica` and :mod:`.deploy` the Ray Serve side."""
