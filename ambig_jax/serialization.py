"""Typed JSON for the project's frozen dataclasses: `to_json` writes plain JSON values, and
`from_json(cls, data)` rebuilds `cls` from its field annotations, so every tool that reads a run
(replay, benchmark, plots) gets the same typed record instead of a dict read by string keys.

Annotations understood: dataclasses, `X | None`, `tuple[X, ...]`, `tuple[X, Y]`, `list[X]`,
`dict[str, X]`, `np.ndarray` (a nested list back to an array), int, float, str, bool, `object`.
"""

import dataclasses
import types
import typing

import numpy as np


def to_json(value):
    """A dataclass, dict, list, tuple or numpy value as plain JSON values (lists and dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_json(cls, data, where: str = ""):
    """Rebuilds a value of type `cls` from `to_json`'s output.

    Fields missing from `data` take their defaults (a record written before the field existed);
    unknown fields raise, since they mean the record and the code disagree.

    Raises:
      ValueError: naming the field path and the problem.
    """
    where = where or getattr(cls, "__name__", str(cls))
    origin, args = typing.get_origin(cls), typing.get_args(cls)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{where}: cannot read a union of {options}")
        return from_json(options[0], data, where)
    if dataclasses.is_dataclass(cls):
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where}: unknown fields {unknown}; known: {sorted(names)}")
        return cls(**{name: from_json(hints[name], value, f"{where}.{name}")
                      for name, value in data.items()})
    if cls is np.ndarray:
        return np.asarray(data)
    if origin is tuple:
        _expect(data, list, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        if len(args) != len(data):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(data)}")
        return tuple(from_json(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data)))
    if origin is list:
        _expect(data, list, where)
        return [from_json(args[0], v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        _expect(data, dict, where)
        return {k: from_json(args[1], v, f"{where}[{k!r}]") for k, v in data.items()}
    if cls is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ValueError(f"{where}: expected a number, got {data!r}")
        return float(data)
    if cls in (int, str, bool):
        if type(data) is not cls:
            raise ValueError(f"{where}: expected {cls.__name__}, got {data!r}")
        return data
    return data  # object, typing.Any


def _expect(data, kind, where):
    if not isinstance(data, kind):
        raise ValueError(f"{where}: expected a {kind.__name__}, got {type(data).__name__}")
