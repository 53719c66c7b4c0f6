"""RL methods side by side: reward gain per CPU-minute and per reward query, DDPO vs DRaFT vs Diffusion-DPO.

The demo's loop without Label Studio: `canvas.loop.stages.plan(DemoConfig(...))`'s own stages make the
sample data, curate it, write the prompts and generate candidate pairs from the demo's base model
(`tiny-photo`); the demo's three simulated annotators (the same oracle, error rates and seeds) judge every
pair directly, the majority vote becomes the label (as `canvas label pull` aggregates them); the demo's
"train reward" stage learns the reward model. Then each method trains from the same base with the demo's
own settings (`dpo_config`, `ddpo_config`, `draft_config`; the trainers' end-of-run evaluation is switched
off so it is not billed as training): Diffusion-DPO on the labels, DDPO and DRaFT-1 against the learned
reward. Every tuned model is judged as the demo's eval stage judges it (`canvas.rlhf.evaluation.evaluate`:
the same evaluation prompts and seeds, so base and tuned images share their noise, and every method sees
the same base images), by the learned reward and by the hidden oracle (brightness).

Per method: reward gain (tuned mean - base mean) by each judge, CPU seconds of training (user + system of
this process and its children, `resource.getrusage`), reward queries (DDPO: samples scored; DRaFT: images
scored with gradients; DPO: labelled pairs it trained on, each behind 3 annotator votes), gain per
CPU-minute and per 100 reward queries; then each figure as a ratio against DPO's in the same run, and
DRaFT's against DDPO's (null where the baseline's figure is not positive: a ratio against no gain means
nothing). The reward model's own cost (its labelled pairs and CPU seconds) is printed once: DDPO and DRaFT
both build on it.

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/bench_rl_efficiency.py [--quick] [--seed 0]
       [--eval-prompts 16] [--output DIR] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

METHODS = ("dpo", "ddpo", "draft")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its waited-for children so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def simulated_labels(cfg: Any, candidates: Path, output: Path) -> dict[str, Any]:
    """The demo's simulated annotators judge every candidate pair (overlap = all of them); the majority vote
    is the label, a split vote a tie (`canvas.labeling.quality.majority`), written as Pick-a-Pic rows."""
    import pyarrow.parquet as pq

    from canvas.labeling.quality import majority
    from canvas.labeling.schema import LABELS
    from canvas.labeling.simulate import SimulatedAnnotator
    from canvas.rlhf.preferences import write_preferences
    from canvas.rlhf.rewards import EncodedImageScorer

    annotators = [
        SimulatedAnnotator(name=f"annotator{i + 1}", reward=cfg.oracle, error_rate=rate, seed=cfg.seed + i)
        for i, rate in enumerate(cfg.error_rates)
    ]
    rows = pq.read_table(candidates, columns=["pair_id", "prompt", "image_0", "image_1"]).to_pylist()
    scorer = EncodedImageScorer(cfg.oracle)
    prompts = [r["prompt"] for r in rows]
    left = scorer([r["image_0"] for r in rows], prompts)
    right = scorer([r["image_1"] for r in rows], prompts)
    records, votes_right = [], 0
    for row, r0, r1 in zip(rows, left, right, strict=True):
        votes = [a.judge(row["pair_id"], float(r0), float(r1))[0] for a in annotators]
        votes_right += sum(
            v == a.oracle(float(r0), float(r1)) for v, a in zip(votes, annotators, strict=True)
        )
        label_0, label_1 = LABELS[majority(votes)[0]]
        records.append(
            {"caption": row["prompt"], "jpg_0": row["image_0"], "jpg_1": row["image_1"], "label_0": label_0, "label_1": label_1}
        )  # fmt: skip
    write_preferences(output / "preferences.parquet", records)
    return {
        "pairs": len(records),
        "votes": len(records) * len(annotators),
        "votes_matching_oracle": votes_right,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick demo's settings (CI sizes)")
    parser.add_argument("--seed", type=int, default=0, help="the demo's seed: data, labels, training, eval")
    parser.add_argument("--eval-prompts", type=int, default=0, help="evaluation prompts (0 = the demo's)")
    parser.add_argument("--output", default="", help="work folder (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from canvas.loop.config import DemoConfig
    from canvas.loop.stages import ddpo_config, dpo_config, draft_config, plan
    from canvas.rlhf.ddpo_trainer import DDPOTrainer
    from canvas.rlhf.dpo_trainer import DiffusionDPOTrainer
    from canvas.rlhf.draft_trainer import DraftTrainer
    from canvas.rlhf.evaluation import evaluate

    tmp = None if args.output else tempfile.TemporaryDirectory()
    out = Path(args.output or tmp.name)
    cfg = DemoConfig(output=out, quick=args.quick, seed=args.seed)
    if args.eval_prompts:
        cfg.eval_prompts = args.eval_prompts
    stages = dict(plan(cfg)[0])
    started = time.monotonic()
    for name in ("sample data", "curate", "prompts", "generate"):
        print(f"{name}: {json.dumps(stages[name]())}", flush=True)
    print(
        f"labels: {json.dumps(simulated_labels(cfg, out / 'candidates' / 'candidates.parquet', out / 'labels'))}"
    )
    c0 = cpu_seconds()
    reward = stages["train reward"]()
    reward_cpu = cpu_seconds() - c0
    print(
        f"reward model: {reward['train_pairs']} labelled pairs (+{reward['heldout_pairs']} held out), "
        f"held-out accuracy {reward['heldout_accuracy']:.3f}, agrees with the oracle on "
        f"{reward['oracle_agreement_all_pairs']:.3f} of all pairs, {reward_cpu:.1f} CPU s",
        flush=True,
    )

    prompts, labels, learned = out / "prompts.txt", out / "labels" / "preferences.parquet", out / "reward"
    runs: dict[str, tuple[Any, Any]] = {
        "dpo": (DiffusionDPOTrainer, dpo_config(cfg, labels, out / "dpo")),
        "ddpo": (DDPOTrainer, replace(ddpo_config(cfg, prompts, learned, out / "ddpo"), eval_num_samples=0)),
        "draft": (
            DraftTrainer,
            replace(draft_config(cfg, prompts, learned, out / "draft"), eval_num_samples=0),
        ),
    }
    eval_prompts = prompts.read_text().splitlines()[: cfg.eval_prompts]
    rows: dict[str, dict[str, float]] = {}
    for method, (trainer_cls, config) in runs.items():
        c0, w0 = cpu_seconds(), time.monotonic()
        summary = trainer_cls(config).train()
        cpu, wall = cpu_seconds() - c0, time.monotonic() - w0
        if method == "dpo":
            queries = summary["train_pairs"]
        elif method == "ddpo":
            queries = config.num_epochs * config.sample_batch_size * config.sample_num_batches_per_epoch
        else:
            queries = summary["reward_queries"]
        row = {"cpu_s": cpu, "wall_s": wall, "queries": queries}
        for judge, judge_reward in (("learned", str(learned)), ("oracle", cfg.oracle)):
            e = evaluate(
                cfg.pretrained, out / method, eval_prompts, judge_reward, out / "eval" / f"{method}-{judge}",
                seed=cfg.seed, num_inference_steps=cfg.gen_steps,
            )  # fmt: skip
            gain = e["tuned_mean_reward"] - e["base_mean_reward"]
            row |= {
                f"{judge}_base": e["base_mean_reward"], f"{judge}_tuned": e["tuned_mean_reward"],
                f"{judge}_gain": gain, f"{judge}_win": e["win_rate"],
                f"{judge}_per_cpu_min": gain / (cpu / 60), f"{judge}_per_100_queries": gain / queries * 100,
            }  # fmt: skip
        rows[method] = row
        print(f"{method} done: {json.dumps({k: round(v, 4) for k, v in row.items()})}", flush=True)

    print(
        f"\nDemoConfig(quick={cfg.quick}, seed={cfg.seed}): base {cfg.pretrained}, {cfg.gen_steps} DDIM steps, "
        f"{len(eval_prompts)} evaluation prompts (seeds {cfg.seed}..{cfg.seed + len(eval_prompts) - 1}); "
        f"reward model: {reward['train_pairs']} labelled pairs, {reward_cpu:.1f} CPU s (shared by DDPO and DRaFT)"
    )
    header = (
        f"{'method':6} {'learned base->tuned (gain, win)':34} {'oracle base->tuned (gain, win)':32} "
        f"{'CPU s':>7} {'queries':>7} {'learned/CPU-min':>15} {'learned/100 q':>13} "
        f"{'oracle/CPU-min':>14} {'oracle/100 q':>12}"
    )
    print(header)
    for method, r in rows.items():
        learned_cell = f"{r['learned_base']:.3f}->{r['learned_tuned']:.3f} ({r['learned_gain']:+.3f}, {r['learned_win']:.2f})"
        oracle_cell = f"{r['oracle_base']:.4f}->{r['oracle_tuned']:.4f} ({r['oracle_gain']:+.4f}, {r['oracle_win']:.2f})"
        print(
            f"{method:6} {learned_cell:34} {oracle_cell:32} {r['cpu_s']:7.1f} {r['queries']:7d} "
            f"{r['learned_per_cpu_min']:+15.3f} {r['learned_per_100_queries']:+13.3f} "
            f"{r['oracle_per_cpu_min']:+14.4f} {r['oracle_per_100_queries']:+12.4f}"
        )
    print("ratios (same run; the baseline after the slash):")
    keys = ("learned_gain", "oracle_gain", "cpu_s", "queries", "learned_per_cpu_min", "learned_per_100_queries",
            "oracle_per_cpu_min", "oracle_per_100_queries")  # fmt: skip
    for method, baseline in (("ddpo", "dpo"), ("draft", "dpo"), ("draft", "ddpo")):
        # a ratio against a baseline figure <= 0 (no gain) would flip or explode: printed as null
        base = rows[baseline]
        ratios = {k: round(rows[method][k] / base[k], 2) if base[k] > 0 else None for k in keys}
        print(f"{method}/{baseline}: {json.dumps(ratios)}")
    print(f"wall {time.monotonic() - started:.0f} s, CPU {cpu_seconds():.0f} s in all", flush=True)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
