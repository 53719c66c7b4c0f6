"""`canvas score`: score image files with a reward (a trained reward-model folder or a built-in name)."""

from __future__ import annotations

import argparse
import json

from canvas.cli._common import existing_path


def register(sub: argparse._SubParsersAction) -> None:
    help = "score images with a reward model folder or a built-in reward"
    parser = sub.add_parser("score", help=help, description=help)
    parser.add_argument(
        "--reward",
        required=True,
        help="reward-model folder (canvas train reward) or brightness, jpeg_compressibility, ...",
    )
    parser.add_argument("--images", required=True, nargs="+", type=existing_path, help="image files")
    parser.add_argument("--prompt", default="", help="the prompt the images were made for (one for all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.set_defaults(func=_score)


def _score(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from canvas.errors import CanvasError
    from rlhf.rewards import load_reward, score_checked

    reward = load_reward(args.reward)
    scores = []
    for path in args.images:
        try:
            image = Image.open(path).convert("RGB")
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
            raise CanvasError(f"{path}: not a readable image ({exc})") from exc
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        scores.append(float(score_checked(reward, tensor, [args.prompt])[0]))
    for path, score in zip(args.images, scores, strict=True):
        if args.json:
            print(json.dumps({"image": str(path), "score": score}))
        else:
            print(f"{score:.6g}\t{path}")
    return 0
