"""Configs as dataclasses: load from YAML with ``key=value`` overrides, save the resolved result.

Every runnable config (eval, SFT, RL, serve) is a dataclass whose fields are
documented where they are declared and validated in ``__post_init__`` with
``require`` (every failed check is reported, each quoting the values).
``load_config(EvalConfig, "configs/eval_tiny.yaml", ["runtime.capacity=3"])``
builds one: nested dataclasses come from nested mappings, overrides use dotted
paths and YAML values (``samples=4``, ``modes=[sequential,asyncthink]``), and
an unknown key is an error that names the key and the known ones. Runs write
``save_config`` output next to their results so they can be reproduced.

``from_dict`` is the one way a mapping becomes a config: a config built in
code with a mapping for a nested section (``ServeConfig(limits={...})``)
calls ``build_nested(self)`` first in its ``__post_init__``, which hands each
such mapping to ``from_dict``. Command lines take their defaults from the
classes (``default_of``), so a default is written once, where it is declared.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def require(*checks: tuple[bool, str]) -> None:
    """Config validation's one pattern: raise ``ValueError`` naming every ``(ok, message)`` that failed."""
    failed = [message for ok, message in checks if not ok]
    if failed:
        raise ValueError("; ".join(failed))


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from a YAML file (optional) and ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file must hold a mapping, got {type(loaded).__name__}")
        data = loaded
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        _set_dotted(data, key.strip(), yaml.safe_load(raw))
    return from_dict(cls, data)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise ValueError(f"override {key!r}: {part!r} is not a section")
    data[parts[-1]] = value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursively; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, f"{where}{name}") for name, value in data.items()}
    return cls(**kwargs)


def build_nested(obj: Any) -> None:
    """Turn each mapping that ``obj`` holds in a dataclass-typed field into that dataclass (``from_dict``)."""
    for name, target in _nested_fields(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, dict):
            setattr(obj, name, from_dict(target, value, f"{name}."))


@functools.cache
def _nested_fields(cls: type) -> tuple[tuple[str, type], ...]:
    # once per class: type hints are slow to resolve, and runtime configs are rebuilt per request by the server
    hints = typing.get_type_hints(cls)
    found = ((f.name, _dataclass_in(hints[f.name])) for f in dataclasses.fields(cls))
    return tuple((name, target) for name, target in found if target is not None)


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (a command line's default, or its help text's)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            if f.default is dataclasses.MISSING:
                raise ValueError(f"{cls.__name__}.{name} has no default")
            return f.default
    raise ValueError(f"{cls.__name__} has no field {name!r}")


def _convert(hint: Any, value: Any, where: str) -> Any:
    target = _dataclass_in(hint)
    if target is not None and isinstance(value, dict):
        return from_dict(target, value, where + ".")
    if isinstance(value, str) and _is_float(hint):
        return _parse_float(value, where)
    return value


def _is_float(hint: Any) -> bool:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return hint is float or (union and float in typing.get_args(hint))


def _parse_float(text: str, where: str) -> float:
    # YAML 1.1 reads "3e-5" (no dot) as a string; a float field takes it as the number it spells
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: expected a number, got {text!r}") from None


def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def to_dict(obj: Any) -> Any:
    """Plain data (for YAML/JSON) from a dataclass tree; enums become their values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_config(obj: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))
    return path
