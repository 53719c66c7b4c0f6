"""Checkpoints every trainer shares: LoRA (safetensors), optimizer and RNG state (weights_only), step.

Layout: `OUTPUT/checkpoints/checkpoint-STEP/{pytorch_lora_weights.safetensors, optimizer.pt, rng.pt,
trainer_state.json}`. Everything loads with safetensors or `torch.load(weights_only=True)`: no pickles.
A checkpoint folder is written under a temporary name and renamed (`canvas.core.atomic`), so a killed
run never leaves one that looks complete. The model part is a LoRA by default; a trainer of another
model passes its own `save_model` / `load_model` (the reward trainer: the head's `save_pretrained`).

One output folder holds one run (`start_run`): a fresh run into a folder that holds a previous run's
files is refused unless `overwrite_output_dir` (then only the files a trainer writes, `RUN_OUTPUTS`,
are removed; anything else in the folder is left alone), and `resume` refuses a checkpoint saved with
settings that change the trajectory (`run_config.json` in every checkpoint and at the top of the run).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canvas.core.atomic import atomic_path, write_json_atomic
from canvas.core.errors import CanvasError
from canvas.rlhf.lora import load_unet_lora, save_unet_lora

log = logging.getLogger(__name__)

PREFIX = "checkpoint-"
RUN_CONFIG_FILE = "run_config.json"
# Everything a canvas trainer writes at the top of its output folder (dpo, sft, ddpo, reward; older DDPO
# runs wrote ddpo_config.json). A reward model's config.json + model.safetensors count only when
# config.json says it is one (`_reward_model_files`).
RUN_OUTPUTS = (
    "checkpoints",
    "metrics.jsonl",
    "summary.json",
    "tensorboard",
    RUN_CONFIG_FILE,
    "pytorch_lora_weights.safetensors",
    "samples",
    "reward_curve.png",
    "reliability.png",
    "ddpo_config.json",
)
# Config fields that may change when a run is resumed: length, logging, evaluation, checkpoint cadence,
# where things go. Every other field (model, data, learning rate, seed, batch sizes, LoRA...) must match.
# (The old names, `DEPRECATED_KEYS` of the configs, stay listed for run_config.json files that hold them.)
RESUMABLE_FIELDS = frozenset(
    {
        "output_dir", "resume_from_checkpoint", "resume", "resume_from", "overwrite_output_dir", "max_steps",
        "num_epochs", "early_stopping_patience", "early_stopping_threshold",
        "logging_steps", "tensorboard", "eval_steps", "eval_noise_draws", "eval_num_samples",
        "checkpointing_steps", "checkpoints_total_limit", "save_freq", "num_checkpoint_limit",
        "checkpointing_epochs", "sample_grid_freq", "sample_grid_size", "gradient_checkpointing",
    }
)  # fmt: skip


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


def config_record(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON values (as saved in `run_config.json`)."""
    return json.loads(json.dumps(asdict(config), default=str))


def write_run_config(folder: str | Path, config: Any) -> Path:
    return write_json_atomic(Path(folder) / RUN_CONFIG_FILE, config_record(config), indent=2)


def _reward_model_files(folder: Path) -> list[str]:
    from canvas.rlhf.reward_model import CONFIG_FILE, WEIGHTS_FILE, read_config  # lazy: it imports open_clip

    return [CONFIG_FILE, WEIGHTS_FILE] if read_config(folder) is not None else []


