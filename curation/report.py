"""report.json and report.html of a curation run, built from its output tables (no engine needed).

The HTML is one self-contained file: matplotlib plots and thumbnails are embedded as base64 images.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from curation.records import STAGES

MAX_GROUPS = 8
MAX_REMOVED_PER_GROUP = 4


def summarize(
    curated: pa.Table, rejected: pa.Table, input_count: int, thresholds: dict[str, Any]
) -> dict[str, Any]:
    """Counts per stage, remaining after each stage, cluster sizes, the effective CLIP threshold."""
    stages = Counter(rejected.column("stage").to_pylist())
    remaining, left = {}, input_count
    for name in STAGES:
        left -= stages.get(name, 0)
        remaining[name] = left
    clusters = Counter(
        [c for c in curated.column("cluster_id").to_pylist() if c is not None]
        + [c for c in rejected.column("cluster_id").to_pylist() if c is not None]
    )
    return {
        "input_count": input_count,
        "kept_count": curated.num_rows,
        "rejected_count": rejected.num_rows,
        "rejected_by_stage": {name: stages.get(name, 0) for name in STAGES},
        "remaining_after_stage": remaining,
        "invariant_holds": input_count == curated.num_rows + rejected.num_rows,
        "clusters": {
            "count": len(clusters),
            "largest": max(clusters.values(), default=0),
            "sizes": sorted(clusters.values(), reverse=True),
        },
        "thresholds": thresholds,
    }


def scored_values(curated: pa.Table, rejected: pa.Table, column: str) -> np.ndarray:
    """Every score the run computed for `column` (kept records and those removed after scoring)."""
    values = curated.column(column).to_pylist() + rejected.column(column).to_pylist()
    return np.array([v for v in values if v is not None], dtype=np.float64)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _histogram(
    values: np.ndarray, threshold: float | None, title: str, xlabel: str, ylabel: str = "records"
) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if values.size == 0:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(values, bins=min(50, max(5, values.size // 2)), color="#4477aa")
    if threshold is not None:
        ax.axvline(threshold, color="#cc3311", linestyle="--", label=f"threshold {threshold:.4g}")
        ax.legend()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return _png(fig)


def _bars(labels: list[str], values: list[int], title: str, xlabel: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(labels, values, color="#228833")
    ax.set(title=title, xlabel=xlabel, ylabel="records")
    ax.tick_params(axis="x", rotation=30)
    return _png(fig)


def _thumb(data: bytes | None, px: int = 96) -> str:
    if not data:
        return "<div class=missing>no image</div>"
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        img.thumbnail((px, px))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)
        data = buf.getvalue()
    except Exception:  # noqa: BLE001 - a report never fails on one picture
        return "<div class=missing>unreadable</div>"
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}">'


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def duplicate_groups(curated: pa.Table, rejected: pa.Table) -> list[dict[str, Any]]:
    """Up to MAX_GROUPS duplicate groups (kept key -> removed rows), the largest first, then by key."""
    groups: dict[str, list[dict]] = {}
    for row in rejected.select(["key", "stage", "duplicate_of", "score", "thumbnail"]).to_pylist():
        if row["duplicate_of"]:
            groups.setdefault(row["duplicate_of"], []).append(row)
    kept_keys = set(curated.column("key").to_pylist())
    chosen = sorted((k for k in groups if k in kept_keys), key=lambda k: (-len(groups[k]), k))[:MAX_GROUPS]
    if not chosen:
        return []
    images = dict(
        zip(
            curated.column("key").to_pylist(),
            curated.column("image").to_pylist()
            if "image" in curated.column_names
            else [None] * curated.num_rows,
            strict=True,
        )
    )
    return [
        {"kept": k, "kept_image": images.get(k), "removed": groups[k][:MAX_REMOVED_PER_GROUP]} for k in chosen
    ]


def render_html(report: dict[str, Any], curated: pa.Table, rejected: pa.Table) -> str:
    th = report["thresholds"]
    plots = [
        _bars(
            list(report["rejected_by_stage"]),
            list(report["rejected_by_stage"].values()),
            "Rejected per stage",
            "stage",
        ),
        _histogram(
            scored_values(curated, rejected, "clip_score"),
            th["clip_score"].get("effective_threshold"),
            f"CLIP score ({report['clip_model']})"
            + (" - filter off" if th["clip_score"]["mode"] == "off" else ""),
            "cosine(image, caption)",
        ),
        _histogram(
            scored_values(curated, rejected, "nsfw_score"),
            th["nsfw"].get("threshold"),
            "NSFW score (Open-NSFW)",
            "P(NSFW)",
        ),
        _histogram(
            np.array(report["clusters"]["sizes"], dtype=np.float64),
            None,
            "SemDeDup cluster sizes (before dedup)",
            "records in cluster",
            ylabel="clusters",
        ),
    ]
    esc = html.escape
    parts = [
        "<!doctype html><meta charset=utf-8><title>canvas curate report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}td,th{padding:2px 8px;text-align:left}"
        ".group{display:flex;gap:8px;align-items:flex-start;margin:8px 0}.group figure{margin:0;font-size:11px}"
        ".kept img{outline:3px solid #228833}.removed img{outline:3px solid #cc3311}.missing{width:96px}</style>",
        "<h1>Curation report</h1>",
        f"<p>{report['input_count']} records in, <b>{report['kept_count']} kept</b>, {report['rejected_count']} "
        f"rejected (in = kept + rejected: {report['invariant_holds']}). Model {esc(report['clip_model'])} / "
        f"{esc(str(report['clip_pretrained']))}, runner {esc(report['runner'])}.</p>",
        "<h2>Per stage</h2><table><tr><th>stage</th><th>rejected</th><th>remaining</th></tr>",
    ]
    for name, n in report["rejected_by_stage"].items():
        parts.append(f"<tr><td>{name}</td><td>{n}</td><td>{report['remaining_after_stage'][name]}</td></tr>")
    parts.append("</table><h2>Why thresholds are what they are</h2><ul>")
    parts += [f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in report["notes"].items()]
    parts.append("</ul><h2>Plots</h2>")
    parts += [f'<img src="data:image/png;base64,{p}">' for p in plots if p]
    parts.append("<h2>Duplicate groups (kept in green, removed in red)</h2>")
    for group in duplicate_groups(curated, rejected):
        parts.append(
            "<div class=group><figure class=kept>"
            + _thumb(group["kept_image"])
            + f"<figcaption>kept {esc(group['kept'])}</figcaption></figure>"
        )
        for row in group["removed"]:
            parts.append(
                "<figure class=removed>"
                + _thumb(row["thumbnail"])
                + f"<figcaption>{esc(row['key'])}<br>{row['stage']} {_fmt(row['score'])}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("<h2>Rejections (first 200)</h2><table><tr><th>key</th><th>stage</th><th>reason</th></tr>")
    for row in rejected.select(["key", "stage", "reason"]).to_pylist()[:200]:
        parts.append(
            f"<tr><td>{esc(row['key'])}</td><td>{row['stage']}</td><td>{esc(row['reason'])}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)
