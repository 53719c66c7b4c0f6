"""A PickScore-style reward model: a Bradley-Terry head on frozen CLIP image and text features.

The folder `save_pretrained` writes holds `config.json` (the CLIP it sits on and the head's shape) and
`model.safetensors` (the head, the feature statistics, and a CLIP fingerprint). The CLIP weights are not
copied: `from_pretrained` loads them through `canvas.core.presets.create_clip` by name and checks the
fingerprint, so a head never silently runs on a different CLIP. `canvas.rlhf.rewards.load_reward(DIR)` tries
`load_if_reward_model` first, so a trained model is a reward like any other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from canvas.core.errors import CanvasError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CLASS_NAME = "CLIPRewardModel"
_PROBE_SEED = 1234
_PROBE_PROMPT = "a photo of a cat"
_PROBE_TOLERANCE = 1e-3


class CLIPRewardModel(nn.Module):
    """`reward(images (B,3,H,W) in [0,1], prompts) -> Tensor[B]`; higher = more preferred.

    The head scores `[image, text, image * text]` (L2-normalised CLIP embeddings, standardised with
    training-set statistics) with a small MLP; only differences of scores matter (Bradley-Terry).
    """

    name = "reward_model"

    def __init__(
        self,
        clip_model: str = "canvas-tiny-clip",
        clip_pretrained: str | None = "tiny",
        hidden_dim: int = 256,
        clip: tuple[Any, Any, Any] | None = None,
    ) -> None:
        super().__init__()
        from canvas.core.presets.clip import create_clip

        self.config = {
            "_class_name": CLASS_NAME,
            "clip_model": clip_model,
            "clip_pretrained": clip_pretrained,
            "hidden_dim": hidden_dim,
        }
        model, _, tokenizer = clip or create_clip(clip_model, clip_pretrained)
        model.requires_grad_(False).eval()
        # Kept out of the module tree: the CLIP is frozen, never saved with the head, never trained.
        self._clip = [model]
        self.tokenizer = tokenizer
        probe = self._probe()
        self.embed_dim = probe.numel() // 2
        self.feature_dim = 3 * self.embed_dim
        self.register_buffer("feature_mean", torch.zeros(self.feature_dim))
        self.register_buffer("feature_std", torch.ones(self.feature_dim))
        self.register_buffer("clip_probe", probe)
        if hidden_dim > 0:
            self.head = nn.Sequential(
                nn.Linear(self.feature_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, 1)
            )
        else:
            self.head = nn.Sequential(nn.Linear(self.feature_dim, 1))

    @property
    def clip(self) -> Any:
        return self._clip[0]

    # -- features ------------------------------------------------------------------------------------
    def _preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """`(B,3,H,W)` in [0,1] -> CLIP input: resize to the model's size, normalise with its mean/std."""
        cfg = self.clip.visual.preprocess_cfg
        size = cfg["size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
        x = images.float().clamp(0, 1)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
        mean = torch.tensor(cfg["mean"], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"], device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_image(self._preprocess(images)).float(), dim=-1)

    @torch.no_grad()
    def text_features(self, prompts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.clip.encode_text(self.tokenizer(list(prompts))).float(), dim=-1)

    def score_features(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """The trainable part: `(B, D)` image and text embeddings -> `(B,)` scores."""
        joint = torch.cat([image_features, text_features, image_features * text_features], dim=-1)
        return self.head((joint - self.feature_mean) / self.feature_std).squeeze(-1)

    def set_feature_stats(self, image_features: torch.Tensor, text_features: torch.Tensor) -> None:
        joint = torch.cat([image_features, text_features, image_features * text_features], dim=-1)
        self.feature_mean.copy_(joint.mean(0))
        self.feature_std.copy_(joint.std(0).clamp_min(1e-6))

    def forward(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return self.score_features(self.image_features(images), self.text_features(prompts))

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:  # the Reward protocol
        device = self.feature_mean.device
        return super().__call__(images.to(device), prompts).cpu()

    def _probe(self) -> torch.Tensor:
        """CLIP's embedding of a fixed seeded image and prompt: the fingerprint checked on load."""
        size = self.clip.visual.preprocess_cfg["size"]
        size = size if isinstance(size, int) else size[0]
        image = torch.rand((1, 3, size, size), generator=torch.Generator().manual_seed(_PROBE_SEED))
        return torch.cat([self.image_features(image)[0], self.text_features([_PROBE_PROMPT])[0]])

    # -- save / load -----------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path) -> Path:
        from safetensors.torch import save_file

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_FILE))
        (out / CONFIG_FILE).write_text(json.dumps(self.config, indent=2))
        return out

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> CLIPRewardModel:
        from safetensors.torch import load_file

        path = Path(directory)
        config = read_config(path)
        if config is None:
            raise CanvasError(f"{path} is not a reward-model folder (no {CONFIG_FILE} for {CLASS_NAME})")
        model = cls(config["clip_model"], config["clip_pretrained"], config["hidden_dim"])
        state = load_file(str(path / WEIGHTS_FILE))
        fresh_probe = model.clip_probe.clone()
        model.load_state_dict(state)
        if not torch.allclose(fresh_probe, model.clip_probe, atol=_PROBE_TOLERANCE):
            raise CanvasError(
                f"{path}: the CLIP {config['clip_model']!r} / {config['clip_pretrained']!r} loaded now differs "
                "from the one this head was trained on"
            )
        model.clip.to(device)
        return model.to(device).eval()


def read_config(path: Path) -> dict[str, Any] | None:
    """The folder's config if it is one of ours, else None."""
    file = path / CONFIG_FILE
    if not file.exists() or not (path / WEIGHTS_FILE).exists():
        return None
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError:
        return None
    return config if isinstance(config, dict) and config.get("_class_name") == CLASS_NAME else None


def load_if_reward_model(path: Path) -> CLIPRewardModel | None:
    """The reward model in `path`, or None when the folder is not one (`canvas.rlhf.rewards.load_reward` asks)."""
    return CLIPRewardModel.from_pretrained(path) if read_config(path) is not None else None
