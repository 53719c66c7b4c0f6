"""Run logging shared by every trainer: `metrics.jsonl`, TensorBoard, `summary.json`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from canvas.core.atomic import write_json_atomic, write_text_atomic

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


class RunLogger:
    """Append one JSON object per logged step and mirror scalars to TensorBoard (`OUTPUT/tensorboard`).

    `resume_from_step` drops lines logged after that step, so a resumed run's file equals an
    uninterrupted run's.
    """

    def __init__(
        self, output_dir: str | Path, resume_from_step: int | None = None, tensorboard: bool = True
    ) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir / METRICS_FILE
        if resume_from_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line and json.loads(line)["step"] <= resume_from_step
            ]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.output_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def write_summary(self, summary: dict[str, Any]) -> Path:
        return write_json_atomic(
            self.output_dir / SUMMARY_FILE, {k: _plain(v) for k, v in summary.items()}, indent=2
        )

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's `metrics.jsonl`."""
    path = Path(output_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _plain(value: Any) -> Any:
    """Tensors / numpy scalars -> Python numbers for JSON."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value
