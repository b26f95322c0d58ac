"""Typed dataclass fields built from plain data (YAML): each value checked against its annotation and
range, unknown and duplicate keys refused, every error a `ConfigError` naming the key."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import field
from typing import Any

import yaml

from .errors import ConfigError, short

MAX_YAML_BYTES = 1 << 20


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict[str, Any]:
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


def ranged_field(default: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> Any:
    """A field with a default and an allowed range (checked by `build`)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=_range(lo, hi, lo_open=lo_open))
    return field(default=default, metadata=_range(lo, hi, lo_open=lo_open))


def check_value(value: Any, tp: Any, meta: Any, where: str) -> Any:
    """`value` checked against the annotation `tp` and the field's range; returns the value to store."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is getattr(types, "UnionType", typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and str in args:  # a number field that also takes "auto"
            if value != "auto":
                raise ConfigError(f"{where}: expected a number or auto, got {short(value)}")
            return value
        tp = next(a for a in args if a not in (type(None), str))
        origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: expected a non-empty list, got {short(value)}")
        (item,) = typing.get_args(tp)
        return [check_value(v, item, meta, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {short(value)}")
        if abs(value) >= 2**63:  # no setting needs more; torch and numpy seeds overflow beyond
            raise ConfigError(f"{where}: {short(str(value), 24)} is out of range")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {short(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {short(value)}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {short(value)}")
        return value
    if meta:
        lo, hi = meta.get("lo"), meta.get("hi")
        if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
            raise ConfigError(f"{where}: must be {'>' if meta.get('lo_open') else '>='} {lo}, got {short(value)}")
        if hi is not None and value > hi:
            raise ConfigError(f"{where}: must be <= {hi}, got {short(str(value), 24)}")
    return value


def build(cls: type, data: Any, where: str) -> Any:
    """An instance of the dataclass `cls` from the mapping `data` (None: all defaults), every value
    checked against its annotation and range; nested dataclasses from nested mappings."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {short(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {short(sorted(map(str, unknown)))}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, value, f"{where}.{name}")
        else:
            kwargs[name] = check_value(value, tp, fields[name].metadata, f"{where}.{name}")
    return cls(**kwargs)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""


# YAML 1.1 reads 1e6 and 1e-9 as strings (its floats need a dot); a config means numbers.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789.")
)


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (list, dict)):
            raise ConfigError(f"line {key_node.start_mark.line + 1}: a key must be a plain value")
        if key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {short(key)}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(text: str, where: str) -> Any:
    """The YAML `text` parsed with unique keys and numeric exponents; ConfigError naming `where` if invalid."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{where}: config file is larger than {MAX_YAML_BYTES} bytes")
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML ({str(e).splitlines()[0][:200]})") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise ConfigError(f"{where}: invalid value ({str(e).split(':')[0][:80]})") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`section.key=value` strings (value in YAML syntax) set into a nested config dict."""
    data = dict(data or {})
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {short(item)}: expected section.key=value, e.g. clustering.max_num_speakers=4")
        value = read_yaml(raw, f"--set {key}")
        node = data
        for p in parts[:-1]:
            child = node.get(p)
            node[p] = dict(child) if isinstance(child, dict) else {}
            node = node[p]
        node[parts[-1]] = value
    return data
