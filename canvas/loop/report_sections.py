"""One function per report section; each returns (heading, html) or None when its stage did not run."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from canvas.core.html_report import figure_data_uri, figure_html, png_data_uri, table_html, thumbnail_data_uri  # noqa: E402


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def curation(out: Path) -> tuple[str, str] | None:
    report = _json(out / "curate" / "report.json")
    if report is None:
        return None
    parts = []
    remaining = report.get("remaining_after_stage", {})
    rows = [
        {"stage": stage, "rejected": n, "remaining after": remaining.get(stage, "")}
        for stage, n in report.get("rejected_by_stage", {}).items()
    ]
    parts.append(
        f"<p>{report['input_count']} records in, {report['kept_count']} kept, "
        f"{report['input_count'] - report['kept_count']} rejected (every record is in exactly one of the two).</p>"
    )
    parts.append(table_html(rows))
    notes = report.get("notes") or {}
    if notes:
        items = notes.items() if isinstance(notes, dict) else enumerate(notes)
        parts.append(
            "<ul>"
            + "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(n))}</li>" for k, n in items)
            + "</ul>"
        )
    parts.append(
        f"<p class='note'>CLIP model {html.escape(report['clip_model'])} / {html.escape(str(report['clip_pretrained']))}, runner {html.escape(str(report.get('runner')))}.</p>"
    )
    curated = [pq.read_table(f) for f in sorted((out / "curate" / "curated").glob("*.parquet"))]
    if curated:
        clip = [v for t in curated for v in t.column("clip_score").to_pylist()]
        nsfw = [v for t in curated for v in t.column("nsfw_score").to_pylist()]
        clusters = Counter(v for t in curated for v in t.column("cluster_id").to_pylist())
        fig, axes = plt.subplots(1, 3, figsize=(12, 3))
        axes[0].hist(clip, bins=20, color="#4a7")
        axes[0].set_title("CLIP score of kept rows")
        axes[1].hist(nsfw, bins=20, range=(0, 1), color="#a47")
        axes[1].axvline(0.5, color="k", ls="--", label="threshold 0.5")
        axes[1].set_title("NSFW score of kept rows")
        axes[1].legend()
        axes[2].hist(list(clusters.values()), bins=range(1, max(clusters.values()) + 2), color="#47a")
        axes[2].set_title("rows per SemDeDup cluster")
        parts.append(figure_html(figure_data_uri(fig), "curation score distributions", width=900))
    parts.append(_duplicate_groups(out))
    return "Curation", "".join(parts)


def _duplicate_groups(out: Path, limit: int = 6) -> str:
    rejected = [pq.read_table(f) for f in sorted((out / "curate" / "rejected").glob("*.parquet"))]
    sample = out / "sample.parquet"
    if not rejected or not sample.exists():
        return ""
    images: dict[str, bytes] = {}
    for row in pq.read_table(sample, columns=["key", "image"]).to_pylist():
        images.setdefault(row["key"], row["image"])
    html = ["<h3>Sample duplicate groups (kept beside removed)</h3>"]
    shown = 0
    for row in (r for t in rejected for r in t.to_pylist()):
        kept, removed = row.get("duplicate_of"), row["key"]
        # A duplicate *key* is a different image under the same name: not a duplicate group to show.
        if not kept or kept == removed or kept not in images or not images.get(removed) or shown >= limit:
            continue
        html.append(
            "<div>"
            + figure_html(thumbnail_data_uri(images[kept], 140), f"kept: {kept}")
            + figure_html(
                thumbnail_data_uri(images[removed], 140),
                f"removed: {removed} ({row['stage']}: {row['reason']})",
            )
            + "</div>"
        )
        shown += 1
    return "".join(html) if shown else ""


def labeling(out: Path) -> tuple[str, str] | None:
    report = _json(out / "labels" / "annotators.json")
    if report is None:
        return None
    demo = _json(out / "demo.json") or {}
    annotate = next((s["summary"] for s in demo.get("stages", []) if s["name"] == "simulated annotators"), {})
    alpha = report.get("krippendorff_alpha_nominal")
    parts = [
        f"<p>{report['pairs_labeled']} pairs labeled by simulated annotators through the real Label Studio API "
        f"({report['annotations']} annotations = {report['kept']} kept + {report['rejected']} rejected + "
        f"{report['gold_annotations']} gold). Krippendorff's alpha (nominal): "
        f"{'undefined' if alpha is None else f'{alpha:.3f}'}.</p>"
    ]
    if annotate:
        parts.append(
            f"<p>Truth check: {annotate.get('votes_matching_oracle')} of {annotate.get('votes')} votes match the "
            "oracle (annotators have known error rates).</p>"
        )
    annotators = report.get("annotators") or {}
    rows = (
        [{"annotator": k, **v} for k, v in annotators.items()] if isinstance(annotators, dict) else annotators
    )
    parts.append(table_html(rows))
    return "Labeling (Label Studio)", "".join(parts)


def _metrics(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def _curves(records: list[dict], keys: list[str], title: str) -> str:
    keys = [k for k in keys if any(k in r for r in records)]
    if not keys:
        return ""
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 30 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
    return figure_html(figure_data_uri(fig), title, width=min(300 * len(keys), 1000))


def reward_model(out: Path) -> tuple[str, str] | None:
    summary = _json(out / "reward" / "summary.json")
    if summary is None:
        return None
    demo = _json(out / "demo.json") or {}
    stage = next((s["summary"] for s in demo.get("stages", []) if s["name"] == "train reward"), {})
    parts = [
        f"<p>Bradley-Terry head on frozen CLIP features, trained on {summary['train_pairs']} pairs: held-out "
        f"pairwise accuracy <b>{summary['heldout_accuracy']:.3f}</b> on {summary['heldout_pairs']} pairs "
        f"(labels are the annotators' noisy majority), log-loss {summary['heldout_log_loss']:.3f}.</p>"
    ]
    parts.append(_reward_selection(summary))
    if "oracle_agreement_all_pairs" in stage:
        parts.append(
            f"<p>Truth check: the learned reward orders {stage['oracle_agreement_all_pairs']:.1%} of all candidate "
            f"pairs as the hidden oracle ({html.escape(stage['oracle'])}) does.</p>"
        )
    parts.append(
        _curves(
            _metrics(out / "reward"),
            ["loss", "heldout/accuracy", "heldout/log_loss"],
            "reward-model training",
        )
    )
    reliability = out / "reward" / "reliability.png"
    if reliability.exists():
        parts.append(
            figure_html(
                png_data_uri(reliability.read_bytes()),
                "reliability diagram: predicted P(left wins) per bin vs how often left won (pairs per bin)",
                width=420,
            )
        )
    return "Reward model", "".join(parts)


def _reward_selection(summary: dict) -> str:
    """Which epoch's weights were kept (lowest held-out log-loss), against the last, and the calibration."""
    if "selected_epoch" not in summary:  # a run from before model selection
        return ""
    stop = "early stopping ended training" if summary.get("stopped_early") else "training ran"
    text = (
        f"<p>Saved weights: epoch <b>{summary['selected_epoch']}</b>, the lowest held-out log-loss; {stop} at "
        f"epoch {summary['last_epoch']} (held-out accuracy {summary['last_heldout_accuracy']:.3f}, log-loss "
        f"{summary['last_heldout_log_loss']:.3f}).</p>"
    )
    if "heldout_ece" in summary:
        text += (
            f"<p>Calibration on the held-out pairs: Brier score {summary['heldout_brier']:.3f}, expected "
            f"calibration error {summary['heldout_ece']:.3f} ({summary['ece_bins']} bins).</p>"
        )
    return text


