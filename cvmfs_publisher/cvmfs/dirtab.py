"""``.cvmfsdirtab``: which directories become nested catalogs (spec 3.11, upstream dirtab.cc).

Each non-comment line is an absolute path pattern; ``*`` and ``?`` do not cross ``/``.
Lines starting with ``!`` exclude, and their wildcards do cross ``/`` ("relaxed"). A
directory is a catalog root when a positive rule matches and no exclusion does. A rule
that is both positive and negative makes the whole file invalid, as upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

DIRTAB = ".cvmfsdirtab"
MARKER = ".cvmfscatalog"
# Without a /.cvmfsdirtab, every release directory /sw/<pkg>/<version> is a nested catalog.
RELEASE_CATALOGS = ("/sw/*/*",)


class InvalidDirtab(UsageError):
    """A ``.cvmfsdirtab`` that upstream would refuse."""


def _regex(pattern: str, relaxed: bool) -> re.Pattern[str]:
    star, one = (".*", ".") if relaxed else ("[^/]*", "[^/]")
    parts = []
    for char in pattern.rstrip("/"):
        if char == "*":
            parts.append(star)
        elif char == "?":
            parts.append(one)
        else:
            parts.append(re.escape(char))
    return re.compile("^" + "".join(parts) + "/?$")


@dataclass(frozen=True)
class Dirtab:
    positive: tuple[re.Pattern[str], ...]
    negative: tuple[re.Pattern[str], ...]

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
        return cls(tuple(_regex(p, False) for p in positive),
                   tuple(_regex(n, True) for n in negative))

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
