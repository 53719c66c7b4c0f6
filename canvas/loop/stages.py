"""The demo's stages, in order; each calls the entry point its own `canvas` command uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from canvas.core.errors import CanvasError
from canvas.loop.config import PROJECT, DemoConfig

Stage = tuple[str, Callable[[], dict[str, Any]]]
# DRaFT's learning rate on the demo's tiny pipeline (tests/rlhf/test_draft_learning.py measures the recipe)
DEMO_DRAFT_LR = 3e-3


def plan(cfg: DemoConfig) -> tuple[list[Stage], Callable[[], None]]:
    """The stage list and a cleanup that stops the Label Studio server if a stage started it."""
    out = cfg.output
    state: dict[str, Any] = {}

    def sample() -> dict[str, Any]:
        from canvas.core.presets.loading import init_preset
        from canvas.core.sample_data import write_sample

        init_preset("tiny", rebuild=False)  # a fresh machine builds it here; a second run reuses it
        summary = write_sample(out / "sample.parquet")
        return {"rows": summary["rows"], "file": str(out / "sample.parquet")}

    def curate() -> dict[str, Any]:
        from canvas.pipelines.curate import run_curation

        report = run_curation([str(out / "sample.parquet")], out / "curate")
        return {
            "input": report["input_count"],
            "kept": report["kept_count"],
            "rejected": report["input_count"] - report["kept_count"],
        }

    def prompts() -> dict[str, Any]:
        return _prompts_from_curated(out / "curate", out / "prompts.txt", cfg.max_prompts)

    def generate() -> dict[str, Any]:
        from canvas.pipelines.generate import run_generation

        summary = run_generation(
            out / "prompts.txt",
            out / "candidates",
            pretrained=cfg.pretrained,
            images_per_prompt=cfg.images_per_prompt,
            steps=cfg.gen_steps,
            seed=cfg.seed,
        )
        return {"pairs": summary["pairs"], "prompts": summary["prompts_kept"]}

    def start_server() -> dict[str, Any]:
        from canvas.labeling.server import LabelStudioServer

        server = LabelStudioServer(out / "labelstudio")
        status = server.start()
        state["server"] = server
        return {"url": status.url, "pid": status.pid, "data_dir": str(server.data_dir)}

    def push() -> dict[str, Any]:
        from canvas.labeling.push import push_candidates

        result = push_candidates(
            out / "candidates", PROJECT, overlap=cfg.overlap, data_dir=out / "labelstudio"
        )
        return {"project_id": result.project_id, "tasks_created": result.created, "url": result.url}

    def annotate() -> dict[str, Any]:
        from canvas.labeling.simulate import SimulatedAnnotator, simulate_annotations
        from canvas.rlhf.rewards import EncodedImageScorer

        annotators = [
            SimulatedAnnotator(
                name=f"annotator{i + 1}", reward=cfg.oracle, error_rate=rate, seed=cfg.seed + i
            )
            for i, rate in enumerate(cfg.error_rates)
        ]
        votes = simulate_annotations(
            None, PROJECT, annotators, EncodedImageScorer, overlap=cfg.overlap, data_dir=out / "labelstudio"
        )
        correct = sum(1 for v in votes if v.choice == v.oracle)
        return {"annotators": len(annotators), "votes": len(votes), "votes_matching_oracle": correct}

    def pull() -> dict[str, Any]:
        from canvas.labeling.pull import pull_preferences

        result = pull_preferences(PROJECT, out / "labels", data_dir=out / "labelstudio")
        return {
            "pairs": result.rows,
            "annotations": result.annotations,
            "rejected": result.rejected,
            "alpha": result.alpha,
        }

    def train_reward() -> dict[str, Any]:
        from canvas.rlhf.reward_config import RewardConfig
        from canvas.rlhf.reward_trainer import RewardTrainer

        summary = RewardTrainer(
            RewardConfig(
                preferences=str(out / "labels" / "preferences.parquet"),
                output_dir=str(out / "reward"),
                overwrite_output_dir=True,  # the demo's own stage folder: a rerun replaces it
                seed=cfg.seed,
            )
        ).train()
        truth = _reward_vs_oracle(out / "candidates" / "candidates.parquet", out / "reward", cfg.oracle)
        return {
            "heldout_accuracy": summary["heldout_accuracy"],
            "heldout_log_loss": summary["heldout_log_loss"],
            "train_pairs": summary["train_pairs"],
            "heldout_pairs": summary["heldout_pairs"],
            **truth,
        }

    def train_dpo() -> dict[str, Any]:
        from canvas.rlhf.dpo_trainer import DiffusionDPOTrainer

        config = dpo_config(cfg, out / "labels" / "preferences.parquet", out / "dpo")
        summary = DiffusionDPOTrainer(config).train()
        return {k: v for k, v in summary.items() if isinstance(v, int | float | str)}

    def train_ddpo() -> dict[str, Any]:
        from canvas.rlhf.ddpo_trainer import DDPOTrainer

        config = ddpo_config(cfg, out / "prompts.txt", out / "reward", out / "ddpo")
        summary = DDPOTrainer(config).train()
        return {k: v for k, v in summary.items() if isinstance(v, int | float | str)}

    def train_draft() -> dict[str, Any]:
        from canvas.rlhf.draft_trainer import DraftTrainer

        config = draft_config(cfg, out / "prompts.txt", out / "reward", out / "draft")
        summary = DraftTrainer(config).train()
        return {k: v for k, v in summary.items() if isinstance(v, int | float | str)}

    def evaluate_both() -> dict[str, Any]:
        from canvas.rlhf.evaluation import evaluate_many

        prompts = (out / "prompts.txt").read_text().splitlines()[: cfg.eval_prompts]
        summaries = evaluate_many(
            cfg.pretrained,
            {method: out / method for method in ("dpo", "ddpo", "draft")},
            prompts,
            {"oracle": cfg.oracle, "learned": str(out / "reward")},
            lambda method, reward_name: out / "eval" / f"{method}-{reward_name}",
            seed=cfg.seed,
            num_inference_steps=cfg.gen_steps,
        )
        results: dict[str, Any] = {}
        for (method, reward_name), summary in summaries.items():
            results[f"{method}_{reward_name}_win_rate"] = summary["win_rate"]
            results[f"{method}_{reward_name}_ci95_low"] = summary["win_rate_ci95"][0]
        return results

    def cleanup() -> None:
        server = state.pop("server", None)
        if server is not None:
            server.stop()
            print("Label Studio server stopped", flush=True)

    stages: list[Stage] = [
        ("sample data", sample),
        ("curate", curate),
        ("prompts", prompts),
        ("generate", generate),
        ("label studio start", start_server),
        ("label push", push),
        ("simulated annotators", annotate),
        ("label pull", pull),
        ("train reward", train_reward),
        ("train dpo", train_dpo),
        ("train ddpo", train_ddpo),
        ("train draft", train_draft),
        ("eval", evaluate_both),
    ]
    return stages, cleanup


# Each training stage's config is built by a function, so tests and benchmarks (bench/bench_rl_efficiency.py)
# train with exactly the demo's settings.
def dpo_config(cfg: DemoConfig, preferences: Path, output_dir: Path) -> Any:
    """The demo's Diffusion-DPO run on the annotators' labels (a `DiffusionDPOConfig`)."""
    from canvas.rlhf.dpo_config import DiffusionDPOConfig

    return DiffusionDPOConfig(
        preferences=str(preferences),
        output_dir=str(output_dir),
        overwrite_output_dir=True,  # the demo's own stage folder: a rerun replaces it
        pretrained=cfg.pretrained,
        max_steps=cfg.dpo_steps,
        train_batch_size=8,
        learning_rate=1e-3,
        checkpointing_steps=max(cfg.dpo_steps // 2, 1),
        seed=cfg.seed,
    )


def draft_config(cfg: DemoConfig, prompts: Path, reward: Path, output_dir: Path) -> Any:
    """The demo's DRaFT-1 run against the learned reward model (a `DraftConfig`)."""
    from canvas.rlhf.draft_config import DraftConfig

    return DraftConfig(
        prompts=str(prompts),
        reward=str(reward),  # the learned reward model, scored with gradients
        output_dir=str(output_dir),
        overwrite_output_dir=True,  # the demo's own stage folder: a rerun replaces it
        pretrained=cfg.pretrained,
        max_steps=cfg.draft_steps,
        train_batch_size=cfg.draft_batch,
        sample_num_steps=cfg.gen_steps,
        learning_rate=DEMO_DRAFT_LR,
        checkpointing_steps=cfg.draft_steps,
        seed=cfg.seed,
    )


