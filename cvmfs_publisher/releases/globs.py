"""Repository path globs of trust policies: ``/sw/pkg/**``, ``/sw/*/nightly``.

``*``, ``?`` and ``[...]`` match within one path component; ``**`` matches any number of
components, none included, so ``/sw/pkg/**`` grants ``/sw/pkg`` and everything below.
Matching is a table over (pattern part, path part): no backtracking blow-up.
"""

from __future__ import annotations

from fnmatch import fnmatchcase


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def path_matches(glob: str, path: str) -> bool:
    pattern, parts = _parts(glob), _parts(path)
    # reach[j]: the pattern parts seen so far can match exactly the first j path parts
    reach = [True] + [False] * len(parts)
    for token in pattern:
        if token == "**":
            for j in range(1, len(reach)):
                reach[j] = reach[j] or reach[j - 1]
            continue
        reach = [False] + [reach[j] and fnmatchcase(parts[j], token)
                           for j in range(len(parts))]
    return reach[-1]
