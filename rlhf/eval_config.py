"""`EvalConfig`: the knobs of `canvas eval` (base vs base+LoRA, same seeds, one reward)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    lora: str = field(
        default="", metadata={"help": "LoRA folder (canvas train dpo/ddpo/sft output)", "required": True}
    )
    prompts: str = field(
        default="",
        metadata={
            "help": "prompt file: .txt or .txt.gz (one prompt a line, # comments) or a Parquet's caption column",
            "required": True,
        },
    )
    pretrained: str = field(default="tiny", metadata={"help": "preset name, pipeline folder or hub id"})
    reward: str = field(
        default="brightness",
        metadata={"help": "reward-model folder or brightness, jpeg_compressibility, ..."},
    )
    output_dir: str = field(
        default="eval-output", metadata={"help": "output folder", "aliases": ["--output"]}
    )
    seed: int = field(default=0, metadata={"help": "prompt i is sampled with seed SEED+i"})
    num_inference_steps: int = field(default=20, metadata={"help": "inference steps", "aliases": ["--steps"]})
    guidance_scale: float = field(default=7.5, metadata={"help": "classifier-free guidance"})
    batch_size: int = field(default=16, metadata={"help": "images per pipeline call"})
