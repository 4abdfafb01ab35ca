"""Reading and validating the model's data files (catalog, model and calibration TOML), in one
place: a file is read with every way it can be unreadable turned into one error naming it, and
a table is checked against a field spec (unknown keys, missing keys, types, bounds, choices,
sourced numbers), each failure one ModelInputError naming the file and the key."""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from clusters.errors import ModelInputError

# A data file is a few kilobytes; anything much larger is not one of ours.
MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Field:
    """What one key holds.

    kind: "str", "bool", "int", "float" (plain values); "sourced" (a table
    { value = ..., source = "...", note = "..." }); "str_list" (non-empty list of regexes);
    "dtype_map" (a table of dtype -> sourced number); "table" (a sub-table checked against
    `spec`); "table_list" (an array of such tables); "table_map" (a table of name -> such
    table); "str_map" (a table of non-empty strings); "number_rows" (a non-empty list of
    `width` finite non-negative numbers each). Numbers must lie in (lo, hi], or
    [lo, hi] with `lo_inclusive`; `integer` for sourced integers."""

    kind: str
    required: bool = True
    lo: float = 0.0
    hi: float = math.inf
    lo_inclusive: bool = False
    integer: bool = False
    choices: tuple = ()
    spec: Mapping[str, "Field"] = field(default_factory=dict)
    keys: tuple = ()  # dtype_map: the allowed keys
    width: int = 0  # number_rows: numbers per row


