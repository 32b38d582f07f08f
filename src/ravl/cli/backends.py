"""ravl backends [--json]"""
from __future__ import annotations

from .common import emit_json


def add_parser(sub) -> None:
    p = sub.add_parser("backends", help="list encoder and generator backends, their spec options and whether "
                                        "they can run here",
                       description="Every backend family (ravl's own and installed plugins, found through the "
                                   "ravl.encoders / ravl.generators entry points) with its declared spec options "
                                   "(?key=value) and whether its libraries are installed here.")
    p.add_argument("--json", action="store_true", help="one JSON object per backend, one per line")
    p.set_defaults(run=run)


def _option_line(option: dict) -> str:
    kind = "|".join(option["choices"]) if option["choices"] else option["type"]
    value = option["default"]
    value = int(value) if isinstance(value, bool) else value
    default = "" if value is None else f", default {value}"
    runtime = "" if option["fingerprint"] else " [runtime only]"
    return f"    ?{option['name']}=<{kind}>{default}{runtime}: {option['help']}"


def run(args) -> int:
    from .. import registry

    rows = [row for kind in registry.KINDS for row in registry.describe(kind)]
    if args.json:
        for row in rows:
            emit_json(row)
        return 0
    for row in rows:
        state = "usable" if row["usable"] else f"not usable here: {row['why_not']}"
        origin = "" if row["origin"] == "ravl" else f" (from {row['origin']})"
        detail = f" ({row['detail']})" if row.get("detail") else ""
        print(f"{row['kind']} {row['family']}{origin}: {row['summary']}{detail} [{state}]")
        for option in row["options"]:
            print(_option_line(option))
    return 0
