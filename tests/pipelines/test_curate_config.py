"""`canvas curate --config FILE.yaml`: the command's own keys and the stage sections in one file, flags
override the file, and a mistake in either part is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canvas.cli import main


def test_one_yaml_holds_the_command_and_its_stages(sample_parquet: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "curate.yaml"
    config.write_text(
        f"input: [{sample_parquet}]\noutput: {tmp_path / 'from-file'}\n"
        "clip:\n  enabled: false\nsemdedup:\n  enabled: false\n"
    )
    assert main(["curate", "--config", str(config), "--output", str(tmp_path / "from-flag")]) == 0
    assert not (tmp_path / "from-file").exists()  # the flag overrides the file
    report = json.loads((tmp_path / "from-flag" / "report.json").read_text())
    assert report["config"]["clip"]["enabled"] is False  # the stage section was applied
    assert report["input_count"] == report["kept_count"] + report["rejected_count"]


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("inptu: [a.parquet]\n", "unknown key 'inptu' (did you mean 'input'?)"),
        ("input: a.parquet\n", "input: expected a list"),
        ("decode:\n  max_pixel: 5\n", "unknown key `decode.max_pixel`"),
    ],
)
def test_a_mistake_in_the_file_is_one_line(tmp_path: Path, capsys, yaml: str, message: str) -> None:
    config = tmp_path / "curate.yaml"
    config.write_text(yaml)
    code = main(["curate", "--config", str(config), "--input", "x.parquet", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("canvas: error:") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "o").exists()
