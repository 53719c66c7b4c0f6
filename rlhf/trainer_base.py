"""`TrainerBase`: the run plumbing every canvas trainer shares (DPO, SFT, DDPO, the reward model).

A trainer's config has the shared knobs, under transformers' / diffusers' names: `output_dir`, `seed`,
`learning_rate`, `checkpointing_steps` (every N of the trainer's natural step: optimizer steps for DPO and
SFT, epochs for DDPO and the reward model), `checkpoints_total_limit`, `resume_from_checkpoint`,
`overwrite_output_dir`, `tensorboard`. Old names stay accepted through the config's `DEPRECATED_KEYS`
(`canvas.core.config_parser`). A trainer then

1. validates its inputs, then calls `_claim_output_dir()` before any model loads (a fresh run over another
   run's files, or a resume with other settings, fails there; `self.resume_checkpoint` is what to resume);
2. builds its model and optimizer and calls `_resume(model, optimizer)` (model, optimizer and RNG state
   as the checkpoint left them; returns the checkpoint's trainer state, or None on a fresh start);
3. opens the run log with `_open_logger(resume_step)` (`metrics.jsonl` + TensorBoard + `run_config.json`);
4. saves checkpoints with `_save_checkpoint(step, model, optimizer, ...)` (atomic, rotated to
   `checkpoints_total_limit`) and ends with `logger.write_summary(...)` (atomic `summary.json`).

`self.accelerator` is an `accelerate.Accelerator`, or None for a single-process trainer (the reward model).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from canvas.rlhf.checkpointing import load_checkpoint, save_checkpoint, start_run, write_run_config
from canvas.rlhf.lora import load_unet_lora, save_unet_lora
from canvas.rlhf.tracking import RunLogger

log = logging.getLogger(__name__)


class TrainerBase:
    """Mixin: output-folder claim, resume, run log and checkpoints, driven by the config's shared knobs."""

    config: Any
    output_dir: Path
    accelerator: Any = None
    resume_checkpoint: Path | None = None

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def _claim_output_dir(self, can_resume: bool = True) -> Path | None:
        """The checkpoint to resume (`canvas.rlhf.checkpointing.start_run`), or a fresh start in a clean folder."""
        cfg = self.config
        self.output_dir = Path(cfg.output_dir)
        self.resume_checkpoint = start_run(
            self.output_dir,
            cfg,
            cfg.resume_from_checkpoint or None,
            cfg.overwrite_output_dir,
            is_main=self.is_main_process,
            can_resume=can_resume,
        )
        return self.resume_checkpoint

    def _resume(
        self,
        model: Any,
        optimizer: torch.optim.Optimizer,
        load_model: Callable[[Any, Path], Any] = load_unet_lora,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """Restore `resume_checkpoint` into `model` (its LoRA by default) and `optimizer`, and the RNG
        state; returns (trainer_state, extra tensors), or None on a fresh start."""
        if self.resume_checkpoint is None:
            return None
        return load_checkpoint(self.resume_checkpoint, model, optimizer, load_model)

    def _open_logger(self, resume_step: int | None) -> RunLogger | None:
        """The main process's metrics/TensorBoard logger (a resumed run continues the same files, cut at
        `resume_step`), after writing `run_config.json`; None on other processes."""
        if not self.is_main_process:
            return None
        write_run_config(self.output_dir, self.config)
        return RunLogger(self.output_dir, resume_from_step=resume_step, tensorboard=self.config.tensorboard)

    def _save_checkpoint(
        self,
        step: int,
        model: Any,
        optimizer: torch.optim.Optimizer,
        extra_state: dict[str, Any] | None = None,
        tensors: dict[str, torch.Tensor] | None = None,
        save_model: Callable[[Any, Path], Any] = save_unet_lora,
    ) -> Path | None:
        """checkpoint-STEP (main process, after every process got here), keeping `checkpoints_total_limit`."""
        acc = self.accelerator
        if acc is not None:
            acc.wait_for_everyone()
            model = acc.unwrap_model(model)
        if not self.is_main_process:
            return None
        return save_checkpoint(
            self.output_dir,
            step,
            model,
            optimizer,
            extra_state=extra_state,
            tensors=tensors,
            limit=self.config.checkpoints_total_limit,
            run_config=self.config,
            save_model=save_model,
        )
