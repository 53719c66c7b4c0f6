"""`canvas score`: score image files with a reward (a trained reward-model folder or a built-in name)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    help = "score images with a reward model folder or a built-in reward"
    parser = sub.add_parser("score", help=help, description=help)
    parser.add_argument(
        "--reward",
        required=True,
        help="reward-model folder (canvas train reward) or brightness, jpeg_compressibility, ...",
    )
    # plain paths: `open_image_file` checks each and says what is wrong in one line
    parser.add_argument("--images", required=True, nargs="+", type=Path, help="image files")
    parser.add_argument("--prompt", default="", help="the prompt the images were made for (one for all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.set_defaults(func=_score)


def _score(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from canvas.core.images import check_image_path, open_image_file
    from canvas.rlhf.rewards import load_reward, score_checked

    for path in args.images:  # a missing or oversized file is reported before the reward loads
        check_image_path(path)
    reward = load_reward(args.reward)
    scores = []
    for path in args.images:
        image = open_image_file(path)  # curation's pixel limit, checked from the header first
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        scores.append(float(score_checked(reward, tensor, [args.prompt])[0]))
    for path, score in zip(args.images, scores, strict=True):
        if args.json:
            print(json.dumps({"image": str(path), "score": score}))
        else:
            print(f"{score:.6g}\t{path}")
    return 0
