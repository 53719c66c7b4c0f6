"""The whole loop, shortened (`canvas demo --quick`), as a user runs it; its report renders in Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from canvas.core.browser import image_load_counts

STAGES = [
    "sample data",
    "curate",
    "prompts",
    "generate",
    "label studio start",
    "label push",
    "simulated annotators",
    "label pull",
    "train reward",
    "train dpo",
    "train ddpo",
    "train draft",
    "eval",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("demo") / "out"
    result = subprocess.run(
        [sys.executable, "-m", "canvas", "demo", "--quick", "--output", str(out)],
        capture_output=True, text=True, timeout=1500, env=os.environ.copy(),
    )  # fmt: skip
    return out, result


@pytest.mark.slow
def test_demo_runs_every_stage_and_prints_where_the_report_is(demo_run) -> None:
    out, result = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "demo.json").read_text())
    assert [s["name"] for s in record["stages"]] == STAGES
    assert f"report: {(out / 'report.html').resolve()}" in result.stdout
    assert "stage timings:" in result.stdout and "Label Studio server stopped" in result.stdout


@pytest.mark.slow
def test_demo_numbers_come_from_the_run(demo_run) -> None:
    out, result = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    stages = {s["name"]: s["summary"] for s in json.loads((out / "demo.json").read_text())["stages"]}
    curate = json.loads((out / "curate" / "report.json").read_text())
    assert (
        curate["input_count"]
        == curate["kept_count"] + curate["rejected_count"]
        == stages["sample data"]["rows"]
    )
    pairs = pq.read_table(out / "candidates" / "candidates.parquet").num_rows
    assert stages["generate"]["pairs"] == stages["label push"]["tasks_created"] == pairs > 0
    annotators = json.loads((out / "labels" / "annotators.json").read_text())
    assert annotators["annotations"] == stages["simulated annotators"]["votes"] == 3 * pairs
    # Most votes match the hidden oracle (error rates 5-30%), so the learned reward beats chance on it.
    assert (
        stages["simulated annotators"]["votes_matching_oracle"]
        > 0.6 * stages["simulated annotators"]["votes"]
    )
    assert stages["train reward"]["oracle_agreement_all_pairs"] > 0.6
    for method in ("dpo", "ddpo", "draft"):
        assert (out / method / "pytorch_lora_weights.safetensors").exists()
        for reward in ("oracle", "learned"):
            summary = json.loads((out / "eval" / f"{method}-{reward}" / "summary.json").read_text())
            assert 0 <= summary["win_rate"] <= 1 and summary["n_prompts"] > 0
    html = (out / "report.html").read_text()
    assert f"{curate['input_count']} records in, {curate['kept_count']} kept" in html


@pytest.mark.slow
def test_demo_report_renders_with_every_image_in_chromium(demo_run) -> None:
    out, result = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    total, broken = image_load_counts(out / "report.html")
    assert broken == 0
    # Plots: curation, reward, DPO, DDPO, win rates; thumbnails of duplicate groups; base-vs-tuned grids.
    assert total >= 10


@pytest.mark.slow
def test_demo_stops_the_label_studio_server_it_started(demo_run) -> None:
    out, result = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    pid = json.loads((out / "demo.json").read_text())["stages"][4]["summary"]["pid"]
    # Gone, or a zombie waiting for init to reap it (the demo process that started it has exited).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        time.sleep(0.2)
    pytest.fail(f"Label Studio (pid {pid}) still runs after the demo ended")
