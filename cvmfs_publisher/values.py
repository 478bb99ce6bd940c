"""Configuration values from YAML or the environment, checked against declarative tables.

A ``Setting`` names a key, its kind (what it accepts and how it converts), a one-line
description and, for repository settings, the backends it applies to and whether the
environment may override it. YAML gives booleans and numbers, the environment gives
strings; both go through the same kind, so ``CVMFS_PUBLISHER_AUTO_TAG=yes`` and
``auto_tag: true`` mean the same, and a bad value is one ``ConfigError`` line naming where
it came from, the key, what is allowed and what was given, never a traceback.

``load_yaml`` parses a configuration file that may be damaged or hostile: bounded in size,
nesting and alias expansion, strict about encoding and duplicate keys.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import re
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ConfigError, UsageError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_YAML_BYTES = 1 << 20  # a configuration of a thousand repositories is a few hundred KiB
MAX_DEPTH = 16  # the deepest real value (a list in a repository's s3 mapping) is at 5
MAX_VALUES = 100_000  # after alias expansion: a billion-laughs file stops here
MERGE_TAG = "tag:yaml.org,2002:merge"

_shown = reprlib.Repr()
_shown.maxstring = _shown.maxother = 60
_shown.maxlist = _shown.maxdict = 4
_shown.maxlevel = 2


def shown(value: Any) -> str:
    """A value as a message quotes it: repr, short, with control characters escaped."""
    return _shown.repr(value)


class Invalid(Exception):
    """A value a kind refuses; ``expected`` says what would have been accepted."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


class Kind(Protocol):
    """What a setting accepts: ``parse`` returns the converted value or raises ``Invalid``."""

    @property
    def expected(self) -> str: ...

    def parse(self, value: Any) -> Any: ...


@dataclass(frozen=True)
class Setting:
    name: str
    kind: Kind
    description: str
    backends: tuple[str, ...] = ()  # repository settings: the backends it applies to (all)
    env: bool = False  # CVMFS_PUBLISHER_<NAME> overrides it
    optional: bool = False  # null is accepted and means the default

    def check(self, value: Any, where: str, name: str | None = None) -> Any:
        """``value`` converted, or a ``ConfigError`` naming ``where``, the key and the rule."""
        if value is None and self.optional:
            return None
        try:
            return self.kind.parse(value)
        except Invalid as exc:
            raise ConfigError(f"{where}: {name or self.name} must be {exc.expected}, "
                              f"not {shown(value)}") from None


def unknown_key(where: str, what: str, key: Any, known: Iterable[str]) -> ConfigError:
    """An unknown key, with the closest known one as a suggestion."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown {what} {shown(key)}{hint}")


# -- kinds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Integer:
    """A whole number in a range; ``3.5`` and ``true`` are refused rather than rounded."""

    low: int
    high: int | None = None

    @property
    def expected(self) -> str:
        if self.high is None:
            return f"an integer, at least {self.low}"
        return f"an integer from {self.low} to {self.high}"

    def parse(self, value: Any) -> int:
        number = _whole(value, self.expected)
        if number < self.low:
            raise Invalid(self.expected if self.high is not None else f"at least {self.low}")
        if self.high is not None and number > self.high:
            raise Invalid(self.expected)
        return number


def _whole(value: Any, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Invalid(expected)
    if isinstance(value, float):
        if not value.is_integer():
            raise Invalid(expected)
        return int(value)
    try:
        return int(value)
    except ValueError:  # not a number, or more digits than Python converts
        raise Invalid(expected) from None


@dataclass(frozen=True)
class Number:
    """A finite number above ``low`` and at most ``high``, such as a timeout in seconds."""

    low: float
    high: float
    unit: str = "seconds"

    @property
    def expected(self) -> str:
        return f"a number of {self.unit} greater than {self.low:g} and at most {self.high:g}"

    def parse(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise Invalid(self.expected)
        try:
            number = float(value)
        except (ValueError, OverflowError):
            raise Invalid(self.expected) from None
        if not math.isfinite(number) or not self.low < number <= self.high:
            raise Invalid(self.expected)
        return number


@dataclass(frozen=True)
class Flag:
    """``true/yes/on/1`` and ``false/no/off/0`` in any case, or a real boolean."""

    expected: str = "true or false"

    def parse(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, str | int) else ""
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
        raise Invalid(self.expected)


@dataclass(frozen=True)
class Choice:
    """One of a few words, spelled exactly."""

    choices: tuple[str, ...]

    @property
    def expected(self) -> str:
        return f"one of {', '.join(self.choices)}"

    def parse(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise Invalid(self.expected)
        return value


@dataclass(frozen=True)
class Text:
    """A line of text without control characters, optionally matching ``pattern``."""

    expected: str = "a non-empty string"
    pattern: re.Pattern[str] | None = None

    def parse(self, value: Any) -> str:
        text = checked_text(value, self.expected)
        if self.pattern is not None and not self.pattern.fullmatch(text):
            raise Invalid(self.expected)
        return text


@dataclass(frozen=True)
class PathText:
    """A file system path: text that the operating system can take (no NUL, no controls)."""

    expected: str = "a path"

    def parse(self, value: Any) -> str:
        return checked_text(os.fspath(value) if isinstance(value, os.PathLike) else value,
                            self.expected)


@dataclass(frozen=True)
class HttpUrl:
    """An http(s) URL with a host; returned without a trailing slash."""

    expected: str = "an http(s) URL such as https://s3.example.org"

    def parse(self, value: Any) -> str:
        text = checked_text(value, self.expected)
        if not is_http_url(text):
            raise Invalid(self.expected)
        return text.rstrip("/")


def is_http_url(text: str) -> bool:
    """``http(s)://host[:port]/...`` with nothing that a URL cannot hold."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in text


