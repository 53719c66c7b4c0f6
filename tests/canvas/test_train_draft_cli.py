"""`canvas train draft`: --help, dataclass flags + --config YAML, JPEG refused in one line, --resume latest
repeats the uninterrupted run bit for bit, and stock diffusers loads the LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from canvas.cli import main
from canvas.rlhf.tracking import read_metrics

SMALL = """\
sample_num_steps: 3
train_batch_size: 2
guidance_scale: 3.0
learning_rate: 0.01
checkpointing_steps: 1
checkpoints_total_limit: 1
eval_num_samples: 2
tensorboard: false
lora_alpha: 8
"""


def test_help_lists_the_draft_knobs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "draft", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--draft_k",
        "--lv_draws",
        "--gradient_checkpointing",
        "--reward",
        "--resume_from_checkpoint",
    ):
        assert flag in out
    assert "canvas train ddpo" in out  # where JPEG goes


@pytest.mark.parametrize("reward", ["jpeg", "jpeg_compressibility"])
def test_jpeg_reward_is_refused_in_one_line(
    reward: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "draft", "--reward", reward, "--prompts", "p.txt", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("canvas: error:"), err
    assert "not differentiable" in err and "canvas train ddpo" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_resume_latest_repeats_the_uninterrupted_run(
    tmp_path: Path, tiny_presets, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "draft.yaml"
    config.write_text(SMALL)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red ball\na cat on a mat\nthe moon\n")

    def run(out: Path, *extra: str) -> int:
        args = ["train", "draft", "--prompts", str(prompts), "--reward", "brightness", "--output", str(out)]
        return main([*args, "--config", str(config), "--pretrained", "tiny", *extra])

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run(straight, "--max_steps", "2") == 0
    printed = json.loads(capsys.readouterr().out)
    assert {
        "reward_mean_first_step",
        "eval_reward_base",
        "eval_reward_tuned",
        "reward_queries",
    } <= printed.keys()
    assert printed["reward_queries"] == 4
    assert run(resumed, "--max_steps", "1") == 0
    assert run(resumed, "--max_steps", "2", "--resume", "latest") == 0

    a, b = (
        load_file(straight / "pytorch_lora_weights.safetensors"),
        load_file(resumed / "pytorch_lora_weights.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda run_dir: [{k: v for k, v in m.items() if k != "seconds"} for m in read_metrics(run_dir)]  # noqa: E731
    assert strip(straight) == strip(resumed) and [m["step"] for m in read_metrics(straight)] == [1, 2]
    saved = json.loads((straight / "run_config.json").read_text())
    assert saved["sample_num_steps"] == 3 and saved["max_steps"] == 2 and saved["lora_alpha"] == 8
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == ["checkpoint-2"]
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["method"] == "draft-1" and summary["reward_queries"] == 4

    # Stock diffusers loads the LoRA (alpha 8 != rank 4: the adapter metadata sets the scale) and it
    # changes what the pipeline draws.
    from canvas.core.presets.loading import load_pipeline

    pipe = load_pipeline("tiny")
    kwargs = dict(num_inference_steps=3, guidance_scale=3.0, output_type="pt")
    base = pipe(["a red ball"], generator=torch.Generator().manual_seed(0), **kwargs).images
    pipe.load_lora_weights(straight)
    assert pipe.unet.peft_config["default_0"].lora_alpha == 8
    tuned = pipe(["a red ball"], generator=torch.Generator().manual_seed(0), **kwargs).images
    assert (tuned - base).abs().max() > 1e-5


@pytest.mark.slow
def test_train_draft_in_two_cpu_processes_under_torchrun(
    tmp_path: Path, tiny_presets, canvas_in_two_processes
) -> None:
    # The multi-GPU path on CPU: two processes join (gloo), each samples its own batch, gradients are
    # averaged, one set of files is written and only the main process reports.
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\nthe moon\n")
    out = tmp_path / "run"
    done = canvas_in_two_processes(
        ["train", "draft", "--prompts", str(prompts), "--output", str(out), "--pretrained", "tiny",
         "--sample_num_steps", "3", "--train_batch_size", "2", "--max_steps", "2", "--eval_num_samples", "0"]
    )  # fmt: skip
    assert done.stdout.count("reward_queries") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["reward_queries"] == 2 * 2 * 2
    assert [row["step"] for row in read_metrics(out)] == [1, 2]
