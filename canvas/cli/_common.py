"""Small helpers shared by the CLI modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from canvas.errors import CanvasError

Handler = Callable[[argparse.Namespace], int | None]


def add_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command group (`canvas NAME ...`) whose own sub-commands are required."""
    parser = sub.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def not_built(issue: int, what: str) -> Handler:
    """Handler for a command whose implementation has not landed yet: one clear line, exit 2."""

    def handler(args: argparse.Namespace) -> int:
        raise CanvasError(f"`{what}` is not available yet (tracked in issue {issue})")

    return handler


def existing_path(value: str) -> Path:
    """argparse type: a path that must exist."""
    path = Path(value).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file or directory: {value}")
    return path
