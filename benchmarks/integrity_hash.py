"""What verifying an index cache costs: whole-file hashing versus loading the file at all.

Builds a flat FAISS index of N random unit vectors (default 1,000,000 x 384, about 1.5 GB), writes
it through the same sealed-file path the collection uses, then times, in one run:
  read     reading the file into memory (what any load does anyway)
  hashes   SHA-256 / BLAKE2b / CRC32 over the bytes already in memory
  verified ravl.store.integrity.read_sealed: one streaming pass that reads and hashes together
  parse    faiss.deserialize_index on the bytes, and faiss.read_index on the file
  rebuild  what a failed check costs: building the same index from the vectors (no SQLite read)
and prints each with its ratio to a plain read. Usage:
    python benchmarks/integrity_hash.py [N] [DIM]
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    import faiss

    from ravl.store.integrity import read_sealed, write_sealed

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    dim = int(sys.argv[2]) if len(sys.argv) > 2 else 384
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(1, n + 1, dtype=np.int64)

    def build():
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        index.add_with_ids(vecs, ids)
        return index

    index = build()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        path = Path(tmp) / "images.faiss"
        binding = {"collection_id": "bench", "generation": 1, "count": n, "dim": dim}
        data = faiss.serialize_index(index)
        t = time.perf_counter()
        write_sealed(path, data, binding)
        write_s = time.perf_counter() - t
        size = path.stat().st_size
        raw = path.read_bytes()
        read_s = best_of(lambda: np.fromfile(path, dtype=np.uint8))
        rows = [("write (serialize+fsync+seal)", write_s), ("read", read_s),
                ("sha256 in memory", best_of(lambda: hashlib.sha256(raw).digest())),
                ("blake2b in memory", best_of(lambda: hashlib.blake2b(raw).digest())),
                ("crc32 in memory", best_of(lambda: zlib.crc32(raw))),
                ("read_sealed (read+blake2b, streaming)", best_of(lambda: read_sealed(path, binding))),
                ("deserialize (bytes in memory)", best_of(lambda: faiss.deserialize_index(np.frombuffer(raw, np.uint8)), 1)),
                ("faiss.read_index (file)", best_of(lambda: faiss.read_index(str(path)), 1)),
                ("rebuild from vectors", best_of(build, 1))]
        assert read_sealed(path, binding) is not None
    print(f"{n:,} vectors x {dim} dims, file {size / 2**20:,.0f} MiB")
    for name, secs in rows:
        print(f"  {name:40s} {secs:7.3f} s  {size / secs / 2**30:6.2f} GiB/s  x{secs / read_s:5.2f} of read")


if __name__ == "__main__":
    main()
