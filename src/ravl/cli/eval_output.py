"""Writing an evaluation report: files under --out, JSON or Markdown on stdout (shared by the eval commands)."""
from __future__ import annotations

from .common import emit_json, log


def finish_report(args, report: dict, extra_markdown: str = "") -> int:
    """Write the report files when --out is given; print JSON or Markdown to stdout."""
    import copy

    from ..eval.report import render_markdown, write_report
    from ..extras import install_hint, missing_modules

    if args.out:
        plots = not missing_modules(("matplotlib",))  # the plots are the eval extra's; the report is not
        paths = write_report(args.out, report, plots=plots)
        if not plots:
            log(f"PNG plots skipped: matplotlib is not installed ({install_hint('eval')})")
        if extra_markdown:
            with open(paths["markdown"], "a", encoding="utf-8") as fh:
                fh.write("\n" + extra_markdown)
        log("report: " + ", ".join(str(p) for p in paths.values()))
    if args.json:
        brief = copy.deepcopy(report)
        (brief.get("captioning") or {}).pop("per_image", None)
        ((brief.get("extra") or {}).get("zeroshot") or {}).pop("predictions", None)
        ((brief.get("extra") or {}).get("imagine") or {}).pop("rows", None)
        emit_json(brief)
    else:
        print(render_markdown(report) + ("\n" + extra_markdown if extra_markdown else ""))
    return 0
