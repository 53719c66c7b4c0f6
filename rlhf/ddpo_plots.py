"""DDPO's plots: a grid of an epoch's samples with their rewards, and the reward per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_sample_grid(
    path: Path, epoch: int, images: torch.Tensor, prompts: list[str], rewards: torch.Tensor, size: int,
    reward_name: str,
) -> Path:  # fmt: skip
    """Up to `size` images (NCHW in [0, 1]) titled with their prompt and reward, saved as `path`."""
    plt = _pyplot()
    n = min(size, len(prompts))
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(images[i].float().permute(1, 2, 0).cpu().numpy())
        ax.set_title(f"{prompts[i][:28]}\nreward {rewards[i].item():.4g}", fontsize=8)
    fig.suptitle(f"DDPO epoch {epoch}: samples and rewards ({reward_name})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_reward_curve(history: list[dict[str, Any]], path: Path) -> Path:
    """Mean reward of each epoch's samples, with a band of one standard deviation."""
    plt = _pyplot()
    epochs = np.array([h["epoch"] for h in history])
    mean = np.array([h["reward_mean"] for h in history])
    std = np.array([h["reward_std"] for h in history])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, mean, marker="o", ms=3, label="reward mean")
    ax.fill_between(epochs, mean - std, mean + std, alpha=0.25, label="± std")
    ax.set_xlabel("epoch")
    ax.set_ylabel("reward of the epoch's samples")
    ax.set_title("DDPO: reward per epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
