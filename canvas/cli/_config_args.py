"""Build argparse flags from a `...Config` dataclass, so each flag's help text has one source.

Each field becomes `--field-name` with the field's type, default and `metadata["help"]`;
`metadata["required"] = True` makes it required. Supported types: str, int, float, bool, Path and
`X | None` of those.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


def _base_type(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_config_arguments(
    parser: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = ()
) -> None:
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip or not f.init:
            continue
        kind = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        required = bool(f.metadata.get("required", False))
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text
            )
            continue
        default = None if required else f.default
        shown = "" if required or default is None else f" (default: {default})"
        parser.add_argument(
            flag,
            dest=f.name,
            type=Path if kind is Path else kind,
            default=default,
            required=required,
            help=help_text + shown,
            metavar=f.name.upper(),
        )


def config_from_args(config_cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if hasattr(args, f.name)}
    values.update(overrides)
    return config_cls(**values)
