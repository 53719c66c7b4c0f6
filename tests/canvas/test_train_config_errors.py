"""`canvas train dpo|sft|ddpo|reward`: hostile config files and flags are one line, exit 2, before any model
loads, and leave nothing in the output folder (one table, the same semantics for every trainer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from canvas.cli import main

# (command, data flag, learning-rate field) of each trainer
TRAINERS = {
    "dpo": ("--preferences", "learning_rate"),
    "sft": ("--data", "learning_rate"),
    "ddpo": ("--prompts", "learning_rate"),
    "draft": ("--prompts", "learning_rate"),
    "reward": ("--preferences", "learning_rate"),
}

# (case, YAML text or None, extra flags, expected part of the message); LR stands for the trainer's field
CASES = [
    ("unknown key", "seed: 1\nlerning_rate: 0.1\n", [], "unknown key 'lerning_rate' (did you mean"),
    ("list for an int", "seed: [1, 2]\n", [], "seed: expected an integer, got [1, 2] (list)"),
    ("float for an int", "seed: 3.5\n", [], "seed: expected an integer, got 3.5 (float)"),
    ("integral float for an int", "seed: 10.0\n", [], "seed: expected an integer, got 10.0"),
    ("text for a float", "LR: fast\n", [], "LR: expected a number, got 'fast' (str)"),
    ("mapping for a float", "LR: {a: 1}\n", [], "LR: expected a number"),
    ("broken YAML", "seed: 1\nLR: [0.1\n", [], "line 3: not valid YAML"),
    ("bad indentation", "seed: 1\n  LR: 2\n", [], "line 2: not valid YAML"),
    ("top level not a mapping", "- seed\n- 1\n", [], "expected a mapping of field: value at the top level"),
    ("top level a scalar", "just text\n", [], "expected a mapping of field: value at the top level, got str"),
    ("missing config file", None, ["--config", "MISSING"], "config file not found"),
    ("config without a file", None, ["--config"], "argument --config: expected one argument"),
    ("negative learning rate", None, ["--LR", "-0.5"], "LR must be"),
    ("zero learning rate in YAML", "LR: 0\n", [], "LR must be"),
    ("float flag for an int", None, ["--seed", "3.5"], "invalid int value: '3.5'"),
    ("unknown flag", None, ["--lerning_rate", "1"], "(did you mean '--learning_rate'?)"),
    ("nonexistent data", None, [], "NODATA"),
]


@pytest.mark.parametrize("command", sorted(TRAINERS))
@pytest.mark.parametrize(("case", "yaml_text", "flags", "message"), CASES, ids=[c[0] for c in CASES])
def test_hostile_config_is_one_line_and_writes_nothing(
    command: str,
    case: str,
    yaml_text: str | None,
    flags: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_flag, lr = TRAINERS[command]
    argv = ["train", command, data_flag, str(tmp_path / "no-such-data"), "--output", str(tmp_path / "out")]
    if yaml_text is not None:
        config = tmp_path / "config.yaml"
        config.write_text(yaml_text.replace("LR", lr))
        argv += ["--config", str(config)]
    argv += [f.replace("LR", lr).replace("MISSING", str(tmp_path / "nope.yaml")) for f in flags]
    if command == "sft" and case == "nonexistent data":
        message = "no Parquet data at"
    elif command in ("ddpo", "draft") and case == "nonexistent data":
        message = "prompt file not found"
    elif case == "nonexistent data":
        message = "no-such-data"
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (case, err)
    assert err.startswith("canvas: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message.replace("LR", lr) in err, (case, err)
    assert not (tmp_path / "out").exists()


def test_yaml_values_land_in_their_fields(tmp_path: Path) -> None:
    """What the loader accepts: YAML 1.1's `1e-4` (text) for a float, null for an optional field, a list
    for a list field, quoted "no" for mixed_precision; flags override the file."""
    from canvas.core.config_parser import parse_config_command
    from canvas.rlhf.dpo_config import DiffusionDPOConfig

    config = tmp_path / "dpo.yaml"
    config.write_text(
        "learning_rate: 1e-4\nmax_steps: 7\nresolution: null\nlora_target_modules: [to_q, to_v]\n"
        'mixed_precision: "no"\nbeta: 2500\noutput_dir: a\n'
    )
    parsed = parse_config_command(DiffusionDPOConfig, ["--config", str(config), "--max_steps", "9"], "x", "")
    assert parsed.learning_rate == 1e-4 and parsed.max_steps == 9 and parsed.resolution is None
    assert parsed.lora_target_modules == ["to_q", "to_v"] and parsed.mixed_precision == "no"
    assert parsed.beta == 2500.0 and isinstance(parsed.beta, float) and parsed.output_dir == "a"
