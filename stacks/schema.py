"""Typed, immutable stack config from raw YAML values, with every problem reported at once.

Each config section is a frozen dataclass whose fields carry their documentation and
constraints (see ``setting``). ``parse`` walks the dataclass, converts the raw value of
each camelCase key, and records a ``Problem`` for every bad value, missing key or unknown
key (with a "did you mean"), instead of stopping at the first one. The same field metadata
renders the README's config reference, so the docs cannot drift from the parser.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from components.rules import looks_like_token

NAMESPACE = "llm-serving"

_MISSING = object()
# Pulumi's engine passes numbers as doubles: whole numbers beyond 2^53 cannot arrive exactly.
MAX_EXACT_NUMBER = 2 ** 53


@dataclass(frozen=True)
class Problem:
    """One bad config value: where it is and what to do about it."""

    path: str
    message: str

    def render(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """Raised once, after parsing, with every problem found in a stack file."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        lines = [f"{source}: {count} config problem{'s' if count != 1 else ''}:"]
        lines += [f"  - {p.render()}" for p in self.problems]
        super().__init__("\n".join(lines))


class Problems:
    """Collects problems while a stack file is parsed and validated."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(Problem(path, message))

    def __bool__(self) -> bool:
        return bool(self.items)


def setting(
    doc: str,
    default: Any = _MISSING,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: str | None = None,
    pattern_hint: str | None = None,
    example: str | None = None,
    key_pattern: str | None = None,
) -> Any:
    """A documented config field. No default means the key is required."""
    metadata = {
        "doc": doc,
        "minimum": minimum,
        "maximum": maximum,
        "pattern": pattern,
        "pattern_hint": pattern_hint,
        "example": example,
        "key_pattern": key_pattern,
    }
    if default is _MISSING:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, (dict, list, set)):
        raise TypeError("use an immutable default (tuple, MappingProxyType) for config fields")
    if isinstance(default, types.MappingProxyType):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def join(path: str, key: str) -> str:
    if not path or path.endswith(":"):
        return f"{path}{key}"  # `llm-serving:` + key, as `pulumi config set --path` spells it
    return f"{path}.{key}"


TOKEN_HINT = ("a value that looks like a token (not shown); tokens are never plain config values: "
              f"`pulumi config set --secret {NAMESPACE}:hfToken <token>` stores it encrypted")
_LONGEST_NUMBER_TEXT = 40  # digits beyond this are a paste error, not a setting


def _describe(value: Any) -> str:
    if isinstance(value, str):
        if looks_like_token(value):
            return "a value that looks like a token (not shown)"
        return repr(value) if len(value) <= 80 else repr(value[:60] + "...") + f" ({len(value)} characters)"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


# ---------------------------------------------------------------------------
# Conversion of one raw value to a declared type.


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _convert(tp: Any, raw: Any, path: str, meta: Mapping[str, Any], problems: Problems) -> Any:
    """Convert ``raw`` to ``tp``; on failure record a problem and return _MISSING."""
    tp, optional = _strip_optional(tp)
    if raw is None:
        if optional:
            return None
        problems.add(path, "is empty; give it a value or remove the key to use the default")
        return _MISSING

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return parse(tp, raw, path, problems)

    origin = typing.get_origin(tp)
    if origin in (Mapping, dict, typing.Mapping):
        return _convert_mapping(tp, raw, path, meta, problems)
    if origin is tuple:
        return _convert_tuple(tp, raw, path, meta, problems)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [m.value for m in tp]
        if isinstance(raw, str) and raw in allowed:
            return tp(raw)
        hint = did_you_mean(str(raw), allowed)
        problems.add(path, f"got {_describe(raw)}; allowed: {', '.join(map(str, allowed))}{hint}")
        return _MISSING
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        problems.add(path, f"got {_describe(raw)}; expected true or false")
        return _MISSING
    if tp is int:
        value = raw
        if isinstance(raw, str) and re.fullmatch(rf"-?\d{{1,{_LONGEST_NUMBER_TEXT}}}", raw.strip()):
            value = int(raw)
        if isinstance(raw, float) and not math.isfinite(raw):
            problems.add(path, f"got {raw}; expected a whole number{_bounds_text(meta)} (NaN and infinity are not numbers here)")
            return _MISSING
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(path, f"got {_describe(raw)}; expected a whole number{_bounds_text(meta)}")
            return _MISSING
        if abs(value) > MAX_EXACT_NUMBER:
            problems.add(path, f"got a number of {len(str(abs(value))) if abs(value) < 10 ** 4000 else 'thousands of'} "
                               f"digits; expected a whole number{_bounds_text(meta) or ' of at most 2^53'}")
            return _MISSING
        return _check_bounds(value, path, meta, problems)
    if tp is float:
        value = raw
        if isinstance(raw, str) and len(raw.strip()) <= _LONGEST_NUMBER_TEXT:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.add(path, f"got {_describe(raw)}; expected a number{_bounds_text(meta)}")
            return _MISSING
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            problems.add(path, f"got {_describe(raw) if isinstance(raw, str) else raw}; expected a finite "
                               f"number{_bounds_text(meta)} (NaN and infinity are rejected)")
            return _MISSING
        return _check_bounds(number, path, meta, problems)
    if tp is str:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            problems.add(path, f"got {_describe(raw)}; expected a string")
            return _MISSING
        if isinstance(raw, float) and not math.isfinite(raw):
            problems.add(path, f"got {raw}; expected a string")
            return _MISSING
        value = str(raw)
        if looks_like_token(value):
            return _MISSING  # reported once, at its key path, by stacks.config.load's token scan
        pattern = meta.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            hint = meta.get("pattern_hint") or f"it must match {pattern}"
            problems.add(path, f"got {_describe(value)}; {hint}")
            return _MISSING
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def _bounds_text(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if lo is not None and hi is not None:
        return f" from {lo:g} to {hi:g}"
    if lo is not None:
        return f" of at least {lo:g}"
    if hi is not None:
        return f" of at most {hi:g}"
    return ""


def _check_bounds(value: float, path: str, meta: Mapping[str, Any], problems: Problems) -> Any:
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        problems.add(path, f"got {value:g}; allowed values are numbers{_bounds_text(meta)}")
        return _MISSING
    return value


def _convert_mapping(tp: Any, raw: Any, path: str, meta: Mapping[str, Any], problems: Problems) -> Any:
    if not isinstance(raw, Mapping):
        problems.add(path, f"got {_describe(raw)}; expected a map of name: value")
        return _MISSING
    _, value_tp = typing.get_args(tp)
    key_pattern = meta.get("key_pattern")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        key_text = str(key)
        item_path = join(path, key_text)
        if key_pattern and not re.fullmatch(key_pattern, key_text):
            problems.add(
                item_path,
                f"the name {key_text!r} is not allowed; use lowercase letters, digits and "
                "hyphens, starting with a letter (it becomes part of resource names)",
            )
            continue
        converted = _convert(value_tp, value, item_path, {}, problems)
        if converted is not _MISSING:
            out[key_text] = converted
    return types.MappingProxyType(out)


def _convert_tuple(tp: Any, raw: Any, path: str, meta: Mapping[str, Any], problems: Problems) -> Any:
    if isinstance(raw, str) or not isinstance(raw, (list, tuple)):
        problems.add(path, f"got {_describe(raw)}; expected a list")
        return _MISSING
    item_tp = typing.get_args(tp)[0]
    items = []
    for index, value in enumerate(raw):
        converted = _convert(item_tp, value, f"{path}[{index}]", meta, problems)
        if converted is not _MISSING:
            items.append(converted)
    return tuple(items)


def did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------
# Dataclass sections.


def fields_of(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]


def parse(cls: type, raw: Any, path: str, problems: Problems) -> Any:
    """Parse a mapping into dataclass ``cls``; returns _MISSING when a required part is bad."""
    if not isinstance(raw, Mapping):
        problems.add(path or "config", f"got {_describe(raw)}; expected a map of settings")
        return _MISSING
    hints = typing.get_type_hints(cls)
    known = {camel(f.name): f for f in fields_of(cls)}
    for key in raw:
        if str(key) not in known:
            hint = did_you_mean(str(key), list(known))
            problems.add(join(path, str(key)), f"unknown key{hint}; known keys: {', '.join(known)}")
    values: dict[str, Any] = {}
    ok = True
    for key, field in known.items():
        field_path = join(path, key)
        if key not in raw:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                problems.add(field_path, f"is required: {field.metadata.get('doc', '')}".rstrip(": "))
                ok = False
            continue
        converted = _convert(hints[field.name], raw[key], field_path, field.metadata, problems)
        if converted is _MISSING:
            ok = False
        else:
            values[field.name] = converted
    if not ok and any(f.name not in values and f.default is dataclasses.MISSING
                      and f.default_factory is dataclasses.MISSING for f in known.values()):
        return _MISSING  # a required value is missing or bad: nothing to validate further
    # A bad optional value was recorded and falls back to its default, so the section's own
    # rules (and the stack's) still run and every problem is reported in one go; the recorded
    # problem still fails the load.
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate(path, problems)
    return instance


def is_missing(value: Any) -> bool:
    return value is _MISSING


# ---------------------------------------------------------------------------
# Documentation.


def _type_name(tp: Any) -> str:
    tp, optional = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        name = "map (see below)"
    elif origin in (Mapping, dict, typing.Mapping):
        value_tp = typing.get_args(tp)[1]
        inner = "map (see below)" if dataclasses.is_dataclass(value_tp) else _type_name(value_tp)
        name = f"map of name → {inner}"
    elif origin is tuple:
        name = f"list of {_type_name(typing.get_args(tp)[0])}"
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        name = " \\| ".join(f"`{m.value}`" for m in tp)
    else:
        name = {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))
    return name


def _default_text(field: dataclasses.Field) -> str:
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    elif field.default is dataclasses.MISSING:
        return "required"
    else:
        value = field.default
    if value is None:
        # Unset optional keys either take a computed default (their doc says which) or stay off.
        return "derived" if "default" in field.metadata.get("doc", "").lower() else "unset"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (tuple, Mapping)) and not value:
        return "empty"
    if dataclasses.is_dataclass(value):
        return "see below"
    return f"`{value}`"


def reference_markdown(root: type, title_path: str, extra: Callable[[type], str] | None = None) -> str:
    """A markdown table per section, depth first, from the dataclasses' field metadata."""
    out: list[str] = []
    seen: set[type] = set()

    def section(cls: type, path: str) -> None:
        if cls in seen:
            return
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        out.append(f"#### `{path}`\n")
        if cls.__doc__:
            out.append(" ".join(cls.__doc__.split()) + "\n")
        out.append("| key | type | default | meaning |")
        out.append("| --- | --- | --- | --- |")
        nested: list[tuple[type, str]] = []
        for field in fields_of(cls):
            key = camel(field.name)
            tp = hints[field.name]
            out.append(
                f"| `{key}` | {_type_name(tp)} | {_default_text(field)} | {field.metadata.get('doc', '')} |"
            )
            inner, _ = _strip_optional(tp)
            if isinstance(inner, type) and dataclasses.is_dataclass(inner):
                nested.append((inner, join(path, key)))
            elif typing.get_origin(inner) in (Mapping, dict, typing.Mapping):
                value_tp = typing.get_args(inner)[1]
                if isinstance(value_tp, type) and dataclasses.is_dataclass(value_tp):
                    nested.append((value_tp, join(path, key) + ".<name>"))
        out.append("")
        for cls_, path_ in nested:
            section(cls_, path_)

    section(root, title_path)
    return "\n".join(out)


