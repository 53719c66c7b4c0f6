"""The launcher's default runner: the DirectRunner's offline batch path, never a Prism download."""

from __future__ import annotations

import tempfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

from canvas.pipelines.launch import BeamLauncher


@pytest.mark.parametrize("args", [[], ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]])
def test_default_runner_runs_in_process_without_trying_prism(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    # Beam's DirectRunner first tries PrismRunner (downloading it from GitHub): offline each try leaves an
    # empty beam-temp* folder in the temp dir; online the job would run on Prism instead.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    launcher = BeamLauncher("curate", args)
    pipeline = launcher.pipeline()
    assert isinstance(pipeline.runner, FnApiRunner)
    out = tmp_path / "out"
    _ = (
        pipeline
        | beam.Create(range(10))
        | beam.Map(lambda x: x * x)
        | beam.combiners.ToList()
        | beam.Map(lambda xs: out.write_text(str(sorted(xs))))
    )
    launcher.run(pipeline)
    assert out.read_text() == str([x * x for x in range(10)])
    assert not list(tmp_path.glob("beam-temp*")), "the runner tried Prism"


def test_an_explicit_runner_is_still_beams_own() -> None:
    assert not isinstance(BeamLauncher("curate", ["--runner=DirectRunner"]).pipeline().runner, FnApiRunner)
