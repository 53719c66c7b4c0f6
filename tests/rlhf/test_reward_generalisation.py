"""A reward model that generalises: trained on noisy real-photo pairs it ranks clean pairs it never saw,
and the model saved is the epoch with the best held-out log-loss, not the last (over-fit) one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from canvas.cli import main
from canvas.rlhf.tracking import read_metrics


def _train(prefs: Path, out: Path, *extra: str) -> dict:
    args = ["train", "reward", "--preferences", str(prefs), "--output_dir", str(out), "--seed", "0"]
    assert main([*args, "--no_tensorboard", "--checkpointing_steps", "0", *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def _heldout_log_loss(model_dir: Path, prefs: Path, seed: int = 0) -> float:
    """The saved model's log-loss on the trainer's held-out split, recomputed from the files alone."""
    from canvas.rlhf.diffusion_model import image_to_tensor
    from canvas.rlhf.preferences import decode_pair, load_preferences
    from canvas.rlhf.reward_model import CLIPRewardModel
    from canvas.rlhf.reward_trainer import bradley_terry_loss

    model = CLIPRewardModel.from_pretrained(model_dir)
    size = model.clip.visual.preprocess_cfg["size"]
    size = size if isinstance(size, int) else size[0]
    _, heldout = load_preferences(prefs).split(0.2, seed)
    pairs = [heldout[i] for i in range(len(heldout))]
    images = [decode_pair(heldout, p) for p in pairs]
    captions = [p.caption for p in pairs]
    s_w = model(torch.stack([image_to_tensor(w, size) for w, _ in images]), captions)
    s_l = model(torch.stack([image_to_tensor(lo, size) for _, lo in images]), captions)
    return float(bradley_terry_loss(s_w, s_l, torch.tensor([p.target for p in pairs])).mean())


def test_saved_weights_are_the_best_heldout_epoch_not_the_last(
    noisy_photo_preferences: Path, tmp_path: Path, tiny_presets
) -> None:
    """200 noisy pairs, 25 epochs, no early stop: held-out log-loss bottoms out early and then rises
    (measured: 0.51 at epoch 1, 1.0 by epoch 30, 2.06 at epoch 100) while the training loss falls. The saved
    model must be the best epoch's, and summary.json must say which epoch that was."""
    out = tmp_path / "rm"
    summary = _train(noisy_photo_preferences, out, "--num_epochs", "25", "--early_stopping_patience", "0")
    metrics = read_metrics(out)
    best = min(metrics, key=lambda m: m["heldout/log_loss"])
    assert metrics[-1]["heldout/log_loss"] > best["heldout/log_loss"] + 0.1  # the setup does over-fit
    saved = _heldout_log_loss(out, noisy_photo_preferences)
    assert saved == pytest.approx(best["heldout/log_loss"], abs=1e-4), (saved, best, metrics[-1])
    assert summary["selected_epoch"] == best["epoch"] < summary["last_epoch"] == 25
    assert summary["selected_step"] == best["step"]
    assert summary["heldout_log_loss"] == pytest.approx(best["heldout/log_loss"], abs=1e-6)
    assert summary["heldout_accuracy"] == pytest.approx(best["heldout/accuracy"], abs=1e-6)
    assert summary["last_heldout_log_loss"] == pytest.approx(metrics[-1]["heldout/log_loss"], abs=1e-6)
    assert summary["last_heldout_accuracy"] == pytest.approx(metrics[-1]["heldout/accuracy"], abs=1e-6)
    assert summary["stopped_early"] is False and len(metrics) == 25


def test_early_stopping_stops_patience_epochs_after_the_best(
    noisy_photo_preferences: Path, tmp_path: Path, tiny_presets
) -> None:
    out = tmp_path / "rm"
    summary = _train(noisy_photo_preferences, out, "--num_epochs", "60", "--early_stopping_patience", "4")
    metrics = read_metrics(out)
    assert summary["stopped_early"] is True
    assert summary["last_epoch"] == summary["selected_epoch"] + 4 == len(metrics) < 60
    assert [m["epoch"] for m in metrics if m["heldout/is_best"]][-1] == summary["selected_epoch"]
    assert _heldout_log_loss(out, noisy_photo_preferences) == pytest.approx(
        summary["heldout_log_loss"], abs=1e-4
    )


