"""`DiffusionDPOConfig`: every knob of `DiffusionDPOTrainer`, with its default and help (also the CLI's flags).

beta, defined once: the loss is `-logsigmoid(-beta / 2 * (model_diff - ref_diff))` where
`diff = mse(winner) - mse(loser)` and each mse is the squared error of the noise (or v) prediction
averaged over the latent's elements (Wallace et al. 2023, eq. 14 with the per-element mean). For this
form the paper uses beta = 5000 for SD 1.5 (diffusers' SDXL recipe: 2500). Larger beta = a sharper
preference signal, smaller = stay closer to the reference model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from canvas.errors import CanvasError
from rlhf.lora import DEFAULT_TARGET_MODULES


@dataclass
class DiffusionDPOConfig:
    """Diffusion-DPO with a LoRA on the UNet's attention; the reference is the UNet with adapters disabled."""

    # -- data ------------------------------------------------------------------------------------------
    preferences: str = field(
        default="",
        metadata={
            "help": "Pick-a-Pic v2 schema preferences: Parquet file/folder, save_to_disk folder or dataset name"
        },
    )
    split: str = field(default="train", metadata={"help": "split to read from a Hugging Face dataset"})
    output_dir: str = field(
        default="dpo-output",
        metadata={"help": "where the LoRA, metrics and checkpoints go", "aliases": ["--output"]},
    )
    drop_ties: bool = field(
        default=True,
        metadata={"help": "drop tied pairs (0.5/0.5); with --drop_ties false they train with a 0.5 target"},
    )
    heldout_fraction: float = field(
        default=0.1, metadata={"help": "fraction of pairs held out for implicit accuracy (seeded split)"}
    )
    resolution: int | None = field(
        default=None, metadata={"help": "training image size (default: the UNet's native sample size)"}
    )
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
    # -- objective -------------------------------------------------------------------------------------
    beta: float = field(
        default=5000.0,
        metadata={"help": "DPO beta for loss -logsigmoid(-beta/2 * (model_diff - ref_diff)); paper: 5000"},
    )
    loss_type: str = field(
        default="sigmoid", metadata={"help": "registered DPO loss (rlhf.dpo_trainer.DPO_LOSSES)"}
    )
    # -- optimisation ----------------------------------------------------------------------------------
    max_steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    train_batch_size: int = field(default=4, metadata={"help": "pairs per device per micro-batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate for the LoRA"})
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
    logging_steps: int = field(default=1, metadata={"help": "log metrics every N optimizer steps"})
    eval_steps: int = field(
        default=0, metadata={"help": "held-out implicit accuracy every N steps (0 = only at the end)"}
    )
    eval_noise_draws: int = field(
        default=4, metadata={"help": "noise/timestep draws per held-out pair (fixed seed, so runs compare)"}
    )
    checkpointing_steps: int = field(
        default=500, metadata={"help": "save a checkpoint every N steps (0 = never)"}
    )
    checkpoints_total_limit: int | None = field(
        default=3, metadata={"help": "keep at most this many checkpoints"}
    )
    resume: str | None = field(
        default=None, metadata={"help": "'latest' or a checkpoint folder: continue that run exactly"}
    )
    tensorboard: bool = field(
        default=True, metadata={"help": "mirror metrics to TensorBoard (OUTPUT/tensorboard)"}
    )

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise CanvasError(f"beta must be positive, got {self.beta}")
        if self.max_steps < 1 or self.train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise CanvasError(
                "max_steps, train_batch_size and gradient_accumulation_steps must be at least 1"
            )
        if not 0 <= self.heldout_fraction < 1:
            raise CanvasError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        self.lora_target_modules = list(self.lora_target_modules)
