"""`DemoConfig`: the knobs of `canvas demo`, and the Label Studio project it labels in."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from canvas.core.errors import CanvasError

PROJECT = "canvas demo: which image is brighter?"


@dataclass
class DemoConfig:
    """Knobs of the demo. `quick` shrinks every stage for CI; the defaults fit 15 minutes on 2 cores."""

    output: Path = field(default=Path("demo-output"), metadata={"help": "output folder"})
    quick: bool = field(
        default=False,
        metadata={
            "help": "shortened run for CI (fewer pairs, steps, epochs); knobs set to other than their defaults keep their values"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of generation, annotators and training"})
    # tiny-photo: the random tiny preset's VAE decodes every latent to about the same colour, so no image-level
    # preference (brightness) can be learned or measured on it; the photo-pretrained preset can.
    pretrained: str = field(
        default="tiny-photo", metadata={"help": "diffusion pipeline: preset name, folder or hub id"}
    )
    images_per_prompt: int = field(
        default=4, metadata={"help": "images per prompt; every 2-combination is a pair"}
    )
    gen_steps: int = field(default=10, metadata={"help": "denoising steps of candidate generation"})
    overlap: int = field(
        default=3, metadata={"help": "distinct simulated annotators per pair (odd: fewer ties)"}
    )
    oracle: str = field(default="brightness", metadata={"help": "the simulated annotators' true preference"})
    error_rates: tuple[float, ...] = field(default=(0.05, 0.15, 0.3), metadata={"help": "one per annotator"})
    max_prompts: int = field(default=0, metadata={"help": "use at most this many curated captions (0 = all)"})
    dpo_steps: int = field(default=300, metadata={"help": "Diffusion-DPO optimizer steps"})
    ddpo_epochs: int = field(default=8, metadata={"help": "DDPO epochs"})
    ddpo_sample_batch: int = field(default=8, metadata={"help": "DDPO images per sampling batch"})
    ddpo_batches_per_epoch: int = field(default=2, metadata={"help": "DDPO sampling batches per epoch"})
    draft_steps: int = field(default=12, metadata={"help": "DRaFT-1 optimizer steps (learned reward)"})
    draft_batch: int = field(default=8, metadata={"help": "DRaFT images per optimizer step"})
    eval_prompts: int = field(
        default=16, metadata={"help": "prompts used by eval (same seeds base vs tuned)"}
    )

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if not 1 <= self.overlap <= len(self.error_rates):
            raise CanvasError(
                f"--overlap {self.overlap}: must be from 1 to the number of simulated annotators "
                f"({len(self.error_rates)}, one per --error_rates value)"
            )
        if self.quick:
            defaults = {f.name: f.default for f in fields(self)}
            for name, value in QUICK.items():
                if getattr(self, name) == defaults[name]:  # what the user set stays as set
                    setattr(self, name, value)


# `--quick`: the knobs a CI run shortens, and to what
QUICK = {
    "images_per_prompt": 3,
    "max_prompts": 10,
    "dpo_steps": 10,
    "ddpo_epochs": 1,
    "ddpo_sample_batch": 4,
    "ddpo_batches_per_epoch": 1,
    "draft_steps": 2,
    "draft_batch": 4,
    "eval_prompts": 4,
}
