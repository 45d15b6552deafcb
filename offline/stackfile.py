"""Reading a ``Pulumi.<stack>.yaml`` safely: every malformed file is a config error, in bounded time.

One reader for the offline plan, promotion and the benchmark. Whatever the bytes are, the
result is either the file's config or a ``StackFileError`` (a ``ConfigError``, exit status 2)
naming the file, the line and what to do. Refused:

- files over ``MAX_BYTES`` (stack files are a few kilobytes; a cap keeps parsing time bounded);
- bytes that are not UTF-8 (Pulumi writes UTF-8);
- YAML syntax errors, and characters YAML does not allow;
- a document that is not a map, or a ``config:`` that is not a map;
- duplicate keys in any map (YAML forbids them, PyYAML would keep the last one silently), named
  with both lines; unhashable keys (a list or map used as a key);
- nesting deeper than ``MAX_DEPTH``;
- aliases that expand to more than ``MAX_EXPANDED_NODES`` values (an "alias bomb": a few
  hundred bytes of anchors that expand to billions of values), and recursive aliases.

``secure:`` values (encrypted with the stack's key) cannot be decrypted offline; they are
replaced by ``OFFLINE_SECRET`` and their keys reported as secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stacks.schema import ConfigError, Problem

# Committed stacks are under 10 KB; 256 KiB leaves room for any real stack and parses in well
# under a second with the pure-Python loader.
MAX_BYTES = 256 * 1024
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 100_000
OFFLINE_SECRET = "offline-placeholder-secret"


class StackFileError(ConfigError):
    """A stack file that cannot be read as YAML config; names the file and the line."""

    def __init__(self, source: str, line: Optional[int], message: str):
        where = f"line {line}" if line is not None else "whole file"
        super().__init__(source, [Problem(where, message)])
        self.line = line


class _Refused(Exception):
    def __init__(self, line: Optional[int], message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def _line(node_or_mark: Any) -> Optional[int]:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return None if mark is None else mark.line + 1


class _StackLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys and bounding depth and alias expansion."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._first_alias_line: Optional[int] = None

    def compose_node(self, parent: Optional[Node], index: Any) -> Optional[Node]:
        if self.check_event(yaml.AliasEvent) and self._first_alias_line is None:
            self._first_alias_line = _line(self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(_line(self.peek_event().start_mark),
                               f"values are nested more than {MAX_DEPTH} levels deep; a stack file needs a few")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as error:
            # A scalar PyYAML cannot build: a whole number of thousands of digits, bad !!binary...
            detail = "a number thousands of digits long" if "digits" in str(error) else " ".join(str(error).split())[:120]
            raise _Refused(_line(node), f"this value cannot be read ({detail}); write a shorter or plain value") from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                raise _Refused(_line(key_node), "a list or map is used as a key; keys must be plain names") from None
            if first is not None:
                raise _Refused(_line(key_node),
                               f"duplicate key {_shown(key)} (first at line {first}); YAML allows each key once "
                               "per map, and the earlier value would be silently lost. Keep one of them")
            seen[key] = _line(key_node) or 0
        return super().construct_mapping(node, deep=deep)


def _timestamp_as_text(loader: Any, node: Any) -> Any:
    return loader.construct_scalar(node)


# Pulumi's engine reads stack files as plain YAML scalars: a date stays text, not a datetime.
_StackLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _shown(key: Any) -> str:
    try:
        text = repr(key)
    except ValueError:  # a whole number of thousands of digits
        return "(a very long number)"
    return text if len(text) <= 80 else text[:77] + "..."


def _check_expansion(root: Node, alias_line: Optional[int]) -> None:
    """Refuse a node graph whose expansion (aliases copied out) exceeds the budget, or has a cycle.

    Sizes are memoised per node, so this is linear in the composed graph, not in its expansion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > MAX_EXPANDED_NODES:
                raise _Refused(alias_line or _line(node),
                               f"aliases expand to more than {MAX_EXPANDED_NODES:,} values; write the values out "
                               "instead of nesting aliases")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _Refused(alias_line or _line(node), "an alias refers to the value that contains it (a loop); "
                                                      "write the value out instead")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise StackFileError(source, line, f"byte 0x{data[error.start]:02x} is not UTF-8; save the file as "
                                           "UTF-8 (Pulumi writes stack files in UTF-8)") from None


