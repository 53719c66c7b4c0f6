"""Test-session fixtures: an isolated CANVAS_HOME with the tiny presets built once."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def canvas_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test sees a fresh CANVAS_HOME, so the build-on-first-use path is exercised, not a user's cache."""
    home = tmp_path_factory.mktemp("canvas_home")
    old = os.environ.get("CANVAS_HOME")
    os.environ["CANVAS_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("CANVAS_HOME", None)
    else:
        os.environ["CANVAS_HOME"] = old


@pytest.fixture(scope="session")
def tiny_presets(canvas_home: Path) -> dict[str, Path]:
    """Build the tiny preset once per session; returns {'clip': weights file, 'sd15': folder}."""
    from canvas.presets import init_preset

    return init_preset("tiny")


@pytest.fixture(scope="session")
def sample_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in sample set written once per session (and its truth manifest beside it)."""
    from canvas.sample_data import write_sample

    path = tmp_path_factory.mktemp("sample") / "sample.parquet"
    write_sample(path)
    return path


def _redness(images: np.ndarray) -> float:
    """Mean of R - (G + B) / 2 over images (..., 3) in [0, 1]: 0 for grey, about 0.6 for a saturated red."""
    return float((images[..., 0] - (images[..., 1] + images[..., 2]) / 2).mean())


@pytest.fixture(scope="session")
def redness() -> Callable[[np.ndarray], float]:
    """How red images are (colour tests of the VAE and of fine-tuning share one measure)."""
    return _redness
