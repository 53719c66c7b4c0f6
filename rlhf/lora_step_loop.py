"""What the step-based LoRA trainers (`DiffusionDPOTrainer`, `SFTTrainer`) share around their own step,
on top of `TrainerBase` (folder claim, resume, run log, checkpoints): LoRA + optimizer set-up, the seeded
batch order, learning-rate warm-up, periodic held-out evaluation, metrics lines, checkpoint cadence, and
the final LoRA + `summary.json`. Each trainer keeps its data, loss and summary fields.

A trainer using it sets `config` (a `LoraTrainingConfig`), `accelerator`, `pipe` and `train_data`, calls
`_claim_output_dir()` once its inputs are validated (before any model loads), calls
`_prepare_lora_training(unet)` at the end of `__init__`, and defines `evaluate() -> dict[str, float]`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from canvas.rlhf.lora import add_unet_lora, save_unet_lora
from canvas.rlhf.run_knobs import lr_factor
from canvas.rlhf.tracking import RunLogger
from canvas.rlhf.trainer_base import TrainerBase

log = logging.getLogger(__name__)


class LoraStepLoop(TrainerBase):
    """Mixin: the loop tail of a LoRA trainer that counts optimizer steps up to `config.max_steps`."""

    unet: Any
    optimizer: Any
    pipe: Any
    start_step: int
    train_data: Any

    def _prepare_lora_training(self, unet: Any) -> None:
        """LoRA on `unet` (from `init_lora` if set), AdamW on it, then the checkpoint `resume` names (LoRA,
        optimizer and RNG exactly as it left them), and `accelerator.prepare`."""
        cfg, acc = self.config, self.accelerator
        params = add_unet_lora(unet, cfg.lora_rank, cfg.lora_alpha, cfg.lora_target_modules, cfg.init_lora)
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay)
        self.start_step = 0
        resumed = self._resume(unet, optimizer)
        if resumed is not None:
            self.start_step = int(resumed[0]["step"])
            log.info("resumed from %s (step %d)", self.resume_checkpoint, self.start_step)
        self.params = params
        self.unet, self.optimizer = acc.prepare(unet, optimizer)

    def _indices(self, micro_step: int) -> list[int]:
        """`train_data` indices of this process's share of global micro-batch `micro_step`: each epoch
        is a permutation seeded by (seed, epoch), so a resumed run sees the same batches."""
        n, b = len(self.train_data), self.config.train_batch_size
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        start = micro_step * b * world + rank * b
        out, cached = [], {}
        for pos in range(start, start + b):
            epoch = pos // n
            if epoch not in cached:
                gen = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
                cached[epoch] = torch.randperm(n, generator=gen).tolist()
            out.append(cached[epoch][pos % n])
        return out

    def evaluate(self) -> dict[str, float]:  # pragma: no cover - each trainer defines its own
        raise NotImplementedError

    def _lr(self, step: int) -> float:
        """Linear warm-up over `lr_warmup_steps`, then constant."""
        cfg = self.config
        return cfg.learning_rate * lr_factor(step, cfg.lr_warmup_steps, cfg.max_steps)

    def _set_lr(self, step: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(step)

    def _open_step_logger(self) -> RunLogger | None:
        """`_open_logger`, continuing a resumed run's metrics from its step."""
        return self._open_logger(self.start_step if self.resume_checkpoint is not None else None)

    def _end_step(self, done: int, last: dict[str, float], logger: RunLogger | None) -> None:
        """After optimizer step `done`: held-out evaluation, a metrics line, a checkpoint, each when due."""
        cfg = self.config
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            last.update({f"heldout/{k}": v for k, v in self.evaluate().items()})
            self.unet.train()
        if logger is not None and (done % cfg.logging_steps == 0 or done == cfg.max_steps):
            logger.log(done, last)
        if cfg.checkpointing_steps and done % cfg.checkpointing_steps == 0:
            self._save_checkpoint(done, self.unet, self.optimizer)

    def _finish(
        self,
        logger: RunLogger | None,
        last: dict[str, float],
        fields: Callable[[dict[str, float]], dict[str, Any]],
    ) -> dict[str, Any]:
        """Final held-out evaluation, the LoRA in the diffusers format, `summary.json` (the trainer's
        `fields(heldout)` among the common keys); returns the summary (empty on other processes)."""
        cfg, acc = self.config, self.accelerator
        heldout = self.evaluate()
        acc.wait_for_everyone()
        summary: dict[str, Any] = {}
        if logger is not None:
            save_unet_lora(acc.unwrap_model(self.unet), self.output_dir, pipeline_cls=type(self.pipe))
            summary = {
                "steps": cfg.max_steps,
                "final": last,
                **fields(heldout),
                "pipeline": type(self.pipe).__name__,
                "lora_dir": str(self.output_dir),
                "config": asdict(cfg),
            }
            logger.write_summary(summary)
            logger.close()
        acc.end_training()
        return summary
