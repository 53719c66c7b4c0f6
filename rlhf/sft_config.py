"""`SFTConfig`: every knob of `SFTTrainer`, with its default and help (also the CLI's flags).

The objective is the standard text-to-image one: predict the noise (or v) added to the image's latent
at a random timestep, mean squared error, optionally weighted per sample by Min-SNR-gamma
(Hang et al. 2023: weight = min(SNR, gamma) / SNR for epsilon prediction, / (SNR + 1) for v).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from canvas.core.errors import CanvasError
from canvas.rlhf.lora_training_config import LoraTrainingConfig


@dataclass
class SFTConfig(LoraTrainingConfig):
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
        default="sft-output",
        metadata={"help": "where the LoRA, metrics and checkpoints go", "aliases": ["--output"]},
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
    # -- objective -------------------------------------------------------------------------------------
    snr_gamma: float | None = field(
        default=None, metadata={"help": "Min-SNR weighting gamma (5.0 is the paper's); unset = plain MSE"}
    )
    noise_offset: float = field(default=0.0, metadata={"help": "per-channel noise offset (0 = off)"})
    # -- defaults that differ from LoraTrainingConfig's -------------------------------------------------
    train_batch_size: int = field(default=4, metadata={"help": "images per device per micro-batch"})
    eval_steps: int = field(
        default=0, metadata={"help": "held-out denoising loss every N steps (0 = only at start and end)"}
    )
    eval_noise_draws: int = field(
        default=4, metadata={"help": "noise/timestep draws per held-out image (fixed seed, so runs compare)"}
    )

    def __post_init__(self) -> None:
        if not 0 <= self.heldout_fraction < 1:
            raise CanvasError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.snr_gamma is not None and self.snr_gamma <= 0:
            raise CanvasError(f"snr_gamma must be positive, got {self.snr_gamma}")
        super().__post_init__()
