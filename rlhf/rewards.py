"""Rewards: score a batch of images (and their prompts) with one number each.

A reward is any callable `reward(images, prompts) -> Tensor[B]` where `images` is a float tensor
`(B, 3, H, W)` in `[0, 1]` on any device. Built-ins are registered by name; a folder loads a
trained reward model (`canvas.rlhf.reward_model`), or whatever a loader added with `register_dir_loader`
recognises. Users add their own rewards with `register_reward("name", factory)`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from canvas.core.errors import CanvasError


@runtime_checkable
class Reward(Protocol):
    """Maps `(images (B,3,H,W) in [0,1], prompts)` to a float tensor of shape `(B,)`."""

    name: str

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor: ...


def to_uint8_arrays(images: torch.Tensor) -> list[np.ndarray]:
    """`(B,3,H,W)` float in [0,1] -> list of `(H,W,3)` uint8 arrays (for PIL-based rewards)."""
    arr = (
        (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    )
    return list(arr)


class BrightnessReward:
    """Mean pixel value in [0, 1]. A transparent oracle for tests and demos."""

    name = "brightness"

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return images.detach().float().clamp(0, 1).mean(dim=(1, 2, 3)).cpu()


class JpegSizeReward:
    """JPEG size in kB at quality 95 (DDPO's compressibility reward, Black et al. 2023).

    `sign=-1` rewards compressible images (smaller files), `sign=+1` incompressible ones.
    """

    def __init__(self, sign: int = -1, quality: int = 95) -> None:
        self.sign, self.quality = sign, quality
        self.name = "jpeg_compressibility" if sign < 0 else "jpeg_incompressibility"

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        sizes = []
        for arr in to_uint8_arrays(images):
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=self.quality)
            sizes.append(buf.tell() / 1000.0)
        return self.sign * torch.tensor(sizes, dtype=torch.float32)


REWARDS: dict[str, Callable[[], Reward]] = {
    "brightness": BrightnessReward,
    "jpeg_compressibility": lambda: JpegSizeReward(-1),
    "jpeg_incompressibility": lambda: JpegSizeReward(+1),
}
_DIR_LOADERS: list[Callable[[Path], Reward | None]] = []


def register_reward(name: str, factory: Callable[[], Reward]) -> None:
    """Add a named reward (a zero-argument factory)."""
    REWARDS[name] = factory


def register_dir_loader(loader: Callable[[Path], Reward | None]) -> None:
    """Add a loader for reward folders; it returns None when the folder is not its kind."""
    _DIR_LOADERS.append(loader)


def load_reward(name_or_dir: str) -> Reward:
    """A built-in reward by name, or a trained reward model from a folder."""
    if name_or_dir in REWARDS:
        return REWARDS[name_or_dir]()
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        from canvas.rlhf.reward_model import load_if_reward_model  # lazy: it pulls in CLIP

        for loader in (load_if_reward_model, *_DIR_LOADERS):
            reward = loader(path)
            if reward is not None:
                return reward
        raise CanvasError(f"{path} is not a reward-model folder (no loader recognised it)")
    raise CanvasError(
        f"unknown reward {name_or_dir!r}: use one of {', '.join(sorted(REWARDS))} or a reward-model folder"
    )


def score_checked(reward: Reward, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """Call a reward and insist on a finite float tensor of shape `(B,)`: a clear error otherwise."""
    out = reward(images, prompts)
    name = getattr(reward, "name", type(reward).__name__)
    if not isinstance(out, torch.Tensor):
        out = torch.as_tensor(out)
    if out.shape != (images.shape[0],):
        raise CanvasError(f"reward {name!r} returned shape {tuple(out.shape)}, expected ({images.shape[0]},)")
    out = out.float()
    bad = [i for i, v in enumerate(out.tolist()) if not math.isfinite(v)]
    if bad:
        raise CanvasError(f"reward {name!r} returned non-finite values at batch positions {bad}")
    return out


class EncodedImageScorer:
    """A reward applied to encoded images (PNG/JPEG bytes), as labeling's pre-labels and simulated annotators
    call it: `scorer(images, prompts) -> [score, ...]`. Labeling takes any callable of this shape, so it never
    imports this package; the CLI and the demo build one from a reward name or folder."""

    def __init__(self, name_or_dir: str) -> None:
        self.reward = load_reward(name_or_dir)
        self.name = str(getattr(self.reward, "name", name_or_dir))

    def __call__(self, images: Sequence[bytes], prompts: Sequence[str]) -> list[float]:
        arrays = [
            np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
            for data in images
        ]
        batch = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays])
        return [float(v) for v in score_checked(self.reward, batch, list(prompts)).tolist()]
