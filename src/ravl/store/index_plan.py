"""Which vector index a collection gets: a pure function of (vector count, dimension, requested kind,
memory budget). No FAISS import here, so the choice is cheap to test and to explain.

Kinds (all inner product on unit vectors, built with FAISS's ``index_factory``):

* ``flat``  — exact search; 4·d bytes per vector. Right while it fits and a query stays fast.
* ``hnsw``  — ``HNSW{M},Flat``: graph search over full vectors, exact scores; ~4·d + 8·M bytes per
  vector, sub-millisecond queries at 1M vectors.
* ``ivfpq`` — ``IVF{nlist},PQ{m}x{nbits}``: ``m`` bytes per vector; the top candidates are re-ranked
  exactly with vectors read back from the database, so scores are exact and recall recovers. Its
  inverted lists (codes + ids) are held in RAM, or in a memory-mapped file (``params['lists'] ==
  'disk'``, :mod:`.ondisk`) when the budget could hold them in RAM only with a code shorter than
  :data:`MIN_RAM_CODE` bytes: then the largest code is kept on disk and RAM holds only the
  centroids, the PQ codebooks and 16 bytes per vector (our id and tombstone flag).

``auto`` follows autofaiss's reasoning (without depending on it): exact search while the collection
is small enough for flat search to be fast and it fits comfortably in the budget; then HNSW when its
full vectors fit the budget; then IVF-PQ with the largest code that fits. Estimates are those of
FAISS's data structures (measured figures are in docs/scale.md).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import ConfigError

KINDS = ("auto", "flat", "hnsw", "ivfpq")
#: ``auto`` keeps exact search up to this many multiply-adds per query (n·d): ~130k vectors at d=384,
#: about 25 ms of one core per query here (benchmarks/scale.py: 20 ms at 100k x 384)
FLAT_MAX_WORK = 50_000_000
#: ``auto`` keeps exact search only while it uses at most this share of the budget ("comfortably")
FLAT_BUDGET_SHARE = 0.5
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
#: bytes per vector besides the vectors/codes: our id array (8) + tombstone bitmap + allocator slack
_PER_VECTOR_OVERHEAD = 16
#: IVF-PQ keeps its lists in RAM only with a code of at least this many bytes (or the largest code
#: there is, when that is shorter); a budget that allows only shorter codes in RAM gets the lists on disk
MIN_RAM_CODE = 8
#: re-rank this many candidates per wanted result (IVF-PQ), until the build tunes it
RERANK_FACTOR = 10
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


@dataclass(frozen=True)
class IndexPlan:
    kind: str
    dim: int
    factory: str  # FAISS index_factory string
    params: dict = field(default_factory=dict)  # build parameters
    search: dict = field(default_factory=dict)  # default search parameters (tuned again at build)
    est_bytes: int = 0
    reason: str = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, "factory": self.factory, "params": dict(self.params),
                "search": dict(self.search), "est_bytes": self.est_bytes, "reason": self.reason}


def parse_size(text: str | int | None) -> int | None:
    """'2GB', '512M', '1.5GiB', '1000000' -> bytes (binary units); None stays None."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise ConfigError(f"cannot read memory budget {text!r}; write it like 2GB, 512MB or 1.5GiB")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"memory budget must be positive, got {text!r}")
    return value


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def ivf_nlist(n: int) -> int:
    """Inverted lists: a power of two near 4·sqrt(n) (autofaiss's rule), with >= 39 points per list;
    between about 1M and 67M vectors, no more than max(4096, n / 2048): building (k-means, then every
    vector compared with every centroid) costs n × nlist, and at 10M the rule's 16,384 lists would take
    about an hour per index on two cores, while 4,096 lists of ~2,400 vectors still answer in
    milliseconds (docs/scale.md, the kinds table)."""
    if n < 78:
        return 1
    target = min(4 * math.sqrt(n), max(4096, n / 2048))
    nlist = 2 ** round(math.log2(target))
    return int(max(1, min(nlist, n // 39, 65536)))


def pq_nbits(n: int) -> int:
    """Bits per PQ sub-code: 8 (256 centroids) once there are enough vectors to train them."""
    return int(max(1, min(8, math.floor(math.log2(max(2, n // 4))))))


def pq_sizes(dim: int) -> list[int]:
    """Sub-quantizer counts ``m`` that divide ``dim`` (FAISS requires it), smallest first."""
    return [m for m in range(1, min(dim, 256) + 1) if dim % m == 0]


def estimate_bytes(kind: str, n: int, dim: int, params: dict | None = None) -> int:
    """Memory of an index of ``kind`` over ``n`` vectors (RAM while loaded, about the same on disk)."""
    params = params or {}
    if kind == "flat":
        return n * (4 * dim + _PER_VECTOR_OVERHEAD)
    if kind == "hnsw":
        m = params.get("M", HNSW_M)
        # level 0 keeps 2M neighbour ids (4 bytes); upper levels add ~1/M of that; one level byte
        links = 4 * 2 * m * (1 + 1 / max(m, 2)) + 1 + 8
        return int(n * (4 * dim + links + _PER_VECTOR_OVERHEAD))
    if kind == "ivfpq":
        m = params.get("m", max(1, dim // 8))
        nbits = params.get("nbits", 8)
        nlist = params.get("nlist", ivf_nlist(n))
        if params.get("lists") == "disk":  # RAM: our id per vector, the centroids and the codebooks
            return int(n * _PER_VECTOR_OVERHEAD + nlist * dim * 4 + (2 ** nbits) * dim * 4)
        codes = n * (math.ceil(m * nbits / 8) + 8 + _PER_VECTOR_OVERHEAD)  # code + list id + ours
        return int(codes + nlist * dim * 4 + (2 ** nbits) * dim * 4)
    raise ConfigError(f"unknown index type {kind!r}; choose one of {', '.join(KINDS)}")


def _flat(n: int, dim: int, reason: str) -> IndexPlan:
    return IndexPlan("flat", dim, "Flat", {}, {}, estimate_bytes("flat", n, dim), reason)


def _hnsw(n: int, dim: int, reason: str) -> IndexPlan:
    params = {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
    return IndexPlan("hnsw", dim, f"HNSW{HNSW_M},Flat", params, {"ef_search": 64},
                     estimate_bytes("hnsw", n, dim, params), reason)


def lists_bytes(n: int, m: int, nbits: int) -> int:
    """Size of IVF-PQ inverted lists over ``n`` vectors (codes + 8-byte ids): the lists file."""
    return int(n * (math.ceil(m * nbits / 8) + 8))


def _ivfpq(n: int, dim: int, m: int, reason: str, lists: str = "ram") -> IndexPlan:
    nlist, nbits = ivf_nlist(n), pq_nbits(n)
    params: dict = {"nlist": nlist, "m": m, "nbits": nbits, "trained_on": n}
    if lists == "disk":
        params["lists"] = "disk"
    search = {"nprobe": min(nlist, 32), "rerank": RERANK_FACTOR}
    return IndexPlan("ivfpq", dim, f"IVF{nlist},PQ{m}x{nbits}", params, search,
                     estimate_bytes("ivfpq", n, dim, params), reason)


def _codes(dim: int) -> list[int]:
    """IVF-PQ code sizes considered: up to d/4 bytes, at most 64, smallest first."""
    return [m for m in pq_sizes(dim) if m <= max(1, min(64, dim // 4))]


def _ivfpq_within(n: int, dim: int, budget: int | None, reason: str) -> IndexPlan | None:
    """IVF-PQ with the largest code (up to d/4 bytes, at most 64) that fits ``budget`` in RAM, when
    that code is at least :data:`MIN_RAM_CODE` bytes; else the largest code with its lists on disk,
    when the rest fits."""
    sizes = _codes(dim)
    for m in reversed(sizes):
        plan = _ivfpq(n, dim, m, reason)
        if budget is None or plan.est_bytes <= budget:
            if m >= min(MIN_RAM_CODE, sizes[-1]):
                return plan
            break
    disk = _ivfpq(n, dim, sizes[-1], f"{reason}; inverted lists on disk, memory-mapped (in RAM only a code "
                  f"under {MIN_RAM_CODE} bytes would fit)", "disk")
    return disk if budget is not None and disk.est_bytes <= budget else None


def choose_index(n: int, dim: int, kind: str = "auto", memory_budget: int | str | None = None) -> IndexPlan:
    """The index for ``n`` vectors of dimension ``dim``: ``kind`` when it fits ``memory_budget``
    (bytes or '2GB'), else a :class:`ConfigError` saying what would fit. ``auto`` picks one."""
    if kind not in KINDS:
        raise ConfigError(f"unknown index type {kind!r}; choose one of {', '.join(KINDS)}")
    budget = parse_size(memory_budget)
    n = max(0, int(n))
    if kind == "flat":
        plan = _flat(n, dim, "requested")
    elif kind == "hnsw":
        plan = _hnsw(n, dim, "requested")
    elif kind == "ivfpq":
        plan = _ivfpq_within(n, dim, budget, "requested") or smallest_plan(n, dim, "requested")
    else:
        flat_bytes = estimate_bytes("flat", n, dim)
        if n * dim <= FLAT_MAX_WORK and (budget is None or flat_bytes <= FLAT_BUDGET_SHARE * budget):
            return _flat(n, dim, f"exact search is fast at {n} vectors and fits")
        hnsw = _hnsw(n, dim, "HNSW fits the budget" if budget else "HNSW: fast, exact scores, no budget given")
        if budget is None or hnsw.est_bytes <= budget:
            return hnsw
        plan = (_ivfpq_within(n, dim, budget, "only compressed codes fit the budget")
                or smallest_plan(n, dim, ""))
    if budget is not None and plan.est_bytes > budget:
        raise ConfigError(_too_small(n, dim, budget, plan))
    return plan


def _too_small(n: int, dim: int, budget: int, plan: IndexPlan) -> str:
    smallest = smallest_plan(n, dim, "")
    fits = [name for name, b in (("flat", estimate_bytes("flat", n, dim)),
                                 ("hnsw", _hnsw(n, dim, "").est_bytes)) if b <= budget]
    fits += ["ivfpq"] if smallest.est_bytes <= budget else []
    hint = (f"'--index {fits[0]}' or '--index auto' fit" if fits else
            f"the smallest index (IVF-PQ, lists on disk) needs {format_size(smallest.est_bytes)} of RAM")
    return (f"--memory-budget {format_size(budget)} is too small for a {plan.kind} index over {n} vectors of "
            f"dimension {dim} (needs about {format_size(plan.est_bytes)}); {hint}")


def split_budget(budget: int | None, sizes: dict[str, int]) -> dict[str, int | None]:
    """Share one collection budget between its indexes in proportion to their flat sizes (n·d)."""
    if budget is None:
        return {name: None for name in sizes}
    total = sum(sizes.values()) or 1
    return {name: max(1, int(budget * s / total)) for name, s in sizes.items()}


def smallest_plan(n: int, dim: int, reason: str) -> IndexPlan:
    """The index that takes least RAM (IVF-PQ with the shortest code and its lists on disk): what a
    collection that grew past its budget is built as, with ``reason`` saying so."""
    return _ivfpq(n, dim, pq_sizes(dim)[0], reason, "disk")
