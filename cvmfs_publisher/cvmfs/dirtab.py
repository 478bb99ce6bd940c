"""``.cvmfsdirtab``: which directories become nested catalogs (spec 3.11, upstream dirtab.cc).

Each non-comment line is an absolute path pattern; ``*`` and ``?`` do not cross ``/``.
Lines starting with ``!`` exclude, and their wildcards do cross ``/`` ("relaxed"). A
directory is a catalog root when a positive rule matches and no exclusion does. A rule
that is both positive and negative makes the whole file invalid, as upstream.

Patterns are matched by simulating all their positions at once over the path, never by
backtracking: a dirtab is input from whoever can publish, and a line like
``/*a*a*a*a*a*b`` must not make every later publish hang (a regular expression engine
takes exponential time on it). The cost is at most (path length x pattern length).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

DIRTAB = ".cvmfsdirtab"
MARKER = ".cvmfscatalog"
# Without a /.cvmfsdirtab, every release directory /sw/<pkg>/<version> is a nested catalog.
RELEASE_CATALOGS = ("/sw/*/*",)


class InvalidDirtab(UsageError):
    """A ``.cvmfsdirtab`` that upstream would refuse."""


class Pattern:
    """A glob whose ``*`` and ``?`` stop at ``/`` unless ``relaxed``.

    Bit ``i`` of a state set means "the first ``i`` pattern characters are matched"; one
    step over a path character moves every position at once (``*`` stays or moves on).
    """

    def __init__(self, text: str, relaxed: bool = False) -> None:
        self.text, self.relaxed = text, relaxed
        self.stars = sum(1 << i for i, token in enumerate(text) if token == "*")
        self.any_one = sum(1 << i for i, token in enumerate(text) if token == "?")
        self.accept = 1 << len(text)
        self._literal: dict[str, int] = {}

    def _closure(self, states: int) -> int:
        """A ``*`` may match nothing: its next position is reachable without reading."""
        while True:
            grown = states | ((states & self.stars) << 1)
            if grown == states:
                return states
            states = grown

    def _advance(self, char: str) -> int:
        mask = self._literal.get(char)
        if mask is None:
            mask = sum(1 << i for i, token in enumerate(self.text) if token == char)
            self._literal[char] = mask
        return mask

    def match(self, path: str) -> bool:
        """The whole path matches, with or without one trailing ``/``."""
        states = before = self._closure(1)
        for char in path:
            wild = self.relaxed or char != "/"
            movers = self._advance(char) | (self.any_one if wild else 0)
            before, states = states, self._closure(
                ((states & movers) << 1) | (states & self.stars if wild else 0))
            if not states and not before & self.accept:
                return False
        return bool(states & self.accept or (path.endswith("/") and before & self.accept))


@dataclass(frozen=True)
class Dirtab:
    positive: tuple[Pattern, ...]
    negative: tuple[Pattern, ...]

    @classmethod
    def parse(cls, text: str, where: str = DIRTAB) -> Dirtab:
        positive: list[str] = []
        negative: list[str] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            spec = line[1:].strip() if negated else line
            if not spec:
                continue
            if not negated and not spec.startswith("/"):
                raise InvalidDirtab(f"{where}:{number}: {spec!r} is not an absolute path")
            (negative if negated else positive).append(spec)
        both = set(positive) & set(negative)
        if both:
            raise InvalidDirtab(f"{where}: {sorted(both)} is both included and excluded")
        return cls(tuple(Pattern(p.rstrip("/")) for p in positive),
                   tuple(Pattern(n.rstrip("/"), relaxed=True) for n in negative))

    @classmethod
    def from_patterns(cls, patterns: list[str]) -> Dirtab:
        return cls.parse("\n".join(patterns), "release_catalogs")

    def matches(self, path: str) -> bool:
        """``path`` is a repository path (``/a/b``); the root never becomes nested."""
        if not path:
            return False
        return any(p.match(path) for p in self.positive) and not any(
            n.match(path) for n in self.negative)

    def __bool__(self) -> bool:
        return bool(self.positive)
