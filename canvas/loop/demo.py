"""`canvas demo`: the project's main job on the embedded default (tiny presets, sample data, offline).

Stages, each calling the same entry point its own command uses:

    sample data -> curate -> prompts from curated captions -> generate candidate pairs
    -> start Label Studio -> push -> simulated annotators -> pull -> train reward
    -> train DPO -> train DDPO (learned reward) -> eval both -> report.html

Simulated annotators are Label Studio users acting through the real API with a known noisy oracle
(brightness), so agreement and reward accuracy can be checked against the truth. They are a demo aid:
real annotators label the same project in a browser.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from canvas.errors import CanvasError

logger = logging.getLogger(__name__)

PROJECT = "canvas demo: which image is brighter?"


@dataclass
class DemoConfig:
    """Knobs of the demo. `quick` shrinks every stage for CI; the defaults fit 15 minutes on 2 cores."""

    output: Path = field(default=Path("demo-output"), metadata={"help": "output folder"})
    quick: bool = field(default=False, metadata={"help": "shortened run for CI (fewer pairs, steps, epochs)"})
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
    eval_prompts: int = field(
        default=16, metadata={"help": "prompts used by eval (same seeds base vs tuned)"}
    )

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if self.quick:
            self.images_per_prompt = min(self.images_per_prompt, 3)
            self.max_prompts = 10
            self.dpo_steps = min(self.dpo_steps, 10)
            self.ddpo_epochs = 1
            self.ddpo_sample_batch = 4
            self.ddpo_batches_per_epoch = 1
            self.eval_prompts = min(self.eval_prompts, 4)


@dataclass
class StageLog:
    name: str
    seconds: float
    summary: dict[str, Any]


class DemoRun:
    """Runs the stages in order, prints progress and timings, and keeps what each stage returned."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.out = config.output
        self.stages: list[StageLog] = []
        self.results: dict[str, Any] = {}

    def stage(self, name: str, total: int, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        index = len(self.stages) + 1
        print(f"[{index}/{total}] {name} ...", flush=True)
        start = time.perf_counter()
        summary = fn()
        seconds = time.perf_counter() - start
        self.stages.append(StageLog(name, seconds, summary))
        self.results[name] = summary
        brief = ", ".join(f"{k}={_short(v)}" for k, v in summary.items() if not isinstance(v, dict | list))
        print(f"[{index}/{total}] {name}: done in {seconds:.1f} s  {brief}", flush=True)
        return summary


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    return text if len(text) <= 60 else "..." + text[-57:]


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


def _limit_torch_threads() -> None:
    """One torch thread unless the user set OMP_NUM_THREADS.

    The demo runs torch beside a Label Studio server and Beam on a small machine; with more OpenMP threads
    than free cores, the tiny models' many short kernels spin-wait: generation was measured 30x slower
    with 2 threads on a loaded 2-core machine than with 1.
    """
    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the whole loop; returns the per-stage summaries and timings (also in OUTPUT/demo.json)."""
    from canvas.loop import stages

    cfg = config
    cfg.output.mkdir(parents=True, exist_ok=True)
    _limit_torch_threads()
    run = DemoRun(cfg)
    plan, cleanup = stages.plan(cfg)
    started = time.perf_counter()
    try:
        for name, fn in plan:
            run.stage(name, len(plan), fn)
    finally:
        cleanup()
    total = time.perf_counter() - started
    record = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "stages": [
            {"name": s.name, "seconds": round(s.seconds, 2), "summary": s.summary} for s in run.stages
        ],
        "total_seconds": round(total, 1),
    }
    (cfg.output / "demo.json").write_text(json.dumps(record, indent=2, default=str))
    from canvas.loop.report import write_demo_report

    report = write_demo_report(cfg.output, record)
    print("\nstage timings:")
    for s in run.stages:
        print(f"  {s.name:<28} {s.seconds:7.1f} s")
    print(f"  {'total':<28} {total:7.1f} s")
    print(f"\nreport: {report.resolve()}")
    record["report"] = str(report)
    return record