def previous_run_files(output_dir: str | Path) -> list[str]:
    """The names in `output_dir` that a training run wrote (empty for a new or unrelated folder)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    return [n for n in RUN_OUTPUTS if (folder / n).exists()] + _reward_model_files(folder)


def start_run(
    output_dir: str | Path,
    config: Any,
    resume: str | None,
    overwrite: bool,
    *,
    is_main: bool = True,
    can_resume: bool = True,
) -> Path | None:
    """Decide how a run uses `output_dir` before any model loads; returns the checkpoint to resume or None.

    - `resume` naming a checkpoint: the checkpoint's saved settings must match `config` (else one line
      naming each differing field); `overwrite` is then ignored.
    - a fresh start (no resume, or `latest` with no checkpoint): refused if the folder holds a previous
      run's files, unless `overwrite`, which removes exactly those files (on the main process only).
    """
    folder = Path(output_dir)
    if resume:
        checkpoint = resolve_resume(folder, resume)
        if checkpoint is not None:
            check_same_config(checkpoint, config)
            return checkpoint
    found = previous_run_files(folder)
    if found and not overwrite:
        if resume:
            raise CanvasError(
                f"--resume {resume}: {folder} has no checkpoint to resume but holds a previous run's "
                f"{', '.join(found)}; start over with --overwrite_output_dir or use another output folder"
            )
        hint = (
            "continue it with --resume latest, or replace it with --overwrite_output_dir"
            if can_resume
            else "replace it with --overwrite_output_dir, or use another output folder"
        )
        raise CanvasError(f"{folder} holds a previous training run ({', '.join(found)}): {hint}")
    if resume:
        log.warning("--resume %s: no checkpoint in %s, starting from scratch", resume, folder)
    if found and is_main:
        log.warning(
            "--overwrite_output_dir: removing the previous run's %s from %s", ", ".join(found), folder
        )
        for name in found:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    return None


def check_same_config(checkpoint: Path, config: Any) -> None:
    """Refuse to resume `checkpoint` with settings that change the trajectory (one line naming each)."""
    saved_path = checkpoint / RUN_CONFIG_FILE
    if not saved_path.exists():  # written by a version that did not save it: nothing to compare
        log.warning("%s has no %s: cannot check the resumed settings", checkpoint, RUN_CONFIG_FILE)
        return
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CanvasError(f"{saved_path} is unreadable ({exc}); resume from another checkpoint") from exc
    renamed = getattr(config, "DEPRECATED_KEYS", {})  # a checkpoint saved under the old knob names
    saved = {renamed.get(k, k): v for k, v in saved.items()}
    now = config_record(config)
    diffs = [
        f"{name}: {json.dumps(saved[name])} -> {json.dumps(value)}"
        for name, value in now.items()
        if name not in RESUMABLE_FIELDS and name in saved and saved[name] != value
    ]
    if diffs:
        raise CanvasError(
            f"cannot resume {checkpoint}: it was saved with different settings ({'; '.join(diffs)}); "
            "resume with the saved settings, or start a new run in another folder or with --overwrite_output_dir"
        )


def _rng_state() -> dict[str, Any]:
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    # Noise drawn on the GPU (DPO's and SFT's noise and timesteps on acc.device) comes from the current
    # device's generator, not the CPU one: without it a resumed GPU run replayed its first steps' noise.
    # Every process seeds alike and draws alike, so the main process's state is every process's.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
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
    run_config: Any = None,
    save_model: Callable[[Any, Path], Any] = save_unet_lora,
) -> Path:
    """Write checkpoint-STEP atomically and keep at most `limit` checkpoints (oldest removed first).

    `unet` is saved with `save_model(unet, folder)` (its LoRA by default); `extra_state` is JSON
    (data-loader position, stat trackers); `tensors` are extra tensors such as generator states, saved
    beside the RNG state; `run_config` (the config dataclass) is saved as `run_config.json`, what a
    resume compares its settings with.
    """
    final = checkpoint_root(output_dir) / f"{PREFIX}{step}"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        save_model(unet, tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"rng": _rng_state(), "tensors": tensors or {}}, tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **(extra_state or {})}, indent=2))
        if run_config is not None:
            write_run_config(tmp, run_config)
    if limit is not None and limit > 0:
        for old in list_checkpoints(output_dir)[:-limit]:
            shutil.rmtree(old)
    return final


def load_checkpoint(
    path: Path,
    unet: Any,
    optimizer: torch.optim.Optimizer,
    load_model: Callable[[Any, Path], Any] = load_unet_lora,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore the model (`load_model`, the LoRA by default), optimizer and RNG state; returns
    (trainer_state, extra tensors)."""
    load_model(unet, path)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    saved = torch.load(path / "rng.pt", weights_only=True)
    _set_rng_state(saved["rng"])
    return json.loads((path / "trainer_state.json").read_text()), saved["tensors"]
