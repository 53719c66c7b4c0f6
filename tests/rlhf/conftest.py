"""Fixtures for the rlhf tests: oracle preference pairs (the brighter image wins) written as Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "moon",
    "rocket",
    "clock",
    "brick",
    "grass",
    "cell",
)


def _photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def brightness_oracle_records(
    n_pairs: int, seed: int, size: int = 64, tie_every: int = 0, flip_every: int = 0
) -> list[dict]:
    """Pairs of random crops of one real photo, each under a random gain; the brighter one wins.

    The oracle is `canvas.rlhf.rewards.brightness` (mean pixel). Every `tie_every`-th pair is labelled a tie;
    every `flip_every`-th pair (counted from the 5th, so never a tie when `tie_every` is even and
    `flip_every` is 10) gets the wrong winner: label noise. Each record's `clean` says whether its label
    is the oracle's (ties are not clean).
    """
    rng = np.random.default_rng(seed)
    photos = {name: _photo(name) for name in PHOTOS}
    records = []
    for i in range(n_pairs):
        name = PHOTOS[rng.integers(len(PHOTOS))]
        photo = photos[name]
        images = []
        for _ in range(2):
            side = int(min(photo.size) * rng.uniform(0.5, 1.0))
            left = int(rng.integers(0, photo.width - side + 1))
            top = int(rng.integers(0, photo.height - side + 1))
            crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
            gain = rng.uniform(0.3, 1.5)
            images.append(
                Image.fromarray(np.clip(np.asarray(crop, np.float32) * gain, 0, 255).astype(np.uint8))
            )
        bright = [np.asarray(im, np.float32).mean() for im in images]
        label_0 = 1.0 if bright[0] > bright[1] else 0.0
        clean = True
        if flip_every and i % flip_every == 4:
            label_0, clean = 1 - label_0, False
        if tie_every and i % tie_every == tie_every - 1:
            label_0, clean = 0.5, False
        records.append(
            {
                "caption": f"a photo of a {name}",
                "jpg_0": images[0],
                "jpg_1": images[1],
                "label_0": label_0,
                "label_1": 1 - label_0,
                "clean": clean,
            }
        )
    return records


@pytest.fixture(scope="session")
def photo_names() -> tuple[str, ...]:
    """The skimage photos the oracle pairs are cropped from (their captions: "a photo of a NAME")."""
    return PHOTOS


@pytest.fixture(scope="session")
def oracle_preferences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """320 oracle pairs (every 16th a tie) as a Pick-a-Pic v2 schema Parquet."""
    from canvas.rlhf.preferences import write_preferences

    path = tmp_path_factory.mktemp("prefs") / "oracle.parquet"
    return write_preferences(path, brightness_oracle_records(320, seed=0, tie_every=16))


@pytest.fixture(scope="session")
def small_oracle_preferences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 oracle pairs (every 8th a tie): for runs that test plumbing, not learning."""
    from canvas.rlhf.preferences import write_preferences

    path = tmp_path_factory.mktemp("prefs") / "small.parquet"
    return write_preferences(path, brightness_oracle_records(40, seed=1, tie_every=8))


@pytest.fixture(scope="session")
def oracle_records():
    """`brightness_oracle_records`, for tests that build pairs of their own (conftest is not importable)."""
    return brightness_oracle_records


@pytest.fixture(scope="session")
def noisy_photo_preferences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 oracle pairs with label noise: every 10th label flipped (20), every 16th a tie (12)."""
    from canvas.rlhf.preferences import write_preferences

    path = tmp_path_factory.mktemp("prefs") / "noisy.parquet"
    return write_preferences(path, brightness_oracle_records(200, seed=0, tie_every=16, flip_every=10))
