"""Small helpers shared by the CLI modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

Handler = Callable[[argparse.Namespace], int | None]


def add_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command group (`canvas NAME ...`) whose own sub-commands are required."""
    parser = sub.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def existing_path(value: str) -> Path:
    """argparse type: a path that must exist."""
    path = Path(value).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file or directory: {value}")
    return path


# Commands that parse their own argv, keyed by their command path, e.g. ("train", "dpo").
PASSTHROUGH: dict[tuple[str, ...], Callable[[list[str]], int | None]] = {}


def add_passthrough(
    group: argparse._SubParsersAction,
    path: tuple[str, ...],
    help: str,
    func: Callable[[list[str]], int | None],
) -> None:
    """A command that parses its own arguments (`canvas train`: `canvas.core.config_parser.parse_config_command`).

    `canvas` hands `func` the raw arguments after the command path, `--help` included, so the command's
    own parser documents every flag. Build that parser with `prog="canvas " + " ".join(path)`.
    """
    group.add_parser(path[-1], help=help, description=help, add_help=False)
    PASSTHROUGH[path] = func
