"""`canvas score`: score image files with a reward (a trained reward-model folder or a built-in name)."""

from __future__ import annotations

import argparse
import json

from canvas.core.config_parser import add_config_arguments, config_from_args
from canvas.rlhf.score_config import ScoreConfig


def register(sub: argparse._SubParsersAction) -> None:
    help = "score images with a reward model folder or a built-in reward"
    parser = sub.add_parser("score", help=help, description=help)
    add_config_arguments(parser, ScoreConfig)
    parser.set_defaults(func=_score)


def _score(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from canvas.core.images import check_image_path, open_image_file
    from canvas.rlhf.rewards import load_reward, score_checked

    config = config_from_args(ScoreConfig, args)
    for path in config.images:  # a missing or oversized file is reported before the reward loads
        check_image_path(path)
    reward = load_reward(config.reward)
    scores = []
    for path in config.images:
        image = open_image_file(path)  # curation's pixel limit, checked from the header first
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        scores.append(float(score_checked(reward, tensor, [config.prompt])[0]))
    for path, score in zip(config.images, scores, strict=True):
        if config.json:
            print(json.dumps({"image": str(path), "score": score}))
        else:
            print(f"{score:.6g}\t{path}")
    return 0
