"""`LoraTrainingConfig`: the knobs every step-based LoRA trainer has (model, optimisation, logging,
checkpoints), with their defaults and help. `DiffusionDPOConfig` and `SFTConfig` extend it with their
data and objective fields, as trl's configs extend `TrainingArguments`; a subclass redeclares a field
only to change its default or help (its place in `--help` stays here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from canvas.core.errors import CanvasError
from canvas.rlhf.run_knobs import overwrite_output_dir_field, resume_from_checkpoint_field, tensorboard_field

# The attention projections of every diffusers UNet (SD 1.5 and SDXL alike). Here, not in rlhf/lora.py,
# so that the configs (and `canvas train ... --help`) import no torch.
DEFAULT_TARGET_MODULES: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass
class LoraTrainingConfig:
    """A LoRA on a diffusion UNet trained for `max_steps` optimizer steps (see `canvas.rlhf.lora_step_loop`)."""

    # Old knob names that still work (flag and YAML key, with a warning): `canvas.core.config_parser`.
    DEPRECATED_KEYS: ClassVar[dict[str, str]] = {"resume": "resume_from_checkpoint"}

    # -- model -----------------------------------------------------------------------------------------
    pretrained: str = field(
        default="tiny", metadata={"help": "'tiny', a diffusers pipeline folder or hub id (SD 1.5 or SDXL)"}
    )
    init_lora: str | None = field(
        default=None, metadata={"help": "start from this LoRA folder (e.g. an SFT run's output)"}
    )
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA alpha (default: = rank)"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={"help": "UNet modules that get a LoRA (the attention projections)"},
    )
    # -- optimisation ----------------------------------------------------------------------------------
    max_steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    train_batch_size: int = field(default=4, metadata={"help": "examples per device per micro-batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate for the LoRA"})
    lr_warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps, then constant"})
    adam_weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 = off)"})
    seed: int = field(
        default=0, metadata={"help": "seed for split, LoRA init, batch order, noise, timesteps"}
    )
    mixed_precision: Literal["no", "fp16", "bf16"] = field(
        default="no", metadata={"help": "frozen weights in this dtype; LoRA weights stay fp32"}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "trade compute for activation memory"}
    )
    # -- logging, evaluation, checkpoints ---------------------------------------------------------------
    logging_steps: int = field(default=10, metadata={"help": "log metrics every N optimizer steps"})
    eval_steps: int = field(
        default=0, metadata={"help": "held-out evaluation every N steps (0 = only at the end)"}
    )
    eval_noise_draws: int = field(
        default=4,
        metadata={"help": "noise/timestep draws per held-out example (fixed seed, so runs compare)"},
    )
    checkpointing_steps: int = field(
        default=500, metadata={"help": "save a checkpoint every N optimizer steps (0 = never)"}
    )
    checkpoints_total_limit: int | None = field(
        default=3, metadata={"help": "keep at most this many checkpoints"}
    )
    resume_from_checkpoint: str | None = resume_from_checkpoint_field()
    overwrite_output_dir: bool = overwrite_output_dir_field()
    tensorboard: bool = tensorboard_field()

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise CanvasError(
                "max_steps, train_batch_size and gradient_accumulation_steps must be at least 1"
            )
        if not self.learning_rate > 0:
            raise CanvasError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.lora_rank < 1:
            raise CanvasError(f"lora_rank must be at least 1, got {self.lora_rank}")
        self.lora_target_modules = list(self.lora_target_modules)
