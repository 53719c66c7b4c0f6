"""Evaluation statistics and inputs: win rate with ties as halves, bootstrap interval, one-line input
errors (prompt files are canvas.core.formats.prompts', tested in tests/canvas/test_formats_prompts.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from canvas.rlhf.evaluation import bootstrap_interval, win_scores


def test_win_scores_count_ties_as_half() -> None:
    base = torch.tensor([0.1, 0.5, 0.9, 0.3])
    tuned = torch.tensor([0.2, 0.5, 0.1, 0.4])
    assert win_scores(base, tuned).tolist() == [1.0, 0.5, 0.0, 1.0]


def test_bootstrap_interval_brackets_the_rate_and_narrows_with_more_prompts() -> None:
    rng = np.random.default_rng(0)
    small = (rng.random(30) < 0.7).astype(float)
    large = (rng.random(3000) < 0.7).astype(float)
    lo_s, hi_s = bootstrap_interval(small, seed=0)
    lo_l, hi_l = bootstrap_interval(large, seed=0)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 5
    assert lo_l < 0.7 < hi_l
    assert bootstrap_interval(small, seed=0) == (lo_s, hi_s)  # seeded
    assert bootstrap_interval(np.ones(10)) == (1.0, 1.0)


def test_eval_without_lora_weights_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from canvas.cli import main

    (tmp_path / "p.txt").write_text("a cat\n")
    code = main(
        [
            "eval",
            "--lora",
            str(tmp_path),
            "--prompts",
            str(tmp_path / "p.txt"),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no LoRA weights" in err and err.count("\n") == 1


def test_evaluate_many_scores_the_images_evaluate_samples_pair_by_pair(tmp_path: Path, tiny_presets) -> None:
    # Base sampled once and each LoRA applied to an untouched base (unloaded between methods): the same
    # images, so the same per-prompt scores, as one `evaluate` call per (LoRA, reward).
    from canvas.core.presets.loading import load_pipeline
    from canvas.rlhf.evaluation import evaluate, evaluate_many
    from canvas.rlhf.lora import add_unet_lora, save_unet_lora

    loras = {}
    for i, targets in enumerate((["to_q", "to_v"], ["to_k", "conv1", "conv2"])):
        torch.manual_seed(i)
        pipe = load_pipeline("tiny")
        with torch.no_grad():
            for p in add_unet_lora(pipe.unet, rank=4, target_modules=targets):
                p.add_(0.3 * torch.randn_like(p))
        save_unet_lora(pipe.unet, tmp_path / f"lora{i}")
        loras[f"m{i}"] = tmp_path / f"lora{i}"
    prompts = ["a red ball", "a blue sky", "green grass"]
    rewards = {"bright": "brightness", "jpeg": "jpeg_compressibility"}
    kwargs = {"seed": 3, "num_inference_steps": 3, "guidance_scale": 1.0}
    many = evaluate_many(
        "tiny", loras, prompts, rewards, lambda m, r: tmp_path / "many" / f"{m}-{r}", **kwargs
    )
    assert sorted(many) == [(m, r) for m in ("m0", "m1") for r in ("bright", "jpeg")]
    for (method, name), summary in many.items():
        one = evaluate(
            "tiny", loras[method], prompts, rewards[name], tmp_path / f"one-{method}-{name}", **kwargs
        )
        assert summary["per_prompt"] == one["per_prompt"] and summary["win_rate"] == one["win_rate"]
        assert (tmp_path / "many" / f"{method}-{name}" / "grid.png").exists()
    # The LoRAs differ, so a method that saw the previous one's adapter would not match above.
    assert many["m0", "bright"]["tuned_mean_reward"] != many["m1", "bright"]["tuned_mean_reward"]
