"""`canvas`: one CLI, a sub-command group per job. Each group lives in its own module here.

User mistakes raise `CanvasError` and are printed as one line (`canvas: error: ...`), exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from canvas import __version__
from canvas.cli import curate, data, demo, evaluate, generate, label, models, train
from canvas.errors import CanvasError

# Order is the order `canvas --help` lists them: the loop, start to end.
GROUPS = (models, data, curate, generate, label, train, evaluate, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canvas",
        description="Curate image-text data, label preferences, fine-tune diffusion models on them.",
    )
    parser.add_argument("--version", action="version", version=f"canvas-rlhf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # Libraries (open_clip, diffusers) log chatty INFO lines to the root logger: show ours only.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    for ours in ("canvas", "curation", "pipelines", "labeling", "rlhf"):
        logging.getLogger(ours).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if unknown and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.extra_args = unknown
    try:
        return int(args.func(args) or 0)
    except CanvasError as exc:
        print(f"canvas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("canvas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
