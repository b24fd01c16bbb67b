"""Every setting declared once: its type, default, bounds and one-line doc.

The configuration records (:mod:`wampd.config`) are frozen dataclasses whose fields carry
a :class:`Setting` in their metadata. From those declarations come the TOML loader's
known keys and generic readers, the JSON Schema that ``wampd config-schema`` prints (and
that ships as ``wampd/wampd.schema.json``), and the README's "Full reference" block.

A field's TOML key is its name unless the setting says otherwise (``url`` for ``urls``);
a record-valued field is a sub-table (``[router.auth]``), or -- ``flatten`` -- its keys
sit in the parent table (the TLS keys of ``[router]``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Setting", "default_of", "keys", "reference", "schema", "setting", "settings"]

#: How a setting is read from its table: ``read(table, key, default)``; the table is the
#: loader's (:class:`wampd.config._Table`), which reports problems with the key's name.
Reader = Callable[[Any, str, Any], Any]


@dataclass(frozen=True)
class Setting:
    """What a configuration field is, as users see it."""

    doc: str
    #: JSON Schema of the TOML value (without ``description`` and ``default``).
    schema: Mapping[str, Any] = field(default_factory=dict)
    read: Reader | None = None
    #: The TOML key, when it is not the field's name.
    key: str | None = None
    #: A record whose keys are keys of the parent table, not a sub-table.
    flatten: bool = False
    #: Must be given (no default), e.g. ``router.url``.
    required: bool = False
    #: The value the reference shows: for required keys, or a better one than the default.
    example: Any = None
    #: The default as TOML spells it, where the record's differs (``-1`` for ``None``).
    toml_default: Any = None
    #: More TOML keys this field is read from (``secret_file``, ``secret_env``, ``secret``),
    #: each with its doc and schema; the field's own key is not one of them then.
    aliases: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    #: The record of a record-valued field (a sub-table, or flattened into this one).
    record: type | None = None
    #: An array of such tables (``[[component]]``).
    many: bool = False
    #: For ``many``: the field no two of the tables may share (``name``).
    unique: str | None = None


def setting(default: Any = dataclasses.MISSING, **declared: Any) -> Any:
    """A dataclass field with its :class:`Setting`; ``default`` may be a zero-argument
    factory (``default_factory=``) for mutable or record defaults."""
    factory = declared.pop("default_factory", dataclasses.MISSING)
    metadata = {"wampd": Setting(**declared)}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def settings(record: type) -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
    """The declared fields of ``record`` (those with a :class:`Setting`), in order."""
    for f in dataclasses.fields(record):
        declared = f.metadata.get("wampd")
        if isinstance(declared, Setting):
            yield f, declared


def keys(record: type) -> tuple[str, ...]:
    """The TOML keys of ``record``'s table (flattened records' keys included)."""
    out: list[str] = []
    for f, declared in settings(record):
        if declared.flatten and declared.record is not None:
            out += keys(declared.record)
        elif declared.aliases:
            out += list(declared.aliases)
        else:
            out.append(declared.key or f.name)
    return tuple(out)


def default_of(f: dataclasses.Field[Any]) -> Any:
    """``f``'s default (made by its factory, if it has one); None for required fields."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _json(value: Any) -> Any:
    """A default as JSON: records as tables, tuples as arrays, enums by value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Field by field, not dataclasses.asdict: it deep-copies, and read-only mappings
        # (MappingProxyType defaults) cannot be copied.
        pairs = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        return {k: _json(v) for k, v in pairs if v is not None}
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    return getattr(value, "value", value)


# -- JSON Schema ------------------------------------------------------------------------------


def schema(record: type, *, title: str | None = None) -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``record``'s table."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    _properties(record, properties, required)
    out: dict[str, Any] = {}
    if title is not None:
        out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        out["title"] = title
    out.update(type="object", additionalProperties=False, properties=properties)
    if required:
        out["required"] = required
    return out


def _properties(record: type, properties: dict[str, Any], required: list[str]) -> None:
    for f, declared in settings(record):
        if declared.flatten and declared.record is not None:
            _properties(declared.record, properties, required)
            continue
        if declared.aliases:
            for key, (doc, fragment) in declared.aliases.items():
                properties[key] = {**fragment, "description": doc}
            continue
        key = declared.key or f.name
        fragment = dict(declared.schema)
        if not fragment and declared.record is not None:
            fragment = schema(declared.record)
            if declared.many:
                fragment = {"type": "array", "items": fragment}
        fragment["description"] = declared.doc
        default = default_of(f) if declared.toml_default is None else declared.toml_default
        if default not in (None, "") and "default" not in fragment:
            as_json = _json(default)
            if as_json not in ({}, []) or fragment.get("type") != "object":
                fragment["default"] = as_json
        properties[key] = fragment
        if declared.required:
            required.append(key)


# -- the README's reference --------------------------------------------------------------------


def reference(top: type) -> str:
    """Every key with its default (or an example) and its doc, as TOML: the README's
    "Full reference" block. Keys that are off by default are commented out."""
    lines: list[str] = []
    tables = [(f, d) for f, d in settings(top) if d.record is not None]
    for f, declared in sorted(tables, key=lambda pair: pair[1].many):  # [[arrays]] last
        assert declared.record is not None
        _table(lines, declared.key or f.name, declared.record, declared, off=False)
    return "\n".join(lines).rstrip() + "\n"


def _table(lines: list[str], name: str, record: type, declared: Setting, *, off: bool) -> None:
    if lines:
        lines.append("")
    header = f"[[{name}]]" if declared.many else f"[{name}]"
    _line(lines, header, declared.doc, off=off)
    subtables: list[tuple[str, type, Setting, bool]] = []
    _keys_of(lines, record, subtables, off=off)
    for sub, sub_record, sub_declared, sub_off in subtables:
        _table(lines, f"{name}.{sub}", sub_record, sub_declared, off=sub_off)


def _keys_of(
    lines: list[str],
    record: type,
    subtables: list[tuple[str, type, Setting, bool]],
    *,
    off: bool,
) -> None:
    for f, declared in settings(record):
        if declared.record is not None and declared.flatten:
            _keys_of(lines, declared.record, subtables, off=off)
            continue
        default = default_of(f)
        if declared.record is not None and not declared.schema:
            # An optional table (default None, or no [[tables]]) is shown commented out.
            unset = default is None or (declared.many and not default)
            entry = (declared.key or f.name, declared.record, declared, off or unset)
            subtables.append(entry)
            continue
        if declared.aliases:
            for key, (doc, _) in declared.aliases.items():
                _line(lines, f"{key} = ...", doc, off=True)
            continue
        key = declared.key or f.name
        if declared.toml_default is not None:
            default = declared.toml_default
        shown = declared.example if declared.example is not None else default
        if shown is None or shown in ({}, ()):
            _line(lines, f"{key} = ...", declared.doc, off=True)
            continue
        # Not set unless the user sets it: no default, and not required.
        unset = default is None and not declared.required
        _line(lines, f"{key} = {_toml(_json(shown))}", declared.doc, off=off or unset)


def _line(lines: list[str], text: str, doc: str, *, off: bool) -> None:
    """``text  # doc``, commented out when ``off``; a doc that would make the line longer
    than 100 characters goes on the line above."""
    if off:
        text = "# " + text
    line = f"{text:<35} # {doc}" if doc else text
    if len(line) > 100:
        lines.append(f"# {doc}")
        line = text
    lines.append(line)


def _toml(value: Any) -> str:
    """An inline TOML value (the reference shows only simple ones)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)
