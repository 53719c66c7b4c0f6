"""report.json and report.html of a curation run, built from its summary statistics (no engine needed).

The statistics (`canvas.pipelines.curate_report.ReportStats`: counts, score histograms, cluster sizes, a few
duplicate groups) are computed inside the pipeline, so nothing here grows with the data set. The HTML
is one self-contained file: matplotlib plots and thumbnails are embedded as base64 images.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from canvas.core.html_report import figure_data_uri, thumbnail_data_uri
from canvas.curation.records import STAGES

MAX_GROUPS = 8
MAX_REMOVED_PER_GROUP = 4
FIRST_REJECTIONS = 200  # rows of the report's rejection table (the smallest keys)
PLOT_BINS = 50


def summarize(stats: dict[str, Any], input_count: int, thresholds: dict[str, Any]) -> dict[str, Any]:
    """Counts per stage, remaining after each stage, cluster sizes; `stats` from `ReportStats`."""
    stages = stats["rejected_by_stage"]
    rejected = sum(stages.values())
    remaining, left = {}, input_count
    for name in STAGES:
        left -= stages.get(name, 0)
        remaining[name] = left
    sizes = stats["cluster_sizes"]
    return {
        "input_count": input_count,
        "kept_count": stats["kept_count"],
        "rejected_count": rejected,
        "rejected_by_stage": {name: stages.get(name, 0) for name in STAGES},
        "remaining_after_stage": remaining,
        "invariant_holds": input_count == stats["kept_count"] + rejected,
        "clusters": {"count": len(sizes), "largest": max(sizes, default=0), "sizes": sizes},
        "thresholds": thresholds,
    }


def regroup(histogram: dict[str, Any], bars: int = PLOT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(edges, counts) for a plot: the fine bins between the smallest and largest score, merged into at
    most `bars` bars (fewer for few scores, as `numpy.histogram`'s rule of thumb would)."""
    counts = np.asarray(histogram["counts"], dtype=np.int64)
    if not histogram["count"]:
        return np.zeros(1), np.zeros(0, dtype=np.int64)
    width = (histogram["high"] - histogram["low"]) / counts.size
    first = int(np.flatnonzero(counts)[0])
    last = int(np.flatnonzero(counts)[-1]) + 1
    bars = max(1, min(bars, max(5, histogram["count"] // 2), last - first))
    step = -(-(last - first) // bars)  # ceil: fine bins per bar
    used = counts[first:last]
    used = np.pad(used, (0, step * bars - used.size))
    merged = used.reshape(bars, step).sum(axis=1)
    edges = histogram["low"] + width * (first + step * np.arange(bars + 1))
    return edges, merged


def _histogram(
    edges: np.ndarray, counts: np.ndarray, threshold: float | None, title: str, xlabel: str, ylabel: str
) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if counts.sum() == 0:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.stairs(counts, edges, fill=True, color="#4477aa")
    if threshold is not None:
        ax.axvline(threshold, color="#cc3311", linestyle="--", label=f"threshold {threshold:.4g}")
        ax.legend()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return figure_data_uri(fig)


def _bars(labels: list[str], values: list[int], title: str, xlabel: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(labels, values, color="#228833")
    ax.set(title=title, xlabel=xlabel, ylabel="records")
    ax.tick_params(axis="x", rotation=30)
    return figure_data_uri(fig)


def _thumb(data: bytes | None, px: int = 96) -> str:
    if not data:
        return "<div class=missing>no image</div>"
    try:
        return f'<img src="{thumbnail_data_uri(data, px, fmt="JPEG")}">'
    except Exception:  # noqa: BLE001 - a report never fails on one picture
        return "<div class=missing>unreadable</div>"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def render_html(report: dict[str, Any], stats: dict[str, Any]) -> str:
    """The HTML report from report.json's content and the run's `ReportStats`."""
    th = report["thresholds"]
    sizes = np.asarray(report["clusters"]["sizes"], dtype=np.float64)
    size_counts, size_edges = np.histogram(sizes, bins=min(PLOT_BINS, max(5, sizes.size // 2)))
    plots = [
        _bars(
            list(report["rejected_by_stage"]),
            list(report["rejected_by_stage"].values()),
            "Rejected per stage",
            "stage",
        ),
        _histogram(
            *regroup(stats["histograms"]["clip_score"]),
            th["clip_score"].get("effective_threshold"),
            f"CLIP score ({report['clip_model']})"
            + (" - filter off" if th["clip_score"]["mode"] == "off" else ""),
            "cosine(image, caption)",
            "records",
        ),
        _histogram(
            *regroup(stats["histograms"]["nsfw_score"]),
            th["nsfw"].get("threshold"),
            "NSFW score (Open-NSFW)",
            "P(NSFW)",
            "records",
        ),
        _histogram(
            size_edges,
            size_counts,
            None,
            "SemDeDup cluster sizes (before dedup)",
            "records in cluster",
            "clusters",
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
    parts += [f'<img src="{p}">' for p in plots if p]
    parts.append("<h2>Duplicate groups (kept in green, removed in red)</h2>")
    for group in stats["duplicate_groups"]:
        parts.append(
            "<div class=group><figure class=kept>"
            + _thumb(group["kept_image"])
            + f"<figcaption>kept {esc(group['kept'])}</figcaption></figure>"
        )
        for row in group["removed"]:
            parts.append(
                "<figure class=removed>"
                + _thumb(row["thumbnail"])
                + f"<figcaption>{esc(row['key'])}<br>{row['stage']} {_fmt(row['score'])}"
                + (f"<br>kept because: {esc(row['why'])}" if row.get("why") else "")
                + "</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append(
        f"<h2>Rejections (the first {FIRST_REJECTIONS} by key)</h2>"
        "<table><tr><th>key</th><th>stage</th><th>reason</th></tr>"
    )
    for row in stats["first_rejections"]:
        parts.append(
            f"<tr><td>{esc(row['key'])}</td><td>{row['stage']}</td><td>{esc(row['reason'])}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)
