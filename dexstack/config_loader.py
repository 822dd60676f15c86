"""One strict loader for dexstack's YAML configuration files: YAML -> typed, frozen dataclasses.

Every config kind (cell, robot profile, retargeting, object, calibration, motion, policy manifest) is read through
here, so they all behave the same way:

- an unknown key is refused, naming it and the keys that are known (a typo such as ``low_pass_alpa`` must not
  silently leave a filter at its default): ``unknown key 'low_pass_alpa' in <file>: known keys are ...``;
- values are checked against the dataclass field's type (``bool``, ``int``, ``float``, ``str``, ``Path``,
  ``tuple[float, float, float]``, ``tuple[X, ...]``, ``list[X]``, ``dict[K, V]``, ``X | None``, ``Literal``,
  nested dataclasses), with the key's path in the message;
- a missing key without a default is reported by name;
- the dataclass's own ``__post_init__`` checks ranges and cross-field rules; its ``ValueError`` gets the file name.

Adding a setting to a config kind is adding a dataclass field (with a default, so older files still load). Fields
that never come from the file (e.g. ``source``, the path it was read from) are marked with :func:`internal`.

:func:`resolve_data_file` is the one resolver from a config name (``tabletop``) or a path to a file.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dexstack.paths import data_path

T = TypeVar("T")

_INTERNAL = "dexstack_config_internal"


class ConfigError(ValueError):
    """A configuration file is missing, is not valid YAML, or does not match its schema; the message says where."""


def internal(default: Any = None) -> Any:
    """A dataclass field that is never read from the file (set by the loader or by code, e.g. ``source``)."""
    return dataclasses.field(default=default, compare=False, metadata={_INTERNAL: True})


def yaml_keys(cls: type) -> tuple[str, ...]:
    """The keys a file may hold for dataclass ``cls`` (its fields, less the internal ones), in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get(_INTERNAL))


def resolve_data_file(name_or_path: str | Path, folder: str, *, what: str, filename: str = "{name}.yaml",
                      error: type[Exception] = ConfigError, known_as: str = "names") -> Path:
    """The file of a named config: ``tabletop`` -> ``<data>/config/cells/tabletop.yaml`` for ``folder
    'config/cells'``; a path ending in ``.yaml``/``.yml`` is used as is. ``filename`` places a name's file inside
    the folder (``'{name}/camera.yaml'`` for calibrations). A missing file is an ``error`` listing the known names."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise error(f"{what} file '{name_or_path}' not found: it does not exist")
        return candidate.resolve()
    name = str(name_or_path)
    root = data_path(*folder.split("/"))
    path = root / filename.format(name=name)
    if not path.is_file():
        pattern = filename.format(name="*")
        known = sorted(p.relative_to(root).as_posix().split("/")[0].removesuffix(".yaml")
                       for p in root.glob(pattern)) if root.is_dir() else []
        raise error(f"unknown {what} '{name}': not found (looked for {path}); known {known_as} are {known}")
    return path


def read_yaml(path: Path, error: type[ValueError] = ConfigError) -> Any:
    """The parsed document of ``path`` (an empty file is ``{}``); unreadable files and YAML errors name the file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from None
    return {} if raw is None else raw


def _where(where: str, keypath: str) -> str:
    return f"{where} at '{keypath}'" if keypath else where


def check_keys(raw: Any, known: typing.Iterable[str], where: str, keypath: str = "",
               error: type[ValueError] = ConfigError) -> Mapping:
    """``raw`` must be a mapping whose keys are all in ``known``; returns it. For sections not (yet) shaped as a
    dataclass. The message names the first unknown key and every known one."""
    known = tuple(known)
    if not isinstance(raw, Mapping):
        raise error(f"{_where(where, keypath)}: expected a mapping, got {type(raw).__name__} {raw!r}")
    for key in raw:
        if key not in known:
            raise error(f"unknown key '{key}' in {_where(where, keypath)}: known keys are {', '.join(known)}")
    return raw


def build(cls: type[T], raw: Any, where: str, keypath: str = "", error: type[ValueError] = ConfigError,
          **internal_values: Any) -> T:
    """Dataclass ``cls`` from a parsed YAML mapping, strictly (see the module docstring). ``internal_values`` set
    fields marked :func:`internal`. Every problem is an ``error`` naming ``where`` (the file) and the key path."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    raw = check_keys(raw, yaml_keys(cls), where, keypath, error)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get(_INTERNAL):
            if f.name in internal_values:
                values[f.name] = internal_values[f.name]
            continue
        sub = f"{keypath}.{f.name}" if keypath else f.name
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise error(f"missing key '{f.name}' in {_where(where, keypath)}")
            continue
        values[f.name] = _convert(hints[f.name], raw[f.name], where, sub, error)
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, error):
            raise
        raise error(f"{_where(where, keypath)}: {exc}") from None


def load(cls: type[T], path: Path, error: type[ValueError] = ConfigError, **internal_values: Any) -> T:
    """Read ``path`` and :func:`build` ``cls`` from it."""
    return build(cls, read_yaml(path, error), str(path), error=error, **internal_values)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, where: str, keypath: str, error: type[ValueError]) -> Any:
    def fail(expected: str) -> ValueError:
        return error(f"{_where(where, keypath)}: expected {expected}, got {type(value).__name__} {value!r}")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise fail(" or ".join(_type_name(a) for a in args))
        options = [a for a in args if a is not type(None)]
        problems = []
        for option in options:
            try:
                return _convert(option, value, where, keypath, error)
            except error as exc:
                problems.append(str(exc))
        raise problems[0] if len(problems) == 1 else fail(" or ".join(_type_name(a) for a in args))
    if origin is typing.Literal:
        if value not in args:
            raise error(f"{_where(where, keypath)}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, keypath, error)
    if tp is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as text
            try:
                value = float(value)
            except ValueError:
                raise fail("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise fail("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise fail("a path")
        return Path(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail("a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where, f"{keypath}[{i}]", error) for i, v in enumerate(value))
        if len(value) != len(args):
            raise fail(f"a list of {len(args)} values")
        return tuple(_convert(a, v, where, f"{keypath}[{i}]", error) for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise fail("a list")
        return [_convert(args[0], v, where, f"{keypath}[{i}]", error) for i, v in enumerate(value)]
    if tp is dict:  # an untyped mapping: checked to be one, kept as is
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        return dict(value)
    if tp is list:
        if not isinstance(value, (list, tuple)):
            raise fail("a list")
        return list(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        key_t, value_t = args
        return {_convert(key_t, k, where, f"{keypath}", error): _convert(value_t, v, where, f"{keypath}.{k}", error)
                for k, v in value.items()}
    raise TypeError(f"config_loader cannot read fields of type {tp!r} ({keypath} in {where})")
