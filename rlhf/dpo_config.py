"""`DiffusionDPOConfig`: every knob of `DiffusionDPOTrainer`, with its default and help (also the CLI's flags).

beta, defined once: the loss is `-logsigmoid(-beta / 2 * (model_diff - ref_diff))` where
`diff = mse(winner) - mse(loser)` and each mse is the squared error of the noise (or v) prediction
averaged over the latent's elements (Wallace et al. 2023, eq. 14 with the per-element mean). For this
form beta = 5000, as the original Salesforce code and diffusers' SDXL DPO script use it (both with the 0.5
factor). diffusers' SD 1.5 DPO script has no 0.5 factor: its beta 2500 equals our 5000. Larger beta = a
sharper preference signal, smaller = stay closer to the reference model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from canvas.core.errors import CanvasError
from canvas.rlhf.lora_training_config import LoraTrainingConfig


@dataclass
class DiffusionDPOConfig(LoraTrainingConfig):
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
    # -- objective -------------------------------------------------------------------------------------
    beta: float = field(
        default=5000.0,
        metadata={"help": "DPO beta for loss -logsigmoid(-beta/2 * (model_diff - ref_diff)); paper: 5000"},
    )
    loss_type: str = field(
        default="sigmoid", metadata={"help": "registered DPO loss (canvas.rlhf.dpo_trainer.DPO_LOSSES)"}
    )
    # -- defaults that differ from LoraTrainingConfig's -------------------------------------------------
    train_batch_size: int = field(default=4, metadata={"help": "pairs per device per micro-batch"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate for the LoRA"})
    logging_steps: int = field(default=1, metadata={"help": "log metrics every N optimizer steps"})
    eval_steps: int = field(
        default=0, metadata={"help": "held-out implicit accuracy every N steps (0 = only at the end)"}
    )
    eval_noise_draws: int = field(
        default=4, metadata={"help": "noise/timestep draws per held-out pair (fixed seed, so runs compare)"}
    )

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise CanvasError(f"beta must be positive, got {self.beta}")
        if not 0 <= self.heldout_fraction < 1:
            raise CanvasError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        super().__post_init__()
