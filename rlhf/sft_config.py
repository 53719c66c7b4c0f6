"""`SFTConfig`: every knob of `SFTTrainer`, with its default and help (also the CLI's flags).

The objective is the standard text-to-image one: predict the noise (or v) added to the image's latent
at a random timestep, mean squared error, optionally weighted per sample by Min-SNR-gamma
(Hang et al. 2023: weight = min(SNR, gamma) / SNR for epsilon prediction, / (SNR + 1) for v).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from canvas.errors import CanvasError
from rlhf.lora import DEFAULT_TARGET_MODULES


@dataclass
class SFTConfig:
    """Supervised LoRA fine-tuning of a diffusion UNet on image-caption rows (curated or subset Parquet)."""

    # -- data ------------------------------------------------------------------------------------------
    data: str = field(
        default="",
        metadata={
            "help": "Parquet file or folder with caption + image (bytes) columns: a curated or subset set"
        },
    )
    caption_column: str = field(default="caption", metadata={"help": "column holding the caption"})
    image_column: str = field(default="image", metadata={"help": "column holding the encoded image bytes"})
    output_dir: str = field(
        default="sft-output", metadata={"help": "where the LoRA, metrics and checkpoints go"}
    )
    heldout_fraction: float = field(
        default=0.1, metadata={"help": "fraction of rows held out for the denoising loss (seeded split)"}
    )
    resolution: int | None = field(
        default=None, metadata={"help": "training image size (default: the pipeline's native size)"}
    )
    random_flip: bool = field(
        default=False, metadata={"help": "flip images horizontally at random (per epoch)"}
    )
    # -- model -----------------------------------------------------------------------------------------
    pretrained: str = field(
        default="tiny", metadata={"help": "'tiny', a diffusers pipeline folder or hub id (SD 1.5 or SDXL)"}
    )
    init_lora: str | None = field(default=None, metadata={"help": "start from this LoRA folder"})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA alpha (default: = rank)"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={"help": "UNet modules that get a LoRA (the attention projections)"},
    )
    # -- objective -------------------------------------------------------------------------------------
    snr_gamma: float | None = field(
        default=None, metadata={"help": "Min-SNR weighting gamma (5.0 is the paper's); unset = plain MSE"}
    )
    noise_offset: float = field(default=0.0, metadata={"help": "per-channel noise offset (0 = off)"})
    # -- optimisation ----------------------------------------------------------------------------------
    max_steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    train_batch_size: int = field(default=4, metadata={"help": "images per device per micro-batch"})
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
        default=0, metadata={"help": "held-out denoising loss every N steps (0 = only at start and end)"}
    )
    eval_noise_draws: int = field(
        default=4, metadata={"help": "noise/timestep draws per held-out image (fixed seed, so runs compare)"}
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
        if self.max_steps < 1 or self.train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise CanvasError(
                "max_steps, train_batch_size and gradient_accumulation_steps must be at least 1"
            )
        if not 0 <= self.heldout_fraction < 1:
            raise CanvasError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.snr_gamma is not None and self.snr_gamma <= 0:
            raise CanvasError(f"snr_gamma must be positive, got {self.snr_gamma}")
        if self.lora_rank < 1:
            raise CanvasError(f"lora_rank must be at least 1, got {self.lora_rank}")
        self.lora_target_modules = list(self.lora_target_modules)