def fine_tuning(out: Path) -> tuple[str, str] | None:
    parts = []
    dpo = _metrics(out / "dpo")
    if dpo:
        summary = _json(out / "dpo" / "summary.json") or {}
        parts.append(
            f"<h3>Diffusion-DPO</h3><p>{summary.get('steps', len(dpo))} steps on {summary.get('train_pairs', '?')} pairs "
            f"({summary.get('ties_dropped', 0)} ties dropped); held-out implicit accuracy "
            f"{summary.get('heldout_implicit_acc', float('nan')):.3f}.</p>"
        )
        parts.append(
            _curves(dpo, ["loss", "implicit_acc", "model_diff", "ref_diff"], "Diffusion-DPO training")
        )
    ddpo = _metrics(out / "ddpo")
    if ddpo:
        summary = _json(out / "ddpo" / "summary.json") or {}
        parts.append(
            f"<h3>DDPO</h3><p>{summary.get('epochs', len(ddpo))} epochs against the learned reward model; mean "
            f"reward of the epoch's samples {summary.get('reward_mean_first_epoch', float('nan')):.3f} (first) -> "
            f"{summary.get('reward_mean_last_epoch', float('nan')):.3f} (last).</p>"
        )
        parts.append(_curves(ddpo, ["reward_mean", "loss", "approx_kl", "clipfrac"], "DDPO training"))
    parts.append(_draft(out))
    if not any(parts):
        return None
    return "Fine-tuning", "".join(parts)


