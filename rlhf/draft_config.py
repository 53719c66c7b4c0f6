"""`DraftConfig`: every knob of DRaFT / AlignProp reward-gradient fine-tuning, one help text each (the CLI's flags).

DRaFT (Clark et al. 2023, "Directly Fine-Tuning Diffusion Models on Differentiable Rewards") samples an
image with DDIM, decodes it with the VAE, scores it with a differentiable reward and backpropagates
`-reward` into a LoRA on the UNet. DRaFT-K keeps the graph of only the last K denoising steps (K = 1 is
the paper's recommended setting; K = sample_num_steps is full backpropagation, AlignProp's setting
(Prabhudesai et al. 2023) when paired with gradient checkpointing). DRaFT-LV (`lv_draws` > 0) re-noises
the finished image n times at the last timestep and denoises each copy with gradients: lower-variance
gradients for n extra reward queries.

The reward must be differentiable in the pixels: `brightness` or a reward-model folder from `canvas train
reward` (CLIP features + head, preprocessed in torch). JPEG size is not: use `canvas train ddpo` for it.
Run knobs share the names of every canvas trainer (`canvas.rlhf.run_knobs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from canvas.core.errors import CanvasError
from canvas.rlhf.lora_training_config import DEFAULT_TARGET_MODULES
from canvas.rlhf.run_knobs import overwrite_output_dir_field, resume_from_checkpoint_field, tensorboard_field


@dataclass
class DraftConfig:
    DEPRECATED_KEYS: ClassVar[dict[str, str]] = {}

    # ---- data, reward, model, output ----
    prompts: str | None = field(
        default=None,
        metadata={
            "help": "Prompt file: a .txt (one prompt a line) or a Parquet with a caption column. Required."
        },
    )
    reward: str = field(
        default="brightness",
        metadata={
            "help": "Differentiable reward: 'brightness' or a reward-model folder from `canvas train reward`. "
            "JPEG size is not differentiable (use `canvas train ddpo`)."
        },
    )
    output_dir: str = field(
        default="draft-output",
        metadata={
            "aliases": ["--output"],
            "help": "Run folder: LoRA (diffusers format), metrics.jsonl, summary.json, tensorboard/, checkpoints/.",
        },
    )
    pretrained: str = field(
        default="tiny",
        metadata={"help": "Base pipeline: a preset name, a diffusers folder or an SD-1.5 hub id."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the LoRA init, prompts and noise of every step."})

    # ---- DRaFT ----
    draft_k: int = field(
        default=1,
        metadata={
            "help": "K: backpropagate through the last K denoising steps (1 = DRaFT-1, the paper's choice; "
            "sample_num_steps = full backpropagation, as AlignProp)."
        },
    )
    lv_draws: int = field(
        default=0,
        metadata={
            "help": "DRaFT-LV: re-noise the finished image this many times at the last timestep and denoise "
            "each with gradients (0 = plain DRaFT-K; the paper uses 2). Needs draft_k 1."
        },
    )
    gradient_checkpointing: bool = field(
        default=True,
        metadata={
            "help": "Recompute UNet activations in the backward pass (memory for compute; needed for large K)."
        },
    )

    # ---- sampling ----
    sample_num_steps: int = field(default=50, metadata={"help": "DDIM steps per sample."})
    sample_eta: float = field(default=0.0, metadata={"help": "DDIM eta (0 = deterministic DDIM, as DRaFT)."})
    guidance_scale: float = field(
        default=7.5,
        metadata={"help": "Classifier-free guidance weight (1.0 = none), also in the gradient steps."},
    )
    negative_prompt: str = field(default="", metadata={"help": "Prompt of guidance's unconditional branch."})

    # ---- optimisation ----
    max_steps: int = field(default=200, metadata={"help": "Optimizer steps."})
    train_batch_size: int = field(
        default=4, metadata={"help": "Images sampled and scored per micro-batch per process."}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimizer step."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the LoRA."})
    adam_weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip (0 = off)."})
    mixed_precision: Literal["no", "fp16", "bf16"] = field(
        default="no",
        metadata={
            "help": "Frozen weights in this dtype (LoRA stays fp32). Without CUDA, fp16 falls back to no."
        },
    )

    # ---- LoRA ----
    lora_rank: int = field(default=4, metadata={"help": "LoRA rank on the UNet."})
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA alpha (None = rank)."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={"help": "UNet modules that get a LoRA (the attention projections)."},
    )
    init_lora: str | None = field(default=None, metadata={"help": "Start from this saved UNet LoRA folder."})

    # ---- logging, evaluation, checkpoints ----
    checkpointing_steps: int = field(
        default=50, metadata={"help": "Save a checkpoint every N optimizer steps, and always after the last."}
    )
    checkpoints_total_limit: int = field(
        default=3, metadata={"help": "Checkpoints kept (oldest removed first)."}
    )
    resume_from_checkpoint: str | None = resume_from_checkpoint_field()
    overwrite_output_dir: bool = overwrite_output_dir_field()
    tensorboard: bool = tensorboard_field()
    eval_num_samples: int = field(
        default=8,
        metadata={
            "help": "Fresh samples scored at the end with and without the LoRA (same noise, a seed no step "
            "used) for summary.json; 0 = skip."
        },
    )

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise CanvasError(message)

        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(self.sample_num_steps >= 1, "sample_num_steps must be >= 1")
        need(
            1 <= self.draft_k <= self.sample_num_steps,
            f"draft_k must be in 1..sample_num_steps ({self.sample_num_steps}), got {self.draft_k}",
        )
        need(self.lv_draws >= 0, "lv_draws must be >= 0")
        need(self.lv_draws == 0 or self.draft_k == 1, "lv_draws > 0 (DRaFT-LV) needs draft_k 1")
        need(self.sample_eta >= 0, "sample_eta must be >= 0")
        need(
            min(
                self.max_steps,
                self.train_batch_size,
                self.gradient_accumulation_steps,
                self.checkpointing_steps,
            )
            >= 1,
            "max_steps, train_batch_size, gradient_accumulation_steps and checkpointing_steps must be >= 1",
        )
        need(self.lora_rank >= 1, f"lora_rank must be >= 1, got {self.lora_rank}")
        need(self.eval_num_samples >= 0, "eval_num_samples must be >= 0")
        self.lora_target_modules = list(self.lora_target_modules)
