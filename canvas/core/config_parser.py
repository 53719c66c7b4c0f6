"""One way to configure a command: a `...Config` dataclass gives the flags, `--config FILE.yaml` sets any of
its fields, and flags given on the command line override the file (trl's TrlParser / HfArgumentParser
semantics), checked before any work starts.

Each field becomes `--field_name` (also spelt `--field-name`, plus any `metadata["aliases"]`) with the field's type and `metadata["help"]`;
a config class's `DEPRECATED_KEYS = {"old_name": "new_name"}` keeps old names working, as a `--old_name` flag
and as a YAML key, each with a one-line deprecation warning;
`metadata["required"] = True` makes it required (from a flag or the file). A bool field is `--flag`,
`--flag true|false` or `--no_flag`; a list field takes several values (with `metadata["action"] = "append"`
the flag may also repeat, `--text A --text B`, argparse's append); a `Literal` field its choices. An alias
may be a short flag (`"aliases": ["-k"]`).
Every mistake (unknown key or flag, with a suggestion; wrong type; broken YAML; a value the config's own
`__post_init__` refuses) is a `CanvasError`: one line, exit 2. Plain argparse, so `--help` imports
nothing heavy.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from canvas.core.errors import CanvasError

C = TypeVar("C")
log = logging.getLogger(__name__)


def deprecated_keys(config_cls: type) -> dict[str, str]:
    """`{old field name: new field name}` of a config class (its `DEPRECATED_KEYS`, if any)."""
    return dict(getattr(config_cls, "DEPRECATED_KEYS", {}))


class _DeprecatedFlag(argparse.Action):
    """Stores the value under the new field's name, after a one-line deprecation warning."""

    def __init__(self, *args: Any, new_name: str = "", **kwargs: Any) -> None:
        self.new_name = new_name
        super().__init__(*args, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        log.warning("%s is deprecated: use --%s instead", option_string, self.new_name)
        setattr(namespace, self.dest, self.const if values is None else values)


def _unwrap_optional(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _to_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _as_typed(default: Any) -> str:
    """A default as the user would type it: true/false, a list as its values, not Python's repr."""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list | tuple):
        return " ".join(str(v) for v in default)
    return str(default)


def add_config_arguments(
    parser: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = ()
) -> None:
    """`--config FILE.yaml` plus one flag per field of `config_cls` (defaults stay the dataclass's)."""
    raise_on_error(parser)
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of field: value (flags override it)")
    hints = typing.get_type_hints(config_cls)
    renamed: dict[str, list[str]] = {}
    for old, new in deprecated_keys(config_cls).items():
        renamed.setdefault(new, []).append(old)
    taken = {a for f in dataclasses.fields(config_cls) for a in f.metadata.get("aliases", [])}
    for f in dataclasses.fields(config_cls):
        if f.name in skip or not f.init:
            continue
        kind = _unwrap_optional(hints[f.name])
        names = [f"--{f.name}", *(a for a in f.metadata.get("aliases", []) if a != f"--{f.name}")]
        # old names (`DEPRECATED_KEYS`) still parse, with a warning; hidden from --help
        old_flags = [f"--{old}" for old in renamed.get(f.name, []) if f"--{old}" not in taken]
        if old_flags:
            parser.add_argument(
                *old_flags, dest=f.name, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                action=_DeprecatedFlag, new_name=f.name, **_value_kwargs(f.name, kind, with_action=False),
            )  # fmt: skip
        help_text = f.metadata.get("help", "")
        if old_flags:
            help_text += f" (formerly {', '.join(old_flags)})"
        if f.metadata.get("required"):
            help_text += " (required)"
        elif f.default is not dataclasses.MISSING and f.default not in (None, ""):
            help_text += f" (default: {_as_typed(f.default)})"
        # SUPPRESS: only flags the user gave land in the namespace, so the file's values are not overridden
        # by defaults and the dataclass keeps the one definition of each default.
        common: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        value_kwargs = _value_kwargs(f.name, kind)
        if f.metadata.get("action") == "append":  # repeated flags add up: --text A --text B (or --text A B)
            value_kwargs["action"] = "extend"
        if f.metadata.get("choices"):  # choices known only at run time (a registry), not as a Literal
            value_kwargs["choices"] = list(f.metadata["choices"])
        parser.add_argument(*names, **value_kwargs, **common)
        if "_" in f.name:  # --field-name works too, without doubling every line of --help
            hidden = {**common, "help": argparse.SUPPRESS}
            parser.add_argument(f"--{f.name.replace('_', '-')}", **value_kwargs, **hidden)
        if kind is bool:
            negated = dict.fromkeys([f"--no_{f.name}", f"--no-{f.name.replace('_', '-')}"])
            parser.add_argument(
                *negated, dest=f.name, action="store_false", default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )


class _TupleAction(argparse.Action):
    def __call__(
        self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        setattr(namespace, self.dest, tuple(values))


def _value_kwargs(name: str, kind: Any, with_action: bool = True) -> dict[str, Any]:
    """argparse's type / nargs / choices / metavar (/ action) for a field of type `kind`."""
    if kind is bool:
        return {"nargs": "?", "const": True, "type": _to_bool, "metavar": "true|false"}
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Literal:
        return {"choices": args, "type": type(args[0]), "metavar": name.upper()}
    if origin in (list, tuple):  # list[X] and tuple[X, ...]: several values
        several = {"nargs": "+", "type": args[0] if args else str, "metavar": name.upper()}
        return {**several, "action": _TupleAction} if origin is tuple and with_action else several
    return {"type": kind if callable(kind) else str, "metavar": name.upper()}


def must_exist(flag: str, path: str | Path | None) -> None:
    """CanvasError (one line naming the flag) unless `path` exists; None passes (an unset optional path)."""
    if path is not None and not Path(path).expanduser().exists():
        raise CanvasError(f"{flag} {path}: no such file or directory")


def config_from_args(
    config_cls: type[C], args: argparse.Namespace, sections: tuple[str, ...] = (), **overrides: Any
) -> C:
    """`config_cls` from `--config`'s file (if given; `sections` as in `load_config_file`), then the flags
    given, then `overrides`."""
    path = getattr(args, "config", None)
    values = load_config_file(config_cls, path, sections) if path else {}
    names = [f.name for f in dataclasses.fields(config_cls) if f.init]
    values.update({name: getattr(args, name) for name in names if hasattr(args, name)})
    values.update(overrides)
    _expand_home(config_cls, values)
    missing = [
        f.name
        for f in dataclasses.fields(config_cls)
        if f.metadata.get("required") and not values.get(f.name)
    ]
    if missing:
        raise CanvasError(f"--{missing[0]} is required (as a flag or a key of --config)")
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise CanvasError(str(exc).splitlines()[0]) from exc


def _expand_home(config_cls: type, values: dict[str, Any]) -> None:
    """`~/x` in a path field (a quoted flag, a YAML value) is the home folder's, as the shell would make it:
    left alone it became a folder named `~` in the working directory."""
    hints = typing.get_type_hints(config_cls)
    for name, value in values.items():
        kind = hints.get(name)
        kinds = (
            typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
        )
        if Path in kinds and isinstance(value, str | Path) and str(value).startswith("~"):
            values[name] = Path(value).expanduser()


def parse_config_command(config_cls: type[C], argv: list[str], prog: str, description: str) -> C:
    """`config_cls` from `[--config FILE.yaml] [--field VALUE ...]`, for a command that owns its arguments."""
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)
    add_config_arguments(parser, config_cls)
    return config_from_args(config_cls, parser.parse_args(argv))


def raise_on_error(parser: argparse.ArgumentParser) -> None:
    """argparse's usage-and-exit on a bad flag becomes a `CanvasError` (one line, with a suggestion)."""

    def error(message: str) -> typing.NoReturn:
        flags = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
        match = re.match(r"unrecognized arguments: (\S+)", message)
        hint = _did_you_mean(match.group(1).split("=")[0], flags) if match else ""
        raise CanvasError(message + hint)

    parser.error = error  # type: ignore[method-assign]


# -- YAML values, checked against the dataclass ---------------------------------------------------------
# A YAML value must have its field's type:
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
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise CanvasError(f"{name}: expected a list, got {_describe(value)}")
        inner = args[0] if args else Any
        checked = [_check_value(f"{name}[{i}]", inner, v) for i, v in enumerate(value)]
        return tuple(checked) if origin is tuple else checked
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


def load_config_file(config_cls: type, path: str | Path, sections: tuple[str, ...] = ()) -> dict[str, Any]:
    """The YAML mapping at `path` as `{field: value}` checked against `config_cls`'s fields and types.

    `sections`: top-level keys another loader reads from the same file (curate's stage sections); skipped.
    """
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
    renamed = deprecated_keys(config_cls)
    out = {}
    for key, value in data.items():
        if key in sections:
            continue
        if key in renamed and key not in fields:
            new = renamed[key]
            if new in data:
                raise CanvasError(f"{path}: both {key!r} and {new!r} are set; keep only {new!r}")
            log.warning("%s: key %r is deprecated: use %r instead", path, key, new)
            key = new
        if key not in fields:
            raise CanvasError(f"{path}: unknown key {key!r}{_did_you_mean(str(key), list(fields))}")
        try:
            out[key] = _check_value(key, hints[key], value, fields[key].metadata.get("choices"))
        except CanvasError as exc:
            raise CanvasError(f"{path}: {exc}") from exc
    return out
