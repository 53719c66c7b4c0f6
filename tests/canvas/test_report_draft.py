"""The demo report's DRaFT block states its cost (seconds, reward queries), its gain and the eval's verdict."""

from __future__ import annotations

import json
from pathlib import Path

from canvas.loop import report_sections


def test_draft_block_shows_cost_gain_and_verdict(tmp_path: Path) -> None:
    assert report_sections.fine_tuning(tmp_path) is None  # no stage ran: no section
    run = tmp_path / "draft"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "reward_mean": 0.1 * s, "grad_norm": 1.0}) + "\n" for s in (1, 2))
    )
    summary = {
        "steps": 2, "draft_k": 1, "training_seconds": 12.5, "reward_queries": 16, "eval_reward_base": -0.2,
        "eval_reward_tuned": 0.6, "eval_gain": 0.8, "config": {"eval_num_samples": 8},
    }  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    for scorer, rate, ci in (("learned", 0.875, [0.69, 1.0]), ("oracle", 0.5, [0.25, 0.75])):
        folder = tmp_path / "eval" / f"draft-{scorer}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"win_rate": rate, "win_rate_ci95": ci}))

    heading, body = report_sections.fine_tuning(tmp_path)
    assert heading == "Fine-tuning" and "<h3>DRaFT-1</h3>" in body
    assert "12.5 s</b> of training" in body and "<b>16</b> reward queries" in body
    assert "base -0.200 -&gt; tuned 0.600" in body or "base -0.200 -> tuned 0.600" in body
    assert "gain +0.800, +5.00e-02 per reward query" in body
    assert "learned: win rate 0.88 (95% CI 0.69-1.00, tuned better)" in body
    assert "oracle: win rate 0.50 (95% CI 0.25-0.75, no significant difference)" in body
