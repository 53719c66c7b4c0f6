"""Build argparse flags from a `...Config` dataclass, so each flag's help text has one source.

`parse_config_command` is the one loader of `canvas train dpo|sft|ddpo|reward`: flags plus a checked
`--config FILE.yaml`.

Each field becomes `--field-name` with the field's type, default and `metadata["help"]`;
`metadata["required"] = True` makes it required. Supported types: str, int, float, bool, Path and
`X | None` of those.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from canvas.core.errors import CanvasError

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


# -- `canvas train ...`: dataclass flags + `--config FILE.yaml`, checked before any model loads ----------
# One loader for every trainer (dpo, sft, ddpo, reward). A YAML value must have its field's type:
# an int field takes an int (10.0 and 3.5 are refused, as `--max_steps 10.0` is on the command line), a
# float field an int or float or a number YAML 1.1 reads as text (`1e-4`), a str field text or a number,
# a bool field true/false, a list field a list. Unknown keys get a did-you-mean suggestion.

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _check_value(name: str, annotation: Any, value: Any, choices: Any = None) -> Any:
    """`value` converted to the field's type, or a CanvasError naming the field (the caller adds the file)."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        if value is None and type(None) in args:
            return None
        return _check_value(name, next(a for a in args if a is not type(None)), value, choices)
    if typing.get_origin(annotation) is typing.Literal:
        choices = args
        annotation = type(args[0])
    origin = typing.get_origin(annotation) or annotation
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "text", Path: "a path"}
    if origin is list:
        if not isinstance(value, list):
            raise CanvasError(f"{name}: expected a list, got {_describe(value)}")
        inner = args[0] if args else Any
        return [_check_value(f"{name}[{i}]", inner, v) for i, v in enumerate(value)]
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as text
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif annotation in (str, Path):
        ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        if isinstance(value, bool):
            hint = " (YAML reads unquoted yes/no/on/off/true/false as a boolean: put the value in quotes)"
            raise CanvasError(f"{name}: expected text, got {_describe(value)}{hint}")
        value = annotation(value) if ok else value
    else:
        return value  # a type this loader does not know: left to the config's own checks
    if not ok:
        raise CanvasError(f"{name}: expected {expected[annotation]}, got {_describe(value)}")
    if choices and value not in choices:
        raise CanvasError(f"{name}: expected one of {', '.join(map(str, choices))}, got {_describe(value)}")
    return value


def _did_you_mean(word: str, names: list[str]) -> str:
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_config_file(config_cls: type, path: str | Path) -> dict[str, Any]:
    """The YAML mapping at `path` as `{field: value}` checked against `config_cls`'s fields and types."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CanvasError(f"config file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CanvasError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise CanvasError(f"{where}: not valid YAML: {' '.join(str(problem).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CanvasError(
            f"{path}: expected a mapping of field: value at the top level, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    out = {}
    for key, value in data.items():
        if key not in fields:
            raise CanvasError(f"{path}: unknown key {key!r}{_did_you_mean(str(key), list(fields))}")
        try:
            out[key] = _check_value(key, hints[key], value, fields[key].metadata.get("choices"))
        except CanvasError as exc:
            raise CanvasError(f"{path}: {exc}") from exc
    return out


def _pop_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    rest, found = [], []
    it = iter(argv)
    for arg in it:
        if arg == "--config":
            value = next(it, None)
            if value is None or value.startswith("--"):
                raise CanvasError("--config needs a YAML file")
            found.append(value)
        elif arg.startswith("--config="):
            found.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    if len(found) > 1:
        raise CanvasError("--config given more than once")
    return (found[0] if found else None), rest


def parse_config_command(config_cls: type[C], argv: list[str], prog: str, description: str) -> C:
    """`config_cls` from `[--config FILE.yaml] [--field VALUE ...]` (flags override the file).

    Every user mistake (unknown key or flag, wrong type, broken YAML, a value the config's own
    `__post_init__` refuses) is a `CanvasError`: one line, before any model loads. `--help` prints help.
    """
    from transformers import HfArgumentParser

    path, argv = _pop_config_flag(list(argv))
    values = load_config_file(config_cls, path) if path else {}
    parser = HfArgumentParser((config_cls,), prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of field: value (flags override it)")

    def error(message: str) -> typing.NoReturn:
        raise CanvasError(message)

    parser.error = error  # type: ignore[method-assign]  # argparse's usage + exit -> one line, exit 2
    parser.set_defaults(**values)
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
        first = next((u for u in unknown if u.startswith("-")), unknown[0])
        raise CanvasError(
            f"unrecognized arguments: {' '.join(unknown)}{_did_you_mean(first.split('=')[0], flags)}"
        )
    return config_cls(
        **{f.name: getattr(namespace, f.name) for f in dataclasses.fields(config_cls) if f.init}
    )
