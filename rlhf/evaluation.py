"""Base vs tuned: sample both with the same seeds, score both with one reward, report the win rate.

Image `i` of both models comes from `torch.Generator().manual_seed(seed + i)`, so the only difference
between a base and a tuned image is the LoRA. The win rate counts a tie as half a win; its 95% interval
is a percentile bootstrap over prompts (seeded). Outputs: `summary.json` (rates, means, per-prompt
scores) and `grid.png` (base row over tuned row).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from canvas.core.errors import CanvasError
from canvas.core.formats.prompts import read_prompts
from canvas.rlhf.rewards import load_reward, score_checked

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.json"
GRID_FILE = "grid.png"


def win_scores(base: torch.Tensor, tuned: torch.Tensor) -> np.ndarray:
    """Per prompt: 1 if tuned scores higher, 0.5 on a tie, 0 otherwise."""
    return (tuned > base).double().numpy() + 0.5 * (tuned == base).double().numpy()


def bootstrap_interval(
    values: np.ndarray, samples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


@torch.no_grad()
def sample_images(
    pipe: Any,
    prompts: Sequence[str],
    seed: int,
    num_inference_steps: int,
    guidance_scale: float,
    batch_size: int = 16,
    desc: str = "sampling",
) -> torch.Tensor:
    """`(N, 3, H, W)` in [0, 1]; image i uses generator seed `seed + i` whatever the batching."""
    out = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch", leave=False):
        chunk = list(prompts[start : start + batch_size])
        generators = [torch.Generator().manual_seed(seed + start + j) for j in range(len(chunk))]
        images = pipe(
            chunk,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generators,
            output_type="pt",
        ).images
        out.append(images.float().cpu())
    return torch.cat(out)


def evaluate(
    pretrained: str,
    lora: str | Path,
    prompts: Sequence[str] | str | Path,
    reward: str,
    output_dir: str | Path,
    seed: int = 0,
    num_inference_steps: int = 20,
    guidance_scale: float = 7.5,
    batch_size: int = 16,
    bootstrap_samples: int = 2000,
    grid_columns: int = 8,
) -> dict[str, Any]:
    """Sample base and base+LoRA with the same seeds, score both, write summary.json and grid.png.

    Example:
        >>> evaluate("tiny", "dpo-output", "prompts.txt", "brightness", "eval-output")["win_rate"]
    """
    summaries = evaluate_many(
        pretrained, {"": lora}, prompts, {"": reward}, lambda _, __: Path(output_dir), seed,
        num_inference_steps, guidance_scale, batch_size, bootstrap_samples, grid_columns,
    )  # fmt: skip
    return summaries["", ""]


def evaluate_many(
    pretrained: str,
    loras: dict[str, str | Path],
    prompts: Sequence[str] | str | Path,
    rewards: dict[str, str],
    output_dir_for: Callable[[str, str], Path],
    seed: int = 0,
    num_inference_steps: int = 20,
    guidance_scale: float = 7.5,
    batch_size: int = 16,
    bootstrap_samples: int = 2000,
    grid_columns: int = 8,
) -> dict[tuple[str, str], dict[str, Any]]:
    """`evaluate` for several LoRAs (name -> folder) and rewards (name -> reward) on one base: the base
    images are sampled once and each LoRA's once, then scored by every reward (the demo's 3 methods x 2
    rewards sampled 12 times before). Returns (LoRA name, reward name) -> summary, each written to
    `output_dir_for(lora name, reward name)`. Same images as `evaluate` one pair at a time: the LoRA is
    unloaded between methods, so each one is applied to the untouched base."""
    from canvas.core.presets.loading import load_pipeline

    if isinstance(prompts, str | Path):
        prompts = read_prompts(prompts)
    prompts = list(prompts)
    if not prompts:
        raise CanvasError("no prompts to evaluate")
    for lora in loras.values():
        if not (Path(lora) / "pytorch_lora_weights.safetensors").exists():
            raise CanvasError(f"no LoRA weights in {lora} (expected pytorch_lora_weights.safetensors)")
    scorers = {name: load_reward(reward) for name, reward in rewards.items()}

    pipe = load_pipeline(pretrained)
    kwargs = {"seed": seed, "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
    base = sample_images(pipe, prompts, batch_size=batch_size, desc="base", **kwargs)
    base_scores = {name: score_checked(scorer, base, prompts) for name, scorer in scorers.items()}
    summaries = {}
    for method, lora in loras.items():
        pipe.load_lora_weights(str(lora))  # the stock diffusers loader: what users of the LoRA will run
        tuned = sample_images(pipe, prompts, batch_size=batch_size, desc=f"tuned {method}".strip(), **kwargs)
        pipe.unload_lora_weights()
        for name, scorer in scorers.items():
            out = Path(output_dir_for(method, name))
            out.mkdir(parents=True, exist_ok=True)
            summaries[method, name] = _summarize(
                base, tuned, base_scores[name], score_checked(scorer, tuned, prompts), prompts, out,
                {"reward": getattr(scorer, "name", rewards[name]), "pretrained": pretrained, "lora": str(Path(lora)),
                 **kwargs},
                bootstrap_samples, grid_columns,
            )  # fmt: skip
    return summaries


def _summarize(
    base: torch.Tensor,
    tuned: torch.Tensor,
    base_scores: torch.Tensor,
    tuned_scores: torch.Tensor,
    prompts: list[str],
    out: Path,
    about: dict[str, Any],
    bootstrap_samples: int,
    grid_columns: int,
) -> dict[str, Any]:
    """Win rate, its bootstrap interval and per-prompt scores -> summary.json and grid.png in `out`."""
    seed = about["seed"]
    wins = win_scores(base_scores, tuned_scores)
    low, high = bootstrap_interval(wins, samples=bootstrap_samples, seed=seed)
    summary = {
        "win_rate": float(wins.mean()),
        "win_rate_ci95": [low, high],
        "n_prompts": len(prompts),
        "reward": about["reward"],
        "base_mean_reward": float(base_scores.mean()),
        "tuned_mean_reward": float(tuned_scores.mean()),
        "pretrained": about["pretrained"],
        "lora": about["lora"],
        "seed": seed,
        "num_inference_steps": about["num_inference_steps"],
        "guidance_scale": about["guidance_scale"],
        "per_prompt": [
            {"prompt": p, "seed": seed + i, "base": float(b), "tuned": float(t)}
            for i, (p, b, t) in enumerate(zip(prompts, base_scores, tuned_scores, strict=True))
        ],
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    save_grid(base, tuned, prompts, base_scores, tuned_scores, out / GRID_FILE, columns=grid_columns)
    log.info(
        "win rate %.3f (95%% CI %.3f-%.3f) over %d prompts", summary["win_rate"], low, high, len(prompts)
    )
    return summary


def save_grid(
    base: torch.Tensor,
    tuned: torch.Tensor,
    prompts: Sequence[str],
    base_scores: torch.Tensor,
    tuned_scores: torch.Tensor,
    path: Path,
    columns: int = 8,
) -> Path:
    """A figure with the first `columns` prompts: base images on the top row, tuned below, with scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(columns, len(prompts))
    fig, axes = plt.subplots(2, n, figsize=(2 * n, 4.6), squeeze=False)
    for row, (name, images, scores) in enumerate(
        (("base", base, base_scores), ("tuned", tuned, tuned_scores))
    ):
        for col in range(n):
            ax = axes[row][col]
            ax.imshow(images[col].clamp(0, 1).permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{float(scores[col]):.4g}", fontsize=8)
            if row == 0:
                ax.set_title(prompts[col][:24], fontsize=7)
            if col == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