# ---------------------------------------------------------------------------
# JSON Schema, for editors and CI (same field metadata as the reference and the parser).

# Values the parser also accepts as strings, as `pulumi config set` may store them.
_NUMBER_TEXT = {int: r"-?\d+", float: r"-?\d+(\.\d+)?([eE][-+]?\d+)?"}


def _json_scalar(tp: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    if tp is bool:
        return {"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]}
    if tp in (int, float):
        number: dict[str, Any] = {"type": "integer" if tp is int else "number"}
        if meta.get("minimum") is not None:
            number["minimum"] = meta["minimum"]
        if meta.get("maximum") is not None:
            number["maximum"] = meta["maximum"]
        return {"anyOf": [number, {"type": "string", "pattern": f"^{_NUMBER_TEXT[tp]}$"}]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if tp is str:
        text: dict[str, Any] = {"type": "string"}
        if meta.get("pattern"):
            text["pattern"] = f"^(?:{meta['pattern']})$"
        return text
    raise TypeError(f"unsupported config type {tp!r}")


def json_schema_of(tp: Any, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON Schema of one config type: dataclass sections become closed objects."""
    meta = meta or {}
    tp, optional = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in fields_of(tp):
            key = camel(field.name)
            entry = json_schema_of(hints[field.name], field.metadata)
            entry["description"] = field.metadata.get("doc", "")
            properties[key] = entry
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                required.append(key)
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if tp.__doc__:
            schema["title"] = " ".join(tp.__doc__.split())
        if required:
            schema["required"] = required
    elif origin in (Mapping, dict, typing.Mapping):
        schema = {"type": "object", "additionalProperties": json_schema_of(typing.get_args(tp)[1])}
        if meta.get("key_pattern"):
            schema["propertyNames"] = {"pattern": f"^(?:{meta['key_pattern']})$"}
    elif origin is tuple:
        schema = {"type": "array", "items": json_schema_of(typing.get_args(tp)[0], meta)}
    else:
        schema = _json_scalar(tp, meta)
    if optional:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


__all__ = [
    "NAMESPACE",
    "ConfigError",
    "Problem",
    "Problems",
    "camel",
    "is_missing",
    "json_schema_of",
    "join",
    "parse",
    "reference_markdown",
    "setting",
    "Optional",
]