@dataclass(frozen=True)
class AnyMapping:
    """A mapping with text keys; its content is checked by a table of its own."""

    expected: str = "a mapping of settings"

    def parse(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise Invalid(self.expected)
        return dict(value)


def checked_text(value: Any, expected: str) -> str:
    """Non-empty text without control characters that encodes as UTF-8 (no surrogates)."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(expected)
    if CONTROL.search(value):
        raise Invalid(f"{expected} without NUL or other control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"{expected} in valid Unicode") from None
    return value


# -- YAML ------------------------------------------------------------------------------------


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing to compose nodes deeper than ``MAX_DEPTH``.

    The composer recurses once per level; stopping it early is what keeps a file of ten
    thousand ``[`` from ending in a ``RecursionError``.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(data: bytes, where: str) -> Any:
    """The document in ``data``; ``where`` (the file name) starts every error message."""
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_YAML_BYTES >> 20} MiB; is it the right "
                          "file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                          f"{exc.start})") from None
    try:
        return _parse(text)
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise ConfigError(f"{where}{line}: not valid YAML ({_problem(exc)})") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{where}:{line}: not valid YAML (character "
                          f"{chr(exc.character)!r} is not allowed)") from None
    except (ValueError, OverflowError) as exc:  # a constructor: 2026-13-45, 10**5000, ...
        raise ConfigError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None


def _problem(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's words: "expected a single document ..., but found another document"."""
    problem = exc.problem or "syntax error"
    return f"{exc.context}, {problem}" if exc.context and problem.startswith("but") else problem


def _parse(text: str) -> Any:
    loader = _BoundedLoader(text)  # checks that every character is printable
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_graph(root: Node) -> None:
    """Refuse what constructing and walking the values would choke on.

    Aliases make the node graph a DAG (or, ``&a [*a]``, a cycle): measured here with a
    memo per node, in time linear in the nodes, before any value is built. Also refuses
    duplicate keys, which PyYAML would silently resolve to the last one.
    """
    done: dict[int, tuple[int, int]] = {}  # id -> (values after expansion, depth)
    path: set[int] = set()  # nodes whose children are being measured
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, measured = stack.pop()
        if measured:
            parts = [done[id(child)] for child in _children(node)]
            size = 1 + sum(s for s, _ in parts)
            depth = 1 + max((d for _, d in parts), default=0)
            path.discard(id(node))
            done[id(node)] = (size, depth)
            _check_bounds(node, size, depth)
        elif id(node) in path:
            raise ComposerError(None, None, "an alias refers to a value containing itself",
                                node.start_mark)
        elif id(node) not in done:
            _check_duplicates(node)
            path.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))


def _check_bounds(node: Node, size: int, depth: int) -> None:
    if size > MAX_VALUES:
        raise ComposerError(None, None, f"aliases expand it to more than {MAX_VALUES} values",
                            node.start_mark)
    if depth > MAX_DEPTH:
        raise ComposerError(None, None, f"aliases nest it deeper than {MAX_DEPTH} levels",
                            node.start_mark)


def _check_duplicates(node: Node) -> None:
    if not isinstance(node, MappingNode):
        return
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if isinstance(key, ScalarNode) and key.tag != MERGE_TAG:
            if (key.tag, key.value) in seen:
                raise ComposerError(None, None, f"duplicate key {shown(key.value)}",
                                    key.start_mark)
            seen.add((key.tag, key.value))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w``; a bare number is days (DUCC's unit)."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"{text!r} is not a duration like 7d, 12h, 30m or 90s")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
