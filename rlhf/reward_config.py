"""`RewardConfig`: every knob of `RewardTrainer`, with its default and help (also the CLI's flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from canvas.core.errors import CanvasError
from canvas.rlhf.run_knobs import overwrite_output_dir_field, resume_from_checkpoint_field, tensorboard_field


@dataclass
class RewardConfig:
    """Train a Bradley-Terry head on frozen CLIP features from preference pairs (PickScore-style)."""

    # Old knob names that still work (flag and YAML key, with a warning): `canvas.core.config_parser`.
    DEPRECATED_KEYS: ClassVar[dict[str, str]] = {"checkpointing_epochs": "checkpointing_steps"}

    # -- data ------------------------------------------------------------------------------------------
    preferences: str = field(
        default="",
        metadata={
            "help": "Pick-a-Pic v2 schema preferences: Parquet file/folder, save_to_disk folder or dataset name"
        },
    )
    split: str = field(default="train", metadata={"help": "split to read from a Hugging Face dataset"})
    output_dir: str = field(
        default="reward-output",
        metadata={"help": "where the model, metrics and checkpoints go", "aliases": ["--output"]},
    )
    heldout_fraction: float = field(
        default=0.2, metadata={"help": "fraction of pairs held out for accuracy and log-loss (seeded split)"}
    )
    # -- model -----------------------------------------------------------------------------------------
    clip_model: str = field(default="canvas-tiny-clip", metadata={"help": "open_clip architecture name"})
    clip_pretrained: str | None = field(
        default="tiny",
        metadata={"help": "open_clip weights: a tag (e.g. laion2b_s34b_b79k), a file, or 'tiny'"},
    )
    hidden_dim: int = field(
        default=256, metadata={"help": "width of the head's hidden layer (0 = linear head)"}
    )
    # -- optimisation ----------------------------------------------------------------------------------
    num_epochs: int = field(
        default=100, metadata={"help": "passes over the training pairs", "aliases": ["--epochs"]}
    )
    batch_size: int = field(default=64, metadata={"help": "pairs per optimizer step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=0, metadata={"help": "seed for the split, initialisation and batch order"})
    embed_batch_size: int = field(default=32, metadata={"help": "images per CLIP forward when embedding"})
    device: str = field(default="cpu", metadata={"help": "torch device for CLIP and the head"})
    # -- model selection -------------------------------------------------------------------------------
    # The held-out split is evaluated after every epoch; the weights saved in OUTPUT are the epoch's with
    # the lowest held-out log-loss (transformers' load_best_model_at_end, always on), never simply the
    # last: a head on frozen features over-fits noisy labels within a few epochs.
    early_stopping_patience: int = field(
        default=10,
        metadata={
            "help": "stop after this many epochs without a better held-out log-loss (0 = train all "
            "num_epochs); the best epoch's weights are saved either way"
        },
    )
    early_stopping_threshold: float = field(
        default=0.0,
        metadata={"help": "a held-out log-loss counts as better only if it beats the best by more than this"},
    )
    # -- logging and checkpoints -----------------------------------------------------------------------
    checkpointing_steps: int = field(
        default=25,
        metadata={
            "help": "save a checkpoint (OUTPUT/checkpoints/checkpoint-EPOCH) every N epochs, the reward "
            "trainer's step (0 = never)"
        },
    )
    checkpoints_total_limit: int | None = field(
        default=2, metadata={"help": "keep at most this many checkpoints"}
    )
    resume_from_checkpoint: str | None = resume_from_checkpoint_field()
    overwrite_output_dir: bool = overwrite_output_dir_field()
    tensorboard: bool = tensorboard_field()

    def __post_init__(self) -> None:
        if not 0 < self.heldout_fraction < 1:
            raise CanvasError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        if self.num_epochs < 1 or self.batch_size < 1:
            raise CanvasError("num_epochs and batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise CanvasError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.early_stopping_patience < 0 or self.early_stopping_threshold < 0:
            raise CanvasError("early_stopping_patience and early_stopping_threshold must be >= 0")
