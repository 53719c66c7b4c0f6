"""`canvas curate` on Beam's Prism runner: a separate job-server process (Beam's Go binary, built by
`make prism` from the Go module proxy) running the portable pipeline, SDK worker over LOOPBACK. Its files
and report counts must equal the DirectRunner's on the same input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from canvas.cli import main

PRISM = Path(__file__).resolve().parents[2] / ".cache" / "bin" / "prism"
COUNTS = ("input_count", "kept_count", "rejected_count", "rejected_by_stage")


@pytest.mark.cluster
def test_curate_on_prism_equals_the_direct_runner(sample_parquet: Path, tmp_path: Path) -> None:
    if not PRISM.is_file():
        pytest.fail(f"{PRISM} is missing: run `make prism` (part of `make setup`)")
    outs = {}
    for name, args in {
        "direct": [],
        "prism": ["--runner=PrismRunner", f"--prism_location={PRISM}", "--environment_type=LOOPBACK"],
    }.items():
        outs[name] = tmp_path / name
        assert main(["curate", "--input", str(sample_parquet), "--output", str(outs[name]), *args]) == 0
    reports = {name: json.loads((out / "report.json").read_text()) for name, out in outs.items()}
    assert reports["prism"]["runner"] == "PrismRunner"
    assert {k: reports["prism"][k] for k in COUNTS} == {k: reports["direct"][k] for k in COUNTS}
    for part in ("curated", "rejected"):
        direct, prism = (pq.read_table(outs[n] / part) for n in ("direct", "prism"))
        assert prism.num_rows > 0
        assert prism.equals(direct)
