"""`DDPOConfig`: every knob of DDPO (Black et al. 2023), one help text each, usable as CLI flags.

Defaults follow trl's last `DDPOConfig` (trl 0.23, before trl deleted DDPO in 0.24) and kvablack's
ddpo-pytorch `config/base.py`; each help text says where its default comes from ("trl" / "ddpo-pytorch",
both named when they agree) and where we differ, why. trl fields left out: `exp_name`, `run_name`,
`log_with`, `tracker_*`, `accelerator_kwargs`, `project_kwargs`, `push_to_hub` (we always log to
`metrics.jsonl` + TensorBoard and never reach a hub), `train_use_8bit_adam` (bitsandbytes is not a
dependency), `async_reward_computation` / `max_workers` (rewards here are cheap or batched on the GPU).

Run, checkpoint and resume knobs use the names every canvas trainer shares (transformers' / diffusers'):
`learning_rate`, `checkpointing_steps`, `checkpoints_total_limit`, `resume_from_checkpoint`; trl's
`train_learning_rate`, `save_freq`, `num_checkpoint_limit`, `resume_from` still work (`DEPRECATED_KEYS`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from canvas.core.errors import CanvasError
from canvas.rlhf.lora_training_config import DEFAULT_TARGET_MODULES
from canvas.rlhf.run_knobs import (
    LR_SCHEDULERS,
    lr_factor,
    overwrite_output_dir_field,
    resume_from_checkpoint_field,
    tensorboard_field,
)

log = logging.getLogger(__name__)

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")
TRAIN_TIMESTEP_CHOICES = ("random", "earliest")
ADVANTAGE_BASELINES = ("none", "predicted_x0")
# Ready-made `--config` files: rlhf/recipes/*.yaml (each says what it is for and why its knobs differ).
RECIPES_DIR = Path(__file__).with_name("recipes")


@dataclass
class DDPOConfig:
    # trl's names for the shared knobs: still accepted as flags and YAML keys, with a warning
    DEPRECATED_KEYS: ClassVar[dict[str, str]] = {
        "save_freq": "checkpointing_steps",
        "num_checkpoint_limit": "checkpoints_total_limit",
        "resume_from": "resume_from_checkpoint",
        "train_learning_rate": "learning_rate",
    }

    # ---- data, reward, model, output (ours: the CLI's required inputs) ----
    prompts: str | None = field(
        default=None,
        metadata={
            "help": "Prompt file: a .txt (one prompt a line) or a Parquet with a `caption` (or `prompt`) "
            "column. Required. (ddpo-pytorch and trl take a prompt function instead.)"
        },
    )
    reward: str = field(
        default="jpeg_compressibility",
        metadata={
            "help": "Reward: a built-in name (jpeg_compressibility, jpeg_incompressibility, brightness, or any "
            "registered with canvas.rlhf.rewards.register_reward) or a reward-model folder from `canvas train reward`. "
            "Default: ddpo-pytorch's reward_fn."
        },
    )
    output_dir: str = field(
        default="ddpo-output",
        metadata={
            "aliases": ["--output"],
            "help": "Run folder: LoRA (diffusers format), metrics.jsonl, summary.json, tensorboard/, "
            "samples/, checkpoints/. (trl/ddpo-pytorch: logdir 'logs'.)",
        },
    )
    pretrained: str = field(
        default="tiny",
        metadata={
            "help": "Base pipeline: `tiny` (offline preset), a diffusers folder or a hub id of an SD-1.5-style "
            "model. (ddpo-pytorch: runwayml/stable-diffusion-v1-5, which is not reachable offline.)"
        },
    )
    seed: int = field(default=0, metadata={"help": "Random seed. Default: trl (ddpo-pytorch uses 42)."})

    # ---- run length, checkpoints, precision ----
    num_epochs: int = field(
        default=100,
        metadata={
            "aliases": ["--epochs"],
            "help": "Epochs; one epoch = sample a batch of images, score them, train on them. Default: trl's and ddpo-pytorch's.",
        },
    )
    checkpointing_steps: int = field(
        default=1,
        metadata={
            "help": "Save a checkpoint every N epochs (DDPO's step is an epoch), and always after the last. "
            "Default: trl's save_freq (ddpo-pytorch: 20)."
        },
    )
    checkpoints_total_limit: int = field(
        default=5,
        metadata={
            "help": "Checkpoints kept (oldest removed first). Default: trl's and ddpo-pytorch's num_checkpoint_limit."
        },
    )
    resume_from_checkpoint: str | None = resume_from_checkpoint_field()
    overwrite_output_dir: bool = overwrite_output_dir_field()
    mixed_precision: str = field(
        default="fp16",
        metadata={
            "help": "no, fp16 or bf16: frozen weights in that dtype, LoRA in fp32, autocast. Default: trl's and ddpo-pytorch's. "
            "Without CUDA, fp16 falls back to no (with a warning).",
            "choices": list(MIXED_PRECISION_CHOICES),
        },
    )
    allow_tf32: bool = field(
        default=True,
        metadata={"help": "Allow TF32 matmuls on Ampere+ GPUs. Default: trl's and ddpo-pytorch's."},
    )

    # ---- LoRA ----
    lora_rank: int = field(
        default=4,
        metadata={
            "help": "LoRA rank on the UNet attention projections. Default: the rank trl and ddpo-pytorch used."
        },
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={
            "help": "UNet modules that get LoRA. Default: the attention projections, as trl and ddpo-pytorch; add e.g. conv_out "
            "to let the adapter shift the UNet's output directly."
        },
    )
    lora_alpha: float | None = field(
        default=None, metadata={"help": "LoRA alpha; None = rank (scale 1, as trl and ddpo-pytorch). "}
    )
    init_lora: str | None = field(
        default=None,
        metadata={"help": "Start from a saved UNet LoRA folder (e.g. an SFT or DPO run). (ours)"},
    )

    # ---- sampling ----
    sample_num_steps: int = field(
        default=50, metadata={"help": "DDIM steps per sample. Default: trl's and ddpo-pytorch's."}
    )
    sample_eta: float = field(
        default=1.0,
        metadata={
            "help": "DDIM eta (> 0: the noise std is eta * sigma_t; 1.0 = DDPM-like). Default: trl's and ddpo-pytorch's.",
        },
    )
    sample_guidance_scale: float = field(
        default=5.0,
        metadata={"help": "Classifier-free guidance weight (1.0 = none). Default: trl's and ddpo-pytorch's."},
    )
    sample_merged_lora: bool = field(
        default=False,
        metadata={
            "help": "Sample with the LoRA folded into the base weights (restored bit for bit after): one "
            "operation per adapted layer instead of three, 0.76x the time per sampled latent on CPU "
            "(tiny-photo). The sampled log-probs then differ from the training pass by float rounding "
            "(~1e-6 in fp32, nothing next to a clip range of 0.05; in fp16 the merged weight is rounded "
            "to fp16, too coarse for the paper's 1e-4). False: as trl and ddpo-pytorch. (ours)"
        },
    )
    sample_batch_size: int = field(
        default=1, metadata={"help": "Sampling batch size per GPU. Default: trl's and ddpo-pytorch's."}
    )
    sample_num_batches_per_epoch: int = field(
        default=2,
        metadata={
            "help": "Sampling batches per epoch; samples per epoch = this * sample_batch_size * GPUs. "
            "Default: trl's and ddpo-pytorch's."
        },
    )
    negative_prompt: str = field(
        default="",
        metadata={
            "help": "Prompt of the unconditional branch of guidance. Default: trl's and ddpo-pytorch's ('' = empty prompt)."
        },
    )

    # ---- training ----
    train_batch_size: int = field(
        default=1, metadata={"help": "Training batch size per GPU. Default: trl's and ddpo-pytorch's."}
    )
    learning_rate: float = field(
        default=3e-4,
        metadata={"help": "AdamW learning rate. Default: trl's and ddpo-pytorch's train_learning_rate."},
    )
    lr_scheduler: str = field(
        default="constant",
        metadata={
            "help": "Learning-rate schedule over the run's optimizer steps: constant (trl and ddpo-pytorch), cosine or linear "
            "(decay to 0 at the last step, as diffusers' get_scheduler names them). (ours)"
        },
    )
    lr_warmup_steps: int = field(
        default=0, metadata={"help": "Optimizer steps of linear warm-up before the schedule. (ours)"}
    )
    train_adam_beta1: float = field(
        default=0.9, metadata={"help": "AdamW beta1. Default: trl's and ddpo-pytorch's."}
    )
    train_adam_beta2: float = field(
        default=0.999, metadata={"help": "AdamW beta2. Default: trl's and ddpo-pytorch's."}
    )
    train_adam_weight_decay: float = field(
        default=1e-4, metadata={"help": "AdamW weight decay. Default: trl's and ddpo-pytorch's."}
    )
    train_adam_epsilon: float = field(
        default=1e-8, metadata={"help": "AdamW epsilon. Default: trl's and ddpo-pytorch's."}
    )
    train_gradient_accumulation_steps: int = field(
        default=1,
        metadata={
            "help": "Training batches per optimizer step. Gradients also accumulate over the trained timesteps "
            "of a batch (one optimizer step per batch, not per timestep). Default: trl's and ddpo-pytorch's."
        },
    )
    train_max_grad_norm: float = field(
        default=1.0, metadata={"help": "Gradient-norm clip. Default: trl's and ddpo-pytorch's."}
    )
    train_timesteps_per_forward: int = field(
        default=1,
        metadata={
            "help": "Trained timesteps of a batch stacked into one UNet forward and backward: the same "
            "gradient up to float rounding, k times the activations. On CPU a tiny UNet's calls are small, "
            "and 4 per call took 0.86x the time per latent of 1 (docs/benchmarks.md). 1: a call per "
            "timestep, as trl and ddpo-pytorch. (ours)"
        },
    )
    train_num_inner_epochs: int = field(
        default=1,
        metadata={
            "help": "Passes over each epoch's samples (PPO inner epochs). Default: trl's and ddpo-pytorch's."
        },
    )
    train_cfg: bool = field(
        default=True,
        metadata={
            "help": "Use classifier-free guidance in the training pass too (same scale). Default: trl's and ddpo-pytorch's."
        },
    )
    train_adv_clip_max: float = field(
        default=5.0,
        metadata={"help": "Advantages are clipped to [-this, this]. Default: trl's and ddpo-pytorch's."},
    )
    train_clip_range: float = field(
        default=1e-4,
        metadata={"help": "PPO clip range of the log-prob ratio. Default: trl's and ddpo-pytorch's."},
    )
    train_timestep_fraction: float = field(
        default=1.0,
        metadata={
            "help": "Fraction of each trajectory's timesteps trained on (which: train_timesteps). Default: trl's and ddpo-pytorch's."
        },
    )
    train_advantage_top_fraction: float = field(
        default=1.0,
        metadata={
            "help": "Train only this fraction of an epoch's (sample, step) pairs: those with the largest "
            "|advantage|, the rest left out of the loss (their terms are the smallest; the kept ones keep "
            "their weights). With advantage_baseline a late step's residual is small: on the JPEG recipe the "
            "kept half held 91-97 percent of the squared advantages, an epoch took ~9 s instead of ~12, and "
            "~205 s of training reached +21.1 to +22.4 percent against +20.2 / +20.9 training every pair "
            "(0.3: less; docs/benchmarks.md). 1: every pair, as trl and ddpo-pytorch. (ours)"
        },
    )
    train_timesteps: str = field(
        default="random",
        metadata={
            "help": "Which timesteps train_timestep_fraction keeps: random (a new subset per sample and inner "
            "epoch, as trl and ddpo-pytorch) or earliest (the noisiest steps, where most of a sample's reward variance is "
            "decided on small models; docs/benchmarks.md). (ours)"
        },
    )
    train_earliest_epochs: int | None = field(
        default=None,
        metadata={
            "help": "The epochs that train only train_timestep_fraction of the steps (with train_timesteps: "
            "earliest, the first ones); later epochs train every step. A curriculum: the cheap early steps, "
            "where most of the reward is decided, first, then the texture the later steps set. None: every "
            "epoch. (ours)"
        },
    )

    # ---- advantages ----
    per_prompt_stat_tracking: bool = field(
        default=True,
        metadata={
            "help": "Normalise rewards per prompt (rolling buffer) instead of per batch. Default: ddpo-pytorch "
            "(trl: False)."
        },
    )
    per_prompt_stat_tracking_buffer_size: int = field(
        default=16, metadata={"help": "Rewards kept per prompt. Default: trl's and ddpo-pytorch's."}
    )
    per_prompt_stat_tracking_min_count: int = field(
        default=16,
        metadata={
            "help": "Rewards a prompt needs before its own stats replace the batch's. Default: trl's and ddpo-pytorch's."
        },
    )

    advantage_baseline: str = field(
        default="none",
        metadata={
            "help": "none: every step of a trajectory shares its reward's advantage (trl and ddpo-pytorch). predicted_x0: step "
            "k's advantage is the reward minus a per-step linear fit on the reward of the sampler's predicted "
            "clean image before step k, a baseline of the state there: unbiased (up to fitting the coefficient "
            "on the batch, as the batch mean is), and it removes what earlier steps decided, most of a late "
            "step's noise. Batch-normalised; not with per_prompt_stat_tracking. (ours)"
        },
    )
    advantage_baseline_every: int = field(
        default=1,
        metadata={
            "help": "With advantage_baseline: compute the value every N steps; the steps between use the latest "
            "one (a baseline of an earlier state is still unbiased). Each value costs a VAE decode and a reward "
            "call per sample, about as much as a UNet call on small models. (ours)"
        },
    )

    advantage_baseline_start_epoch: int = field(
        default=0,
        metadata={
            "help": "With advantage_baseline: the epochs before this one (0-based) use the batch-normalised "
            "reward, later ones the baseline. Why: with the curriculum's first epochs training only the "
            "first steps, whose values track the final reward poorly (corr 0.15-0.67 for steps 0-5 on the "
            "JPEG recipe), the values cost seconds and the run dipped there; from epoch 8 on: +17.9 percent in "
            "288 s against +17.5 percent in 312 s (docs/benchmarks.md). 0: every epoch. (ours)"
        },
    )

    # ---- what the run shows (ours) ----
    sample_grid_freq: int = field(
        default=10, metadata={"help": "Epochs between sample-grid PNGs (samples/epoch-N.png); 0 = never."}
    )
    sample_grid_size: int = field(default=8, metadata={"help": "Images in each sample grid."})
    tensorboard: bool = tensorboard_field()
    eval_num_samples: int = field(
        default=8,
        metadata={
            "help": "Fresh samples scored at the end with and without the LoRA (same noise) for summary.json; "
            "0 = skip."
        },
    )

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise CanvasError(message)

        need(
            self.mixed_precision in MIXED_PRECISION_CHOICES,
            f"mixed_precision must be one of {MIXED_PRECISION_CHOICES}",
        )
        need(
            self.num_epochs >= 1 and self.checkpointing_steps >= 1,
            "num_epochs and checkpointing_steps must be >= 1",
        )
        need(self.sample_eta > 0, "sample_eta must be > 0: DDPO needs a stochastic sampler (log-probs)")
        need(self.sample_num_steps >= 1, "sample_num_steps must be >= 1")
        need(0 < self.train_timestep_fraction <= 1, "train_timestep_fraction must be in (0, 1]")
        need(
            self.train_timesteps_per_forward >= 1,
            f"train_timesteps_per_forward must be >= 1, got {self.train_timesteps_per_forward}",
        )
        need(
            self.train_timesteps in TRAIN_TIMESTEP_CHOICES,
            f"train_timesteps must be one of {', '.join(TRAIN_TIMESTEP_CHOICES)}, got {self.train_timesteps!r}",
        )
        need(
            self.train_earliest_epochs is None or self.train_earliest_epochs >= 0,
            f"train_earliest_epochs must be >= 0, got {self.train_earliest_epochs}",
        )
        need(
            min(self.sample_batch_size, self.sample_num_batches_per_epoch, self.train_batch_size) >= 1,
            "batch sizes and sample_num_batches_per_epoch must be >= 1",
        )
        samples = self.sample_batch_size * self.sample_num_batches_per_epoch
        need(
            samples % self.train_batch_size == 0,
            f"samples per epoch per GPU ({samples}) must be a multiple of train_batch_size ({self.train_batch_size})",
        )
        need(
            (samples // self.train_batch_size) % self.train_gradient_accumulation_steps == 0,
            f"training batches per epoch ({samples // self.train_batch_size}) must be a multiple of "
            f"train_gradient_accumulation_steps ({self.train_gradient_accumulation_steps}): an epoch ends on an "
            "optimizer step",
        )
        need(
            self.per_prompt_stat_tracking_min_count <= self.per_prompt_stat_tracking_buffer_size,
            "per_prompt_stat_tracking_min_count must be <= per_prompt_stat_tracking_buffer_size",
        )
        need(
            self.advantage_baseline in ADVANTAGE_BASELINES,
            f"advantage_baseline must be one of {', '.join(ADVANTAGE_BASELINES)}, got {self.advantage_baseline!r}",
        )
        need(self.advantage_baseline_every >= 1, "advantage_baseline_every must be >= 1")
        need(self.advantage_baseline_start_epoch >= 0, "advantage_baseline_start_epoch must be >= 0")
        need(
            not (self.per_prompt_stat_tracking and self.advantage_baseline != "none"),
            "advantage_baseline needs per_prompt_stat_tracking: false (the baseline replaces the prompt's mean)",
        )
        need(
            0 < self.train_advantage_top_fraction <= 1,
            f"train_advantage_top_fraction must be in (0, 1], got {self.train_advantage_top_fraction}",
        )
        need(self.train_clip_range > 0 and self.train_adv_clip_max > 0, "clip ranges must be > 0")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(
            self.lr_scheduler in LR_SCHEDULERS,
            f"lr_scheduler must be one of {', '.join(LR_SCHEDULERS)}, got {self.lr_scheduler!r}",
        )
        need(self.lr_warmup_steps >= 0, f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")
        if not self.train_cfg and self.sample_guidance_scale > 1:
            # Allowed (ddpo-pytorch allows it), but rarely meant: worth a line before hours of training.
            log.warning(
                "train_cfg is false with sample_guidance_scale %s: the PPO ratio divides the unguided policy's "
                "probability by the guided sampler's, so it starts away from 1 and clipping cuts most updates; "
                "set train_cfg true, or sample_guidance_scale 1.0",
                self.sample_guidance_scale,
            )

    @property
    def optimizer_steps_per_epoch(self) -> int:
        """Optimizer steps one epoch makes (every process makes the same)."""
        batches = self.sample_batch_size * self.sample_num_batches_per_epoch // self.train_batch_size
        return self.train_num_inner_epochs * batches // self.train_gradient_accumulation_steps

    def lr_factor(self, step: int) -> float:
        """Multiplier of `learning_rate` for optimizer step `step` (0-based) of the run."""
        total = self.num_epochs * self.optimizer_steps_per_epoch
        return lr_factor(step, self.lr_warmup_steps, total, self.lr_scheduler)

    @property
    def num_train_timesteps(self) -> int:
        """Timesteps trained per trajectory (at least one)."""
        return max(1, int(self.sample_num_steps * self.train_timestep_fraction))

    def train_timesteps_in(self, epoch: int) -> int:
        """Timesteps trained per trajectory in `epoch` (0-based): all of them once train_earliest_epochs are over."""
        over = self.train_earliest_epochs is not None and epoch >= self.train_earliest_epochs
        return self.sample_num_steps if over else self.num_train_timesteps
