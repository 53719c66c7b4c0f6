"""Checkpoints every trainer shares: LoRA (safetensors), optimizer and RNG state (weights_only), step.

Layout: `OUTPUT/checkpoints/checkpoint-STEP/{pytorch_lora_weights.safetensors, optimizer.pt, rng.pt,
trainer_state.json}`. Everything loads with safetensors or `torch.load(weights_only=True)`: no pickles.
A checkpoint folder is written under a temporary name and renamed, so a killed run never leaves one
that looks complete.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canvas.core.errors import CanvasError
from canvas.rlhf.lora import load_unet_lora, save_unet_lora

PREFIX = "checkpoint-"


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.exists():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def resolve_resume(output_dir: str | Path, resume: str | None) -> Path | None:
    """`None` -> None; `latest` -> newest checkpoint (None if there is none); a path -> that checkpoint."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / "trainer_state.json").exists():
        raise CanvasError(f"not a checkpoint folder: {resume}")
    return path


def _rng_state() -> dict[str, Any]:
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    unet: Any,
    optimizer: torch.optim.Optimizer,
    extra_state: dict[str, Any] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
    limit: int | None = None,
) -> Path:
    """Write checkpoint-STEP atomically and keep at most `limit` checkpoints (oldest removed first).

    `extra_state` is JSON (data-loader position, stat trackers); `tensors` are extra tensors such as
    generator states, saved beside the RNG state.
    """
    root = checkpoint_root(output_dir)
    final = root / f"{PREFIX}{step}"
    tmp = root / f".tmp-{PREFIX}{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_unet_lora(unet, tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"rng": _rng_state(), "tensors": tensors or {}}, tmp / "rng.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **(extra_state or {})}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    if limit is not None and limit > 0:
        for old in list_checkpoints(output_dir)[:-limit]:
            shutil.rmtree(old)
    return final


def load_checkpoint(
    path: Path, unet: Any, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore LoRA, optimizer and RNG state; returns (trainer_state, extra tensors)."""
    load_unet_lora(unet, path)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    saved = torch.load(path / "rng.pt", weights_only=True)
    _set_rng_state(saved["rng"])
    return json.loads((path / "trainer_state.json").read_text()), saved["tensors"]