def clean_pair_accuracy(model_dir: Path, records: list[dict], folder: Path, capsys) -> float:
    """Pairwise accuracy of `canvas score` on `records` (clean labels): each image written as a PNG file,
    scored with its caption as the prompt (one `canvas score` call per caption)."""
    folder.mkdir(parents=True, exist_ok=True)
    capsys.readouterr()  # drop what training printed
    by_caption: dict[str, list[Path]] = {}
    for i, r in enumerate(records):
        for side in ("jpg_0", "jpg_1"):
            path = folder / f"{i:03d}_{side}.png"
            r[side].save(path)
            by_caption.setdefault(r["caption"], []).append(path)
    scores: dict[str, float] = {}
    for caption, paths in by_caption.items():
        args = [
            "score",
            "--reward",
            str(model_dir),
            "--prompt",
            caption,
            "--json",
            "--images",
            *map(str, paths),
        ]
        assert main(args) == 0
        for line in capsys.readouterr().out.splitlines():
            row = json.loads(line)
            scores[Path(row["image"]).name] = row["score"]
    right = [
        (scores[f"{i:03d}_jpg_0.png"] > scores[f"{i:03d}_jpg_1.png"]) == (r["label_0"] == 1.0)
        for i, r in enumerate(records)
    ]
    return sum(right) / len(right)


def test_noisy_photo_pairs_train_a_reward_that_ranks_clean_pairs(
    noisy_photo_preferences: Path, oracle_records, tmp_path: Path, capsys, tiny_presets
) -> None:
    """`canvas train reward` (default knobs) on 200 brighter-wins pairs of real photo crops with 20 labels
    flipped and 12 ties, then `canvas score` on 80 fresh clean pairs (other crops and gains, seed 1000):
    pairwise accuracy >= 0.85.

    Measured (data seed = training seed = s, clean pairs from seed 1000 + s; 2026-12-02, 2 shared cores,
    load ~3): clean accuracy 0.950 / 0.963 / 0.950 for s = 0 / 1 / 2 (selected epoch 1 / 4 / 1, early stop
    at 11 / 14 / 11; held-out log-loss 0.51 / 0.43 / 0.62, ECE 0.09 / 0.18 / 0.19), training 45-49 s
    under that load. The bar is the issue's 0.85: 0.10 below the worst seed, about 4 standard errors
    of an accuracy near 0.95 on 80 pairs, so a new seed or CPU should not fail it by chance.
    """
    out = tmp_path / "rm"
    summary = _train(noisy_photo_preferences, out)
    clean = oracle_records(80, seed=1000)
    accuracy = clean_pair_accuracy(out, clean, tmp_path / "clean", capsys)
    assert accuracy >= 0.85, (accuracy, {k: v for k, v in summary.items() if k != "config"})
    # calibration is reported: on the held-out split, with the reliability diagram beside the model
    assert summary["heldout_log_loss"] < 0.69  # better than a coin
    assert 0 <= summary["heldout_ece"] <= 1 and 0 <= summary["heldout_brier"] <= 0.25
    assert sum(b["count"] for b in summary["reliability"]) == summary["heldout_pairs"] == 40
    assert len(summary["reliability"]) == summary["ece_bins"] == 10
    assert (out / "reliability.png").read_bytes().startswith(b"\x89PNG")


def test_resume_keeps_the_best_epoch_found_before_the_checkpoint(
    noisy_photo_preferences: Path, tmp_path: Path, tiny_presets
) -> None:
    """The best epoch (1 here) lies before the checkpoint (3): a resumed run must still save its weights."""
    knobs = ("--early_stopping_patience", "0", "--checkpointing_steps", "3")
    full = _train(noisy_photo_preferences, tmp_path / "full", "--num_epochs", "6", *knobs)
    _train(noisy_photo_preferences, tmp_path / "cut", "--num_epochs", "4", *knobs)
    cut = _train(noisy_photo_preferences, tmp_path / "cut", "--num_epochs", "6", *knobs, "--resume", "latest")
    assert cut["selected_epoch"] == full["selected_epoch"] < 3, (cut, full)
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == (
        tmp_path / "full" / "model.safetensors"
    ).read_bytes()
