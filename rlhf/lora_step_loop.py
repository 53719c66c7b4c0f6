"""What the step-based LoRA trainers (`DiffusionDPOTrainer`, `SFTTrainer`) share around their own step:
learning-rate warm-up, the run logger, periodic held-out evaluation, metrics lines, checkpoints, and the
final LoRA + `summary.json`. Each trainer keeps its batches, loss and summary fields.

A trainer using it sets `config` (with the fields below), `accelerator`, `unet`, `optimizer`, `pipe`,
`output_dir` and `start_step`, and defines `evaluate() -> dict[str, float]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from rlhf.checkpointing import save_checkpoint
from rlhf.lora import save_unet_lora
from rlhf.tracking import RunLogger


class LoraStepLoop:
    """Mixin: the loop tail of a LoRA trainer that counts optimizer steps up to `config.max_steps`."""

    config: Any
    accelerator: Any
    unet: Any
    optimizer: Any
    pipe: Any
    output_dir: Any
    start_step: int

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
        resume_step = self.start_step if cfg.resume else None
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