def read_toml(path: str | Path, what: str = "data") -> dict[str, Any]:
    """The parsed document; a missing, unreadable, binary, oversized or malformed file is one
    error naming the file."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ModelInputError(f"{path}: is a directory, not a {what} file")
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ModelInputError(f"{path}: no such file (a {what} file was expected)") from None
    except OSError as exc:
        raise ModelInputError(f"{path}: cannot read the {what} file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ModelInputError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not a {what} file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelInputError(f"{path}: not UTF-8 text; not a {what} file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelInputError(f"{path}: malformed TOML: {exc}") from None
    except RecursionError:
        raise ModelInputError(f"{path}: malformed TOML: nested too deeply") from None


@dataclass
class Checked:
    """Validated values, and the source and note of every sourced number, by key path."""

    values: dict
    sources: dict
    notes: dict


def _number(where, key, value, spec: Field, integer: bool):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(float(value)):
        raise ModelInputError(f"{where}: key {key!r} value must be a finite number, got {value!r}")
    if integer and value != int(value):
        raise ModelInputError(f"{where}: key {key!r} value {value!r} must be an integer")
    if spec.lo_inclusive and not value >= spec.lo:
        raise ModelInputError(f"{where}: key {key!r} value {value!r} must be at least {spec.lo:g}")
    if not spec.lo_inclusive and not value > spec.lo:
        raise ModelInputError(f"{where}: key {key!r} value {value!r} must be greater than {spec.lo:g}")
    if value > spec.hi:
        raise ModelInputError(f"{where}: key {key!r} value {value!r} is impossible (above "
                              f"{spec.hi:g}); check the units")
    return int(value) if integer else float(value)


def _sourced(where, key, raw, spec: Field, out: Checked):
    if not isinstance(raw, dict):
        raise ModelInputError(f"{where}: key {key!r} must be a table {{ value = ..., source = "
                              f"\"...\" }}, got {raw!r}")
    unknown = set(raw) - {"value", "source", "note"}
    if unknown:
        raise ModelInputError(f"{where}: key {key!r} has unknown field(s) {sorted(unknown)} "
                              "(allowed: value, source, note)")
    if "value" not in raw:
        raise ModelInputError(f"{where}: key {key!r} has no value")
    src = raw.get("source")
    if not isinstance(src, str) or not src.strip():
        raise ModelInputError(f"{where}: key {key!r} has no source")
    if "note" in raw and not isinstance(raw["note"], str):
        raise ModelInputError(f"{where}: key {key!r} note must be a string")
    value = _number(where, key, raw["value"], spec, spec.integer)
    out.sources[key] = src
    if "note" in raw:
        out.notes[key] = raw["note"]
    return value


def check(where, data, spec: Mapping[str, Field], section: str = "") -> Checked:
    """`data` checked against `spec`; keys named `section.key` in errors and sources."""
    prefix = f"{section}." if section else ""
    out = Checked({}, {}, {})
    if not isinstance(data, dict):
        raise ModelInputError(f"{where}: [{section or 'document'}] must be a table")
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise ModelInputError(f"{where}: unknown key {prefix + unknown[0]!r} (allowed: "
                              f"{', '.join(spec)})")
    for key, f in spec.items():
        name = prefix + key
        if key not in data:
            if f.required:
                raise ModelInputError(f"{where}: missing key {name!r}")
            out.values[key] = None
            continue
        raw = data[key]
        if f.kind == "str":
            if not isinstance(raw, str) or not raw.strip():
                raise ModelInputError(f"{where}: key {name!r} must be a non-empty string, got {raw!r}")
            if f.choices and raw not in f.choices:
                raise ModelInputError(f"{where}: key {name!r} is {raw!r}; expected one of "
                                      f"{', '.join(f.choices)}")
            value = raw
        elif f.kind == "bool":
            if not isinstance(raw, bool):
                raise ModelInputError(f"{where}: key {name!r} must be true or false, got {raw!r}")
            value = raw
        elif f.kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise ModelInputError(f"{where}: key {name!r} must be int, got {raw!r}")
            value = _number(where, name, raw, f, True)
        elif f.kind == "float":
            value = _number(where, name, raw, f, False)
        elif f.kind == "sourced":
            value = _sourced(where, name, raw, f, out)
        elif f.kind == "str_list":
            if not isinstance(raw, list) or not raw or not all(isinstance(s, str) and s for s in raw):
                raise ModelInputError(f"{where}: key {name!r} must be a non-empty list of strings")
            for pattern in raw:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ModelInputError(f"{where}: key {name!r} has a bad regex {pattern!r}: "
                                          f"{exc}") from None
            value = tuple(raw)
        elif f.kind == "dtype_map":
            if not isinstance(raw, dict) or not raw:
                raise ModelInputError(f"{where}: key {name!r} must be a table of dtypes "
                                      f"({', '.join(f.keys)})")
            value = {}
            for dtype, entry in raw.items():
                if dtype not in f.keys:
                    raise ModelInputError(f"{where}: key '{name}.{dtype}' is not a known dtype "
                                          f"(allowed: {', '.join(f.keys)})")
                value[dtype] = _sourced(where, f"{name}.{dtype}", entry, f, out)
        elif f.kind == "table":
            sub = check(where, raw, f.spec, name)
            out.sources.update(sub.sources)
            out.notes.update(sub.notes)
            value = sub.values
        elif f.kind in ("table_list", "table_map"):
            items = enumerate(raw) if f.kind == "table_list" and isinstance(raw, list) else \
                raw.items() if f.kind == "table_map" and isinstance(raw, dict) else None
            if items is None:
                raise ModelInputError(f"{where}: key {name!r} must be "
                                      f"{'an array of tables' if f.kind == 'table_list' else 'a table of tables'}")
            value = [] if f.kind == "table_list" else {}
            for k, item in items:
                sub = check(where, item, f.spec, f"{name}.{k + 1 if f.kind == 'table_list' else k}")
                if f.kind == "table_list":
                    value.append(sub.values)
                else:
                    value[k] = sub.values
        elif f.kind == "number_rows":
            ok = isinstance(raw, list) and raw and all(
                isinstance(r, list) and len(r) == f.width and all(
                    not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)
                    and x >= 0 for x in r) for r in raw)
            if not ok:
                raise ModelInputError(f"{where}: key {name!r} must be a list of rows of {f.width} "
                                      "non-negative numbers")
            value = [[float(x) for x in r] for r in raw]
        elif f.kind == "str_map":
            if not isinstance(raw, dict) or not all(
                    isinstance(v, str) and v.strip() for v in raw.values()):
                raise ModelInputError(f"{where}: [{name}] must be a table of non-empty strings")
            value = dict(raw)
        else:  # pragma: no cover - a bug in a field table
            raise AssertionError(f.kind)
        out.values[key] = value
    return out
