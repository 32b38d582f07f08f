"""Evaluation reports: one JSON file with every figure and the exact configuration, a Markdown
table, PNG plots (Recall@K curves, per-image CIDEr-D histogram), and side-by-side comparison.

Everything after :func:`build_report` works on the plain report dict, so plots and comparisons
can be redone from a saved JSON file.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError, InputError

SCHEMA = "ravl.eval.report/1"
_DIRECTION_TITLES = {"text_to_image": "text → image", "image_to_text": "image → text"}


def _ravl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ravl")
    except PackageNotFoundError:
        return "unknown"


def _jsonable(value, where: str):
    """A JSON-safe deep copy; NaN/inf become null so the file stays standard JSON."""
    try:
        return _clean(json.loads(json.dumps(value, allow_nan=True, default=_default)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} must be JSON-serialisable (plain str/number/list/dict): {exc}") from exc


def _default(obj):
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def build_report(*, config: Mapping, retrieval=None, captions=None, extra: Mapping | None = None,
                 curve_max_k: int | None = None, per_image: bool = True) -> dict:
    """Gather figures into one report dict.

    ``config`` is recorded as given (encoder/generator specs, k, dataset hash, ...).
    ``retrieval`` is a :class:`~ravl.eval.recall.RetrievalScores` (or its ``to_dict()``),
    ``captions`` a :class:`~ravl.eval.scoring.CaptionScores` (or its ``to_dict()``).
    ``per_image=False`` leaves per-image caption scores out (no CIDEr histogram then).
    """
    report: dict = {"schema": SCHEMA, "ravl_version": _ravl_version(),
                    "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                    "config": _jsonable(dict(config), "config")}
    if retrieval is not None:
        data = retrieval if isinstance(retrieval, Mapping) else retrieval.to_dict(curve_max_k)
        report["retrieval"] = _jsonable(data, "retrieval")
    if captions is not None:
        data = dict(captions if isinstance(captions, Mapping) else captions.to_dict())
        if not per_image:
            data.pop("per_image", None)
        report["captioning"] = _jsonable(data, "captions")
    if extra:
        report["extra"] = _jsonable(dict(extra), "extra")
    return report


def load_report(path) -> dict:
    """Read a report written by :func:`write_report`."""
    path = Path(path)
    from ..inputs import parse_json, read_text

    if not path.exists():
        raise InputError(f"report {path} does not exist; pass the JSON file written by `ravl eval ... --out`")
    where = f"report {path} (not readable JSON; pass a report written by ravl eval)"
    data = parse_json(read_text(path, "report", error=InputError), where, error=InputError)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise InputError(f"{path} is not a ravl evaluation report (schema {SCHEMA!r} expected)")
    return data


# --- Markdown -----------------------------------------------------------------------------------
def _fmt(value, scale: float = 1.0, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return "–"
        return f"{value * scale:.{digits}f}" if isinstance(value, float) or scale != 1.0 else str(value)
    return str(value)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Mapping) -> str:
    """A Markdown summary: configuration, retrieval table, captioning table."""
    lines = ["# ravl evaluation report", "",
             f"ravl {report.get('ravl_version', '?')}, created {report.get('created_utc', '?')}", ""]
    config = report.get("config") or {}
    if config:
        lines += ["## Configuration", "", "| setting | value |", "|---|---|"]
        for key, value in config.items():
            lines.append(f"| {_cell(key)} | {_cell(value if isinstance(value, str) else json.dumps(value))} |")
        lines.append("")
    retrieval = report.get("retrieval")
    if retrieval:
        ks = list(next(iter(retrieval[d]["recall"] for d in _DIRECTION_TITLES if d in retrieval), {}))
        lines += ["## Retrieval (Recall@K, %)", "",
                  "| direction | queries | " + " | ".join(ks) + " | mean rank | median rank |",
                  "|---|---:|" + "---:|" * len(ks) + "---:|---:|"]
        for direction, title in _DIRECTION_TITLES.items():
            d = retrieval.get(direction)
            if d:
                cells = [_fmt(d["recall"].get(k), 100.0) for k in ks]
                lines.append(f"| {title} | {d['n_queries']} | " + " | ".join(cells)
                             + f" | {_fmt(d['mean_rank'])} | {_fmt(d['median_rank'], digits=1)} |")
        lines += ["", f"Ties between equal scores: {retrieval.get('ties', '?')}.", ""]
    captioning = report.get("captioning")
    if captioning:
        corpus = captioning.get("corpus", {})
        lines += ["## Captioning (×100, as papers report)", "",
                  f"{captioning.get('n_images', '?')} images; backend {captioning.get('backend')}, "
                  f"tokenizer {captioning.get('tokenizer')}.", "",
                  "| " + " | ".join(corpus) + " |", "|" + "---:|" * len(corpus),
                  "| " + " | ".join(_fmt(v, 100.0, 1) for v in corpus.values()) + " |", ""]
        for metric, reason in (captioning.get("unavailable") or {}).items():
            lines.append(f"- {metric} unavailable: {_cell(reason)}")
        if captioning.get("unavailable"):
            lines.append("")
    return "\n".join(lines)


# --- plots --------------------------------------------------------------------------------------
def _figure(width: float = 6.0, height: float = 4.0):
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg renders the PNG

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.subplots()


def plot_recall_curves(report: Mapping, path) -> Path:
    """Recall@K against K (1..max) for both directions, one PNG."""
    from matplotlib.ticker import MaxNLocator

    retrieval = report.get("retrieval") or {}
    fig, ax = _figure()
    for direction, title in _DIRECTION_TITLES.items():
        curve = (retrieval.get(direction) or {}).get("recall_curve") or []
        if curve:
            ax.plot(range(1, len(curve) + 1), [100.0 * v for v in curve], marker="o", markersize=3, label=title)
    ax.set_xlabel("K")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("Recall@K (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Retrieval Recall@K")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def plot_cider_histogram(report: Mapping, path, metric: str = "CIDEr-D", bins: int = 30) -> Path:
    """Histogram of per-image scores (CIDEr-D by default), one PNG."""
    per_image = (report.get("captioning") or {}).get("per_image") or {}
    values = [row[metric] for row in per_image.values() if metric in row]
    fig, ax = _figure()
    from matplotlib.ticker import MaxNLocator

    ax.hist(values, bins=bins, color="#4c72b0", edgecolor="white")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if values:
        mean = sum(values) / len(values)
        ax.axvline(mean, color="#c44e52", linestyle="--", label=f"mean {mean:.3f}")
        ax.legend(loc="upper right")
    ax.set_xlabel(f"per-image {metric}")
    ax.set_ylabel("images")
    ax.set_title(f"Per-image {metric} ({len(values)} images)")
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def write_report(out_dir, report: Mapping, *, stem: str = "report", plots: bool = True) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and the PNG plots the data allows; returns their paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md"}
        paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths["markdown"].write_text(render_markdown(report) + "\n", encoding="utf-8")
        if plots and report.get("retrieval"):
            paths["recall_plot"] = plot_recall_curves(report, out / f"{stem}-recall.png")
        if plots and (report.get("captioning") or {}).get("per_image"):
            paths["cider_plot"] = plot_cider_histogram(report, out / f"{stem}-cider.png")
    except OSError as exc:
        raise InputError(f"cannot write the report into {out} ({exc}); choose a writable --out folder") from exc
    return paths


# --- comparison ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ComparisonRow:
    """One figure or setting in two reports; ``delta`` is b - a when both are numbers."""

    name: str
    a: object
    b: object
    delta: float | None
    changed: bool


def _figures(report: Mapping) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in (report.get("config") or {}).items():
        out[f"config.{key}"] = value
    retrieval = report.get("retrieval") or {}
    for direction in _DIRECTION_TITLES:
        d = retrieval.get(direction)
        if d:
            for k, v in d.get("recall", {}).items():
                out[f"{direction}.{k}"] = v
            for field in ("mean_rank", "median_rank", "n_queries"):
                out[f"{direction}.{field}"] = d.get(field)
    captioning = report.get("captioning") or {}
    for metric, value in (captioning.get("corpus") or {}).items():
        out[f"captioning.{metric}"] = value
    if captioning:
        out["captioning.n_images"] = captioning.get("n_images")
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare_reports(a: Mapping, b: Mapping) -> list[ComparisonRow]:
    """Rows for every setting and figure in either report (a's order, then b's extras)."""
    fa, fb = _figures(a), _figures(b)
    rows = []
    for name in list(fa) + [n for n in fb if n not in fa]:
        va, vb = fa.get(name), fb.get(name)
        delta = float(vb) - float(va) if _number(va) and _number(vb) else None  # type: ignore[arg-type]
        rows.append(ComparisonRow(name=name, a=va, b=vb, delta=delta, changed=va != vb))
    return rows


def render_comparison(rows: list[ComparisonRow], *, labels: tuple[str, str] = ("A", "B"),
                      only_changed: bool = False) -> str:
    """Plain-text side-by-side table; recall and caption figures are shown ×100."""
    def scale(name: str) -> float:
        return 100.0 if name.startswith("captioning.") or ".R@" in name else 1.0

    def show(name: str, v) -> str:
        if v is None:
            return "–"
        if _number(v) and not name.endswith(("n_queries", "n_images")):
            return _fmt(float(v), scale(name))
        return v if isinstance(v, str) else json.dumps(v)

    table = [("figure", labels[0], labels[1], "Δ (B−A)")]
    for r in rows:
        if only_changed and not r.changed:
            continue
        delta = f"{r.delta * scale(r.name):+.2f}" if r.delta is not None and r.changed else ""
        table.append((r.name, show(r.name, r.a), show(r.name, r.b), delta))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    out = []
    for i, row in enumerate(table):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