def _draft(out: Path) -> str:
    """DRaFT's block: what it cost (seconds, reward queries), what it gained, and the verdict of the eval."""
    records = _metrics(out / "draft")
    summary = _json(out / "draft" / "summary.json")
    if not records or summary is None:
        return ""
    gain = summary.get("eval_gain")
    text = (
        f"<h3>DRaFT-{summary.get('draft_k', 1)}</h3><p>{summary['steps']} optimizer steps backpropagating the "
        f"learned reward model through the last {summary.get('draft_k', 1)} denoising step(s) and the VAE decoder. "
        f"Cost: <b>{summary.get('training_seconds', float('nan')):.1f} s</b> of training, "
        f"<b>{summary.get('reward_queries', 0)}</b> reward queries (images scored with gradients)."
    )
    if gain is not None:
        per_query = gain / summary["reward_queries"] if summary.get("reward_queries") else float("nan")
        text += (
            f" Learned reward of {summary['config']['eval_num_samples']} fresh samples (same noise): base "
            f"{summary['eval_reward_base']:.3f} -> tuned {summary['eval_reward_tuned']:.3f} (gain {gain:+.3f}, "
            f"{per_query:+.2e} per reward query)."
        )
    verdicts = []
    for scorer in ("learned", "oracle"):
        ev = _json(out / "eval" / f"draft-{scorer}" / "summary.json")
        if ev is not None:
            low, high = ev["win_rate_ci95"]
            verdicts.append(
                f"{scorer}: win rate {ev['win_rate']:.2f} (95% CI {low:.2f}-{high:.2f}, {_verdict(low, high)})"
            )
    if verdicts:
        text += " Verdict, tuned vs base: " + "; ".join(verdicts) + "."
    return text + "</p>" + _curves(records, ["reward_mean", "grad_norm"], "DRaFT training")


def _verdict(low: float, high: float) -> str:
    return "tuned better" if low > 0.5 else "tuned worse" if high < 0.5 else "no significant difference"


def evaluation(out: Path) -> tuple[str, str] | None:
    runs = (
        sorted(p for p in (out / "eval").glob("*") if (p / "summary.json").exists())
        if (out / "eval").exists()
        else []
    )
    if not runs:
        return None
    rows, grids = [], []
    for run in runs:
        summary = _json(run / "summary.json")
        low, high = summary["win_rate_ci95"]
        rows.append(
            {
                "model": run.name.split("-")[0],
                "scored by": run.name.split("-", 1)[1],
                "win rate tuned > base": summary["win_rate"],
                "95% CI": f"{low:.2f} - {high:.2f}",
                "base mean reward": summary["base_mean_reward"],
                "tuned mean reward": summary["tuned_mean_reward"],
                "prompts": summary["n_prompts"],
                "verdict": "tuned better"
                if low > 0.5
                else "tuned worse"
                if high < 0.5
                else "no significant difference",
            }
        )
        grid = run / "grid.png"
        if grid.exists() and run.name.endswith("oracle"):
            grids.append(
                figure_html(
                    png_data_uri(grid.read_bytes()),
                    f"{run.name}: base row vs tuned row",
                    width=900,
                    pixelated=True,
                )
            )
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(rows)))
    for i, row in enumerate(rows):
        low, high = (float(x) for x in row["95% CI"].split(" - "))
        ax.errorbar(
            row["win rate tuned > base"],
            i,
            xerr=[[row["win rate tuned > base"] - low], [high - row["win rate tuned > base"]]],
            fmt="o",
            capsize=4,
        )
    ax.axvline(0.5, color="k", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), [f"{r['model']} / {r['scored by']}" for r in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate of tuned over base (bootstrap 95% interval)")
    body = (
        "<p>Base and tuned sample with the same seeds; each prompt's tuned image wins if it scores higher. "
        "'oracle' is the annotators' hidden true preference, 'learned' the reward model trained on their labels.</p>"
        + table_html(rows)
        + figure_html(figure_data_uri(fig), "win rates with 95% intervals", width=600)
        + "".join(grids)
    )
    return "Evaluation: tuned vs base", body


ALL = (curation, labeling, reward_model, fine_tuning, evaluation)