# The demo's DDPO LoRA also adapts the UNet's convolutions. On the tiny preset's UNet an attention-only LoRA
# barely moves the policy: 8 epochs of 2 x 8 samples left approx. KL ~1e-7 per epoch, so "tuned" equalled
# base up to a tiny, directionless perturbation and the report's verdict was a coin flip (issue 16: the learned
# reward fell). With the convolutions the first epoch's KL is ~4e-3 (docs/benchmarks.md).
DDPO_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv_out", "conv_in", "conv1", "conv2")


def ddpo_config(cfg: DemoConfig, prompts: Path, reward: Path, output_dir: Path) -> Any:
    """The demo's DDPO run against the learned reward model (a `DDPOConfig`; tests train with it too)."""
    from canvas.rlhf.ddpo_config import DDPOConfig

    samples = cfg.ddpo_sample_batch * cfg.ddpo_batches_per_epoch
    train_batch = min(4, cfg.ddpo_sample_batch)
    return DDPOConfig(
        prompts=str(prompts),
        reward=str(reward),  # the reward model learned from the annotators
        output_dir=str(output_dir),
        overwrite_output_dir=True,  # the demo's own stage folder: a rerun replaces it
        pretrained=cfg.pretrained,
        num_epochs=cfg.ddpo_epochs,
        mixed_precision="no",
        sample_num_steps=cfg.gen_steps,
        sample_batch_size=cfg.ddpo_sample_batch,
        sample_num_batches_per_epoch=cfg.ddpo_batches_per_epoch,
        train_batch_size=train_batch,
        # one optimizer step per epoch, on all its samples (advantages sum to zero over the step, as in
        # ddpo-pytorch's 64-sample steps): on a batch of 4 a step is mostly noise, and Adam moves the LoRA as
        # far on noise as on signal. Measured (demo reproduction): learned reward of fresh samples -1.24 -> 9.90,
        # oracle brightness 0.40 -> 0.53 (win 0.97 / 1.00); per-batch steps: -0.48 / 0.405 (docs/benchmarks.md)
        train_gradient_accumulation_steps=samples // train_batch,
        learning_rate=1e-2,
        train_clip_range=1e-2,
        lora_target_modules=list(DDPO_LORA_TARGETS),
        sample_grid_freq=max(cfg.ddpo_epochs // 2, 1),
        seed=cfg.seed,
    )


def _reward_vs_oracle(candidates: Path, reward_dir: Path, oracle: str) -> dict[str, Any]:
    """How often the learned reward orders each candidate pair as the annotators' true oracle does."""
    import pyarrow.parquet as pq

    from canvas.rlhf.rewards import EncodedImageScorer

    rows = pq.read_table(candidates, columns=["prompt", "image_0", "image_1"]).to_pylist()
    learned, truth = EncodedImageScorer(str(reward_dir)), EncodedImageScorer(oracle)
    prompts = [r["prompt"] for r in rows]
    left, right = [r["image_0"] for r in rows], [r["image_1"] for r in rows]

    def order(scorer: EncodedImageScorer) -> list[bool]:
        return [a > b for a, b in zip(scorer(left, prompts), scorer(right, prompts), strict=True)]

    agree = [x == y for x, y in zip(order(learned), order(truth), strict=True)]
    return {
        "oracle_agreement_all_pairs": sum(agree) / len(agree),
        "oracle": oracle,
    }


def _prompts_from_curated(curated_dir: Path, out: Path, max_prompts: int = 0) -> dict[str, Any]:
    import pyarrow.parquet as pq

    files = sorted((curated_dir / "curated").glob("*.parquet"))
    captions = sorted(
        {c for f in files for c in pq.read_table(f, columns=["caption"]).column("caption").to_pylist() if c}
    )
    if not captions:
        raise CanvasError(f"curation kept no captioned rows in {curated_dir}: nothing to generate from")
    if max_prompts:
        captions = captions[:max_prompts]
    out.write_text("".join(c + "\n" for c in captions))
    return {"prompts": len(captions), "file": str(out)}