def parse_stack_text(text: str, source: str) -> dict[str, Any]:
    """The whole document of a stack file's text (a map; empty text gives {})."""
    loader: Optional[_StackLoader] = None
    try:
        loader = _StackLoader(text)  # the reader checks the characters here
        node = loader.get_single_node()
        if node is None:
            return {}
        _check_expansion(node, loader._first_alias_line)
        if not isinstance(node, MappingNode):
            raise _Refused(_line(node), f"the file holds {_kind(node)}, not a map; a stack file is a map with a "
                                        "`config:` key")
        config_node = next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == "config"), None)
        if config_node is not None and not isinstance(config_node, MappingNode) and not _is_null(config_node):
            raise _Refused(_line(config_node), f"`config:` holds {_kind(config_node)}, not a map of key: value; "
                                               "write one `namespace:key: value` per line under it")
        document = loader.construct_document(node)
    except _Refused as refused:
        raise StackFileError(source, refused.line, refused.message) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        what = " ".join(part for part in (error.context, error.problem) if part)
        raise StackFileError(source, _line(mark), f"not valid YAML ({what}); fix the syntax") from None
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1 if isinstance(error.position, int) else None
        raise StackFileError(source, line, f"character {chr(error.character)!r} (U+{error.character:04X}) is not "
                                           "allowed in YAML; remove it") from None
    except yaml.YAMLError as error:
        raise StackFileError(source, None, f"not valid YAML ({str(error).splitlines()[0]}); fix the syntax") from None
    except (ValueError, OverflowError, TypeError) as error:
        # A scalar PyYAML's constructors cannot build (e.g. a malformed !!binary value).
        raise StackFileError(source, None, f"a value cannot be read ({error}); fix or remove it") from None
    except RecursionError:
        raise StackFileError(source, None, "values are nested too deeply; a stack file needs a few levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    return document if isinstance(document, dict) else {}


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _kind(node: Node) -> str:
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, ScalarNode):
        return f"the value {_shown(node.value)}"
    return "a map"


def read_stack_text(path: Path, source: Optional[str] = None) -> tuple[str, dict[str, Any]]:
    """The text of a stack file and its whole document, or StackFileError."""
    source = source or Path(path).name
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise StackFileError(source, None, f"cannot be read ({error.strerror or error})") from None
    if len(data) > MAX_BYTES:
        raise StackFileError(source, None, f"is larger than {MAX_BYTES // 1024} KiB; a stack file holds config, "
                                           "a few kilobytes")
    text = _decode(data, source)
    return text, parse_stack_text(text, source)


def config_values(document: dict[str, Any], source: str = "stack file") -> tuple[dict[str, Any], set[str]]:
    """Config values and secret keys of a parsed stack document; `secure:` values become a placeholder."""
    config = document.get("config") or {}
    values: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for key, value in config.items():
        replaced, had_secret = _replace_secure(value)
        try:
            key = str(key)
        except ValueError:  # a whole number of thousands of digits
            raise StackFileError(source, None, "a config key is a number thousands of digits long; keys are "
                                               "`namespace:name`") from None
        values[key] = replaced
        if had_secret:
            secret_keys.add(str(key))
    return values, secret_keys


def read_stack_file(path: Path, source: Optional[str] = None) -> tuple[dict[str, Any], set[str]]:
    """Config values and secret keys of a Pulumi.<stack>.yaml, or StackFileError."""
    _, document = read_stack_text(path, source)
    return config_values(document, source or Path(path).name)


def _replace_secure(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict) and set(value) == {"secure"}:
        return OFFLINE_SECRET, True
    if isinstance(value, dict):
        found = False
        out = {}
        for k, v in value.items():
            out[k], inner = _replace_secure(v)
            found = found or inner
        return out, found
    if isinstance(value, list):
        pairs = [_replace_secure(v) for v in value]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    return value, False
