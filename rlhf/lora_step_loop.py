"""What the step-based LoRA trainers (`DiffusionDPOTrainer`, `SFTTrainer`) share around their own step:
LoRA + optimizer set-up and resume, the seeded batch order, learning-rate warm-up, the run logger,
periodic held-out evaluation, metrics lines, checkpoints, and the final LoRA + `summary.json`. Each
trainer keeps its data, loss and summary fields.

A trainer using it sets `config` (with the fields below), `accelerator`, `pipe`, `output_dir` and
`train_data`, calls `_claim_output_dir()` once its inputs are validated (before any model loads: a
fresh run over another run's files, or a resume with different settings, fails there), calls
`_prepare_lora_training(unet)` at the end of `__init__`, and defines
`evaluate() -> dict[str, float]`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from canvas.rlhf.checkpointing import load_checkpoint, save_checkpoint, start_run, write_run_config
from canvas.rlhf.lora import add_unet_lora, save_unet_lora
from canvas.rlhf.tracking import RunLogger

log = logging.getLogger(__name__)


class LoraStepLoop:
    """Mixin: the loop tail of a LoRA trainer that counts optimizer steps up to `config.max_steps`."""

    config: Any
    accelerator: Any
    unet: Any
    optimizer: Any
    pipe: Any
    output_dir: Any
    start_step: int
    train_data: Any
    resume_checkpoint: Any = None

    def _claim_output_dir(self) -> None:
        """The checkpoint to resume (`canvas.rlhf.checkpointing.start_run`), or a fresh start in a clean folder."""
        cfg = self.config
        self.resume_checkpoint = start_run(
            self.output_dir,
            cfg,
            cfg.resume,
            cfg.overwrite_output_dir,
            is_main=self.accelerator.is_main_process,
        )

    def _prepare_lora_training(self, unet: Any) -> None:
        """LoRA on `unet` (from `init_lora` if set), AdamW on it, then the checkpoint `resume` names (LoRA,
        optimizer and RNG exactly as it left them), and `accelerator.prepare`."""
        cfg, acc = self.config, self.accelerator
        params = add_unet_lora(unet, cfg.lora_rank, cfg.lora_alpha, cfg.lora_target_modules, cfg.init_lora)
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay)
        self.start_step = 0
        checkpoint = self.resume_checkpoint
        if checkpoint is not None:
            state, _ = load_checkpoint(checkpoint, unet, optimizer)
            self.start_step = int(state["step"])
            log.info("resumed from %s (step %d)", checkpoint, self.start_step)
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
        warmup = self.config.lr_warmup_steps
        return self.config.learning_rate * (min(1.0, (step + 1) / warmup) if warmup else 1.0)

    def _set_lr(self, step: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(step)

    def _open_logger(self) -> RunLogger | None:
        """The main process's metrics/TensorBoard logger; a resumed run continues the same files."""
        cfg = self.config
        if not self.accelerator.is_main_process:
            return None
        resume_step = self.start_step if self.resume_checkpoint is not None else None
        write_run_config(self.output_dir, cfg)
        return RunLogger(self.output_dir, resume_from_step=resume_step, tensorboard=cfg.tensorboard)

    def _end_step(self, done: int, last: dict[str, float], logger: RunLogger | None) -> None:
        """After optimizer step `done`: held-out evaluation, a metrics line, a checkpoint, each when due."""
        cfg, acc = self.config, self.accelerator
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            last.update({f"heldout/{k}": v for k, v in self.evaluate().items()})
            self.unet.train()
        if logger is not None and (done % cfg.logging_steps == 0 or done == cfg.max_steps):
            logger.log(done, last)
        if cfg.checkpointing_steps and done % cfg.checkpointing_steps == 0:
            acc.wait_for_everyone()
            if acc.is_main_process:
                save_checkpoint(
                    self.output_dir,
                    done,
                    acc.unwrap_model(self.unet),
                    self.optimizer,
                    limit=cfg.checkpoints_total_limit,
                    run_config=cfg,
                )

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
