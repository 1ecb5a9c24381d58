"""TOML writing (the standard library only reads TOML): pydantic models and plain data to text
that `tomllib` reads back to the same values.

Strings are written in plain ASCII with TOML escapes (so any character survives, emoji
included); floats may be inf, -inf or nan; a model field that is None and whose default is None
is left out (it means "default"). What TOML cannot hold (null, arbitrary objects, lone
surrogates) raises `TomlWriteError` naming where it is.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class TomlWriteError(ValueError):
    """A value cannot be written as TOML; the message names where it is."""


_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(s: str, where: str) -> str:
    """A TOML basic string in plain ASCII: TOML escapes, \\uXXXX / \\UXXXXXXXX beyond ASCII."""
    out = []
    for ch in s:
        code = ord(ch)
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif 0xD800 <= code <= 0xDFFF:
            raise TomlWriteError(
                f"{where}: the string {s!r} holds a lone surrogate (U+{code:04X}), which is no "
                "character and cannot be written as TOML"
            )
        elif code < 0x20 or code == 0x7F or (0x80 <= code <= 0xFFFF):
            out.append(f"\\u{code:04X}")
        elif code > 0xFFFF:
            out.append(f"\\U{code:08X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str, where: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else _toml_string(key, where)


def _toml_data(value: Any, where: str) -> Any:
    """`value` as TOML-writable data; TomlWriteError for what TOML cannot hold (None, objects).

    A model field that is None and whose default is None is left out (it means "default").
    """
    if isinstance(value, BaseModel):
        out = {}
        for name, field in type(value).model_fields.items():
            v = getattr(value, name)
            at = f"{where}.{name}" if where else name
            if v is None and field.default is None:
                continue
            if v is None:
                raise TomlWriteError(
                    f"{at} is None, which TOML cannot write (it has no null), and its default is "
                    f"{field.get_default(call_default_factory=True)!r}: give it a value"
                )
            out[name] = _toml_data(v, at)
        return out
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TomlWriteError(f"{where}: key {bad[0]!r} is not a string (TOML keys are strings)")
        return {k: _toml_data(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_toml_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None:
        raise TomlWriteError(
            f"{where} is None, which TOML cannot write (it has no null): drop the key"
        )
    if isinstance(value, (bool, int, float, str)):
        return value
    raise TomlWriteError(
        f"{where}: a {type(value).__name__} cannot be written as TOML "
        "(allowed: str, int, float, bool, lists and tables of them)"
    )


def _toml_value(v: Any, where: str) -> str:
    """One TOML value on one line (tables inline)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v, where)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x, f"{where}[{i}]") for i, x in enumerate(v)) + "]"
    items = ", ".join(
        f"{_toml_key(k, where)} = {_toml_value(x, f'{where}.{k}')}" for k, x in v.items()
    )
    return "{ " + items + " }" if items else "{}"


def _is_table_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _inline(v: Any) -> bool:
    """Whether `v` is written as `key = value` (else as a sub-table or an array of tables)."""
    return not (isinstance(v, dict) and v) and not _is_table_list(v)


def _toml_table(data: dict[str, Any], path: list[str], out: list[str]) -> None:
    """Key/values of one table, then its sub-tables and arrays of tables (TOML's order)."""
    where = ".".join(path)
    for k, v in data.items():
        if _inline(v):
            out.append(f"{_toml_key(k, where)} = {_toml_value(v, f'{where}.{k}')}")
    for k, v in data.items():
        sub = [*path, k]
        header = ".".join(_toml_key(p, where) for p in sub)
        if isinstance(v, dict) and v:
            if any(_inline(x) for x in v.values()):  # else its sub-tables define it
                out += ["", f"[{header}]"]
            _toml_table(v, sub, out)
        elif _is_table_list(v):
            for item in v:
                out += ["", f"[[{header}]]"]
                _toml_table(item, sub, out)


def dumps_model(model: BaseModel) -> str:
    """`model` as a TOML document (its fields as top-level keys, tables and arrays of tables)."""
    out: list[str] = []
    _toml_table(_toml_data(model, ""), [], out)
    return "\n".join(out).lstrip("\n") + "\n"
