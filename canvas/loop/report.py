"""`OUTPUT/report.html` of the demo: what each stage did, with plots and images, from its own outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from canvas.core.html_report import HtmlReport, table_html


def write_demo_report(out: Path, record: dict[str, Any]) -> Path:
    from canvas.loop import report_sections as sections

    report = HtmlReport(
        "canvas-rlhf demo: the loop on the tiny presets",
        f"total {record['total_seconds']:.0f} s; every number below comes from this run's outputs in {out}",
    )
    report.add(
        "Stages",
        table_html([{"stage": s["name"], "seconds": s["seconds"]} for s in record["stages"]])
        + "<p class='note'>The tiny models have random weights: images are abstract, CLIP scores mean nothing. "
        "The loop, its bookkeeping and the learning signals are real.</p>",
    )
    for build in sections.ALL:
        section = build(out)
        if section is not None:
            report.add(*section)
    return report.write(out / "report.html")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None
