"""One output folder holds one run, for every trainer (dpo, sft, ddpo, reward): a fresh run over another
run's files is refused (one line) unless --overwrite_output_dir, which removes only trainer-written files;
--resume refuses a checkpoint saved with settings that change the trajectory, naming each field."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from canvas.cli import main
from canvas.core.errors import CanvasError
from canvas.rlhf.checkpointing import RUN_CONFIG_FILE, list_checkpoints, start_run, write_run_config
from canvas.rlhf.dpo_config import DiffusionDPOConfig
from canvas.rlhf.dpo_trainer import DiffusionDPOTrainer
from canvas.rlhf.tracking import read_metrics


def _dpo(prefs: Path, out: Path, **kw) -> DiffusionDPOConfig:
    base = dict(
        preferences=str(prefs), output_dir=str(out), max_steps=2, train_batch_size=2, learning_rate=1e-3,
        checkpointing_steps=1, tensorboard=False, heldout_fraction=0.02, eval_noise_draws=1, seed=0,
    )  # fmt: skip
    return DiffusionDPOConfig(**{**base, **kw})


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()  # earlier runs' progress bars
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("canvas: error:") and err.count("\n") == 1, err
    return err


def test_dpo_refuses_a_fresh_run_over_a_previous_one_overwrites_on_request_and_checks_resume(
    oracle_preferences: Path, tmp_path: Path, tiny_presets, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    DiffusionDPOTrainer(_dpo(oracle_preferences, run)).train()
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-1", "checkpoint-2"]
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    (run / "notes.txt").write_text("mine")

    # a fresh run (another seed) into the same folder: refused, nothing touched
    argv = [
        "train",
        "dpo",
        "--preferences",
        str(oracle_preferences),
        "--output",
        str(run),
        "--max_steps",
        "1",
    ]
    argv += ["--train_batch_size", "2", "--heldout_fraction", "0.02", "--no_tensorboard", "--seed", "5"]
    err = _one_line_error(argv, capsys)
    assert (
        "holds a previous training run" in err
        and "--resume latest" in err
        and "--overwrite_output_dir" in err
    )
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != "notes.txt"} == before

    # --resume with a changed learning rate and seed: one line naming both, nothing touched
    err = _one_line_error(
        ["train", "dpo", "--preferences", str(oracle_preferences), "--output", str(run), "--resume", "latest",
         "--max_steps", "3", "--train_batch_size", "2", "--heldout_fraction", "0.02", "--no_tensorboard",
         "--eval_noise_draws", "1", "--checkpointing_steps", "1", "--learning_rate", "0.002", "--seed", "5"],
        capsys,
    )  # fmt: skip
    assert "learning_rate: 0.001 -> 0.002" in err and "seed: 0 -> 5" in err, err
    assert "max_steps" not in err  # a longer run is a legitimate resume
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != "notes.txt"} == before

    # --overwrite_output_dir: the previous run's checkpoints and metrics are gone, the user's file stays
    DiffusionDPOTrainer(
        _dpo(oracle_preferences, run, max_steps=1, checkpointing_steps=0, seed=5, overwrite_output_dir=True)
    ).train()
    assert list_checkpoints(run) == [] and (run / "notes.txt").read_text() == "mine"
    assert [m["step"] for m in read_metrics(run)] == [1]
    assert json.loads((run / RUN_CONFIG_FILE).read_text())["seed"] == 5


def _fake_previous_run(folder: Path, config: object, step: int = 2) -> None:
    """What a run leaves: a checkpoint (with its settings) and metrics, without training one."""
    checkpoint = folder / "checkpoints" / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": step}))
    write_run_config(checkpoint, config)
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")


@pytest.fixture
def sft_rows(tmp_path: Path) -> Path:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="PNG")
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"caption": ["a red square"] * 4, "image": [buf.getvalue()] * 4}), path)
    return path


def _trainer_case(command: str, tmp_path: Path, prefs: Path, rows: Path) -> tuple[list[str], object]:
    """(argv of a fresh run into tmp_path/run, the config a previous run with another lr was saved with)."""
    from canvas.rlhf.ddpo_config import DDPOConfig
    from canvas.rlhf.reward_config import RewardConfig
    from canvas.rlhf.sft_config import SFTConfig

    run = str(tmp_path / "run")
    if command == "sft":
        return ["--data", str(rows), "--output", run], SFTConfig(data=str(rows), learning_rate=0.5)
    if command == "ddpo":
        prompts = tmp_path / "p.txt"
        prompts.write_text("a cat\n")
        argv = ["--prompts", str(prompts), "--reward", "brightness", "--output", run]
        return argv, DDPOConfig(prompts=str(prompts), reward="brightness", learning_rate=0.5)
    if command == "reward":
        return ["--preferences", str(prefs), "--output", run], RewardConfig(
            preferences=str(prefs), learning_rate=0.5
        )
    return ["--preferences", str(prefs), "--output", run], DiffusionDPOConfig(
        preferences=str(prefs), learning_rate=0.5
    )


@pytest.mark.parametrize("command", ["dpo", "sft", "ddpo", "reward"])
def test_every_trainer_refuses_a_foreign_run_before_loading_a_model(
    command: str,
    oracle_preferences: Path,
    sft_rows: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import canvas.core.presets.loading

    def no_model(*args, **kwargs):
        raise AssertionError("a model loaded before the output folder was checked")

    monkeypatch.setattr(canvas.core.presets.loading, "load_pipeline", no_model)
    argv, previous = _trainer_case(command, tmp_path, oracle_preferences, sft_rows)
    run = tmp_path / "run"
    _fake_previous_run(run, previous)
    err = _one_line_error(["train", command, *argv], capsys)
    assert "holds a previous training run (checkpoints, metrics.jsonl)" in err
    assert "--resume latest" in err and "--overwrite_output_dir" in err
    err = _one_line_error(["train", command, *argv, "--resume", "latest"], capsys)
    assert "learning_rate: 0.5 -> " in err and "was saved with different settings" in err, err
    assert (run / "checkpoints/checkpoint-2").is_dir() and (run / "metrics.jsonl").exists()


def test_overwrite_removes_only_what_trainers_write(tmp_path: Path) -> None:
    from canvas.rlhf.sft_config import SFTConfig

    run = tmp_path / "run"
    for name in ("checkpoints/checkpoint-3", "tensorboard", "samples", "data/curated"):
        (run / name).mkdir(parents=True)
    for name in (
        "metrics.jsonl",
        "summary.json",
        "pytorch_lora_weights.safetensors",
        "notes.txt",
        "config.json",
    ):
        (run / name).write_text("{}")  # config.json that is not a reward model's: not ours
    (run / "link").symlink_to(tmp_path)
    start_run(run, SFTConfig(), None, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "data", "link", "notes.txt"]
    assert start_run(run, SFTConfig(), None, overwrite=False) is None  # now clean: a fresh run may start
    with pytest.raises(CanvasError, match="no checkpoint to resume but holds a previous run's metrics.jsonl"):
        (run / "metrics.jsonl").write_text("")
        start_run(run, SFTConfig(), "latest", overwrite=False)
