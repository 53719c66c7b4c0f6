"""`canvas demo`: the project's main job on the embedded default (tiny presets, sample data, offline).

Stages, each calling the same entry point its own command uses:

    sample data -> curate -> prompts from curated captions -> generate candidate pairs
    -> start Label Studio -> push -> simulated annotators -> pull -> train reward
    -> train DPO -> train DDPO (learned reward) -> train DRaFT (learned reward, its gradient)
    -> eval all three -> report.html

Simulated annotators are Label Studio users acting through the real API with a known noisy oracle
(brightness), so agreement and reward accuracy can be checked against the truth. They are a demo aid:
real annotators label the same project in a browser.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from canvas.loop import stages
from canvas.loop.config import DemoConfig

logger = logging.getLogger(__name__)


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
