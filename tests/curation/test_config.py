"""The config: the documented YAML is the defaults, thresholds follow the model, mistakes are one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from canvas.core.errors import CanvasError
from canvas.curation.config import DEFAULT_CONFIG_PATH, CurationConfig, load_config, resolve


def test_default_yaml_equals_dataclass_defaults_and_documents_every_field() -> None:
    assert load_config(DEFAULT_CONFIG_PATH) == CurationConfig()
    text = DEFAULT_CONFIG_PATH.read_text()
    data = yaml.safe_load(text)
    for section in dataclasses.fields(CurationConfig):
        if section.name == "notes":
            continue
        names = {f.name for f in dataclasses.fields(section.default_factory)}
        assert set(data[section.name]) == names, section.name
        for f in dataclasses.fields(section.default_factory):
            assert f.metadata.get("help"), f"{section.name}.{f.name} has no help"
    for line in text.splitlines():  # every setting line carries a comment (or is switched by `enabled`)
        if ":" in line and line.startswith("  ") and "enabled" not in line:
            assert "#" in line or line.strip().startswith(("kmeans_iters", "seed")), line


def test_thresholds_follow_the_model() -> None:
    tiny = resolve(CurationConfig(), "canvas-tiny-clip")
    assert tiny.clip_score.mode == "off" and "random weights" in tiny.notes["clip_score"]
    assert tiny.semdedup.eps == 5e-5 and tiny.semdedup.keep == "best"
    b32 = resolve(CurationConfig(), "ViT-B-32")
    assert b32.clip_score.mode == "threshold" and b32.clip_score.threshold == 0.28
    assert b32.semdedup.eps == 0.01 and b32.semdedup.keep == "best"
    l14 = resolve(CurationConfig(), "ViT-L-14")
    assert l14.clip_score.mode == "percentile" and l14.clip_score.keep_top_percent == 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("near_dedup: [1, 2]\n", "must be a mapping"),
        ("near_dedup:\n  radius: 3\n", "unknown key `near_dedup.radius`"),
        ("near_dedup:\n  hamming_radius: eight\n", "wrong type"),
        (
            "near_dedup:\n  crop_scales: [0.9, 1.2]\n",
            "crop_scales must be fractions in .0, 1. .the central part kept., got 1.2",
        ),
        ("near_dedup:\n  crop_scales: 0.9\n", "crop_scales` must be a list of numbers"),
        ("near_dedup:\n  crop_radius: 65\n", "near_dedup.crop_radius must be in .0, 64."),
        ("clip_score:\n  mode: threshold\n", "clip_score.threshold is not set"),
        ("clip_score:\n  mode: sometimes\n", "clip_score.mode must be one of"),
        # YAML 1.1 reads an unquoted `off` as false: the message says so (it only said "wrong type: False")
        (
            "clip_score:\n  mode: off\n",
            "reads an unquoted off/on/no/yes as False: quote the word, e.g. 'auto'",
        ),
        ("semdedup:\n  keep: oldest\n", "semdedup.keep must be one of"),
        ("exact_dedup:\n  keep: newest\n", "exact_dedup.keep must be one of best, smallest_key"),
        ("clip:\n  enabled: false\n", "clip.enabled is false"),
        ("basic_filter:\n  min_side: [\n", "not valid YAML"),
        ("bogus_stage: {}\n", "unknown key `bogus_stage`;"),
        ("- 1\n- 2\n", "config: the config must be a mapping, got list"),
        ("nsfw:\n  threshold: 1.5\n", "nsfw.threshold must be in [0, 1] .a probability., got 1.5"),
        ("nsfw:\n  threshold: -0.1\n", "nsfw.threshold must be in [0, 1]"),
        (
            "clip_score:\n  mode: threshold\n  threshold: 28\n",
            "clip_score.threshold must be in [-1, 1] .a cosine.",
        ),
        ("clip_score:\n  keep_top_percent: 300\n", "clip_score.keep_top_percent must be in"),
        ("decode:\n  max_pixels: 0\n", "decode.max_pixels must be >= 1"),
        ("near_dedup:\n  query_batch: 0\n", "near_dedup.query_batch must be >= 1"),
        ("basic_filter:\n  min_side: -5\n", "basic_filter.min_side must be >= 0"),
        ("basic_filter:\n  max_aspect_ratio: 0.5\n", "basic_filter.max_aspect_ratio must be >= 1"),
        ("clip:\n  threads: -1\n", "clip.threads must be >= 0"),
        ("semdedup:\n  kmeans_iters: 0\n", "semdedup.kmeans_iters must be >= 1"),
    ],
)
def test_malformed_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(CanvasError, match=message.replace("[", r"\[")) as exc:
        resolve(load_config(path), "canvas-tiny-clip")
    assert "\n" not in str(exc.value)


def test_range_bounds_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "nsfw:\n  threshold: 1\nclip_score:\n  mode: threshold\n  threshold: -1\n  keep_top_percent: 100\n"
        "basic_filter:\n  min_side: 0\n  max_aspect_ratio: 1\n"
    )
    cfg = resolve(load_config(path), "canvas-tiny-clip")
    assert cfg.nsfw.threshold == 1 and cfg.clip_score.threshold == -1 and cfg.basic_filter.min_side == 0


def test_missing_config_file() -> None:
    with pytest.raises(CanvasError, match="config file not found"):
        load_config("/no/such/config.yaml")


def test_yaml_exponent_without_dot_is_a_number(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("semdedup:\n  eps: 5e-5\n")  # YAML 1.1 reads this as a string
    assert resolve(load_config(path), "canvas-tiny-clip").semdedup.eps == 5e-5
