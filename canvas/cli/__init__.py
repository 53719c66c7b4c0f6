"""`canvas`: one CLI, a sub-command group per job. Each group lives in its own module here.

A group module exposes `register(subparsers)`. Groups are listed by module name so that a new one is a
new file plus one line here. User mistakes raise `CanvasError` and are printed as one line
(`canvas: error: ...`), exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from canvas import __version__
from canvas.cli._common import PASSTHROUGH
from canvas.core.config_parser import raise_on_error
from canvas.core.errors import CanvasError

# Order is the order `canvas --help` lists them: the loop, start to end.
GROUP_MODULES = (
    "models",
    "data",
    "curate",
    "index",
    "subset",
    "generate",
    "label",
    "train",
    "score",
    "evaluate",
    "demo",
)


def _group_modules() -> list:
    return [importlib.import_module(f"canvas.cli.{name}") for name in GROUP_MODULES]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canvas",
        description="Curate image-text data, label preferences, fine-tune diffusion models on them.",
    )
    parser.add_argument("--version", action="version", version=f"canvas-rlhf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in _group_modules():
        group.register(sub)
    return parser


class _DropBeamImportNoise(logging.Filter):
    """Beam logs an irrelevant GCP-client warning when its I/O modules are imported (every Beam command):
    keep a user's screen to what concerns them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def _setup_logging(verbose: bool) -> None:
    # Libraries (open_clip, diffusers) log chatty INFO lines to the root logger: show ours only.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("canvas").setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(f, _DropBeamImportNoise) for f in logging.getLogger().filters):
        logging.getLogger().addFilter(_DropBeamImportNoise())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    verbose = bool(argv) and argv[0] in ("-v", "--verbose")
    command = argv[1:] if verbose else argv
    # Commands with their own parser (train: parse_config_command) get the raw arguments after their command path.
    path = next((p for p in PASSTHROUGH if tuple(command[: len(p)]) == p), None)
    if path is not None:
        _setup_logging(verbose)
        return _run(lambda: PASSTHROUGH[path](command[len(path) :]))
    return _run(lambda: _dispatch(parser, argv))


def _dispatch(parser: argparse.ArgumentParser, argv: list[str]) -> int | None:
    _one_line_errors(parser)
    args, unknown = parser.parse_known_args(argv)
    _setup_logging(args.verbose)
    if unknown and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.extra_args = unknown
    return args.func(args)


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Every parser of the tree reports a mistake as a CanvasError: one line, exit 2, no usage block."""
    raise_on_error(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _one_line_errors(child)


_PATH_ERRORS = {
    FileExistsError: "already exists, and is not a folder this command can write into",
    NotADirectoryError: "part of this path is a file, where a folder was expected",
    IsADirectoryError: "is a folder, where a file was expected",
    PermissionError: "permission denied",
}


def _run(call: Callable[[], int | None]) -> int:
    """Run a command; user mistakes become one line on stderr and exit code 2."""
    try:
        return int(call() or 0)
    except CanvasError as exc:
        print(f"canvas: error: {exc}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        # The user's paths (a file where an output folder goes, a folder given for a file), not a bug:
        # one line naming the path, as for every other mistake.
        print(f"canvas: error: {exc.filename}: {_PATH_ERRORS[type(exc)]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("canvas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
