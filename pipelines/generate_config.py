"""Options of `canvas generate`, free of heavy imports so `canvas --help` stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field

from canvas.core.errors import CanvasError


@dataclass
class GenerateConfig:
    """Options of `canvas generate` (one source for the CLI flags and their help)."""

    # str, not Path: a gs://-style path must keep its "//" (Path("gs://b/x") is "gs:/b/x").
    prompts: str = field(
        default="prompts.txt",
        metadata={
            "help": ".txt or .txt.gz (one prompt a line, # comments) or Parquet (its captions); local or gs://-style",
            "required": True,
        },
    )
    output: str = field(
        default="candidates",
        metadata={
            "help": "output folder (local or gs://-style), written atomically; an existing one must be "
            "empty or a previous generate output",
            "required": True,
        },
    )
    pretrained: str = field(
        default="tiny", metadata={"help": "diffusers pipeline: tiny, a folder or a hub id"}
    )
    images_per_prompt: int = field(
        default=2, metadata={"help": "images per prompt; every pair becomes a row"}
    )
    steps: int = field(default=10, metadata={"help": "denoising steps"})
    guidance: float = field(default=5.0, metadata={"help": "classifier-free guidance scale"})
    seed: int = field(default=0, metadata={"help": "base seed; same seed and prompts give the same images"})
    threads: int = field(
        default=0,
        metadata={"help": "torch threads per worker (0: its share of the machine's cores)"},
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "replace an --output folder that is not a previous generate output "
            "(never one holding the prompts file)"
        },
    )

    def __post_init__(self) -> None:
        if self.images_per_prompt < 2:
            raise CanvasError("--images-per-prompt must be at least 2 (a pair needs two images)")
        if self.steps < 1:
            raise CanvasError("--steps must be at least 1")
        if self.guidance < 0:
            raise CanvasError("--guidance must be >= 0")
