"""Autocatalogs: which directories to split off when a catalog grows too big.

Like upstream's ``CatalogBalancer``: while the catalog holds more than ``max_entries``
rows, the heaviest directory subtree that fits (between ``min_entries`` and
``max_entries`` rows) becomes a nested catalog of its own. Big catalogs are slow to rewrite
and to download; small ones add round trips, hence the lower bound.
"""

from __future__ import annotations

from collections import defaultdict

from ..cvmfs.catalog import Flag
from ..cvmfs.hashes import path_key
from ..cvmfs.names import is_within

Shape = list[tuple[tuple[int, int], tuple[int, int], int, str]]


def subtree_weights(shape: Shape, mountpoint: str) -> dict[str, int]:
    """Rows at or below each directory of the catalog (a nested mountpoint counts as one)."""
    children: dict[tuple[int, int], list[tuple[tuple[int, int], int, str]]] = defaultdict(list)
    for key, parent, flags, name in shape:
        children[parent].append((key, flags, name))
    weights: dict[str, int] = {}
    root = path_key(mountpoint)
    stack: list[tuple[tuple[int, int], str, bool]] = [(root, mountpoint, False)]
    while stack:
        key, path, expanded = stack.pop()
        if expanded:
            weights[path] = 1 + sum(weights.get(f"{path}/{name}", 1)
                                    for _k, _f, name in children.get(key, ()))
            continue
        stack.append((key, path, True))
        for child, flags, name in children.get(key, ()):
            if flags & Flag.DIR and not flags & Flag.NESTED_MOUNTPOINT:
                stack.append((child, f"{path}/{name}", False))
    return weights


def choose_splits(shape: Shape, mountpoint: str, max_entries: int, min_entries: int
                  ) -> list[str]:
    """Directories to make nested catalogs, heaviest first, until the rest fits."""
    weights = subtree_weights(shape, mountpoint)
    total = weights.get(mountpoint, 0)
    chosen: list[str] = []
    while total > max_entries:
        fitting = [(w, p) for p, w in weights.items()
                   if p != mountpoint and min_entries <= w <= max_entries]
        if not fitting:
            break
        weight, path = max(fitting)
        chosen.append(path)
        moved = weight - 1  # the directory itself stays as the mountpoint row
        for other in list(weights):
            if is_within(other, path) and other != path:
                del weights[other]
            elif is_within(path, other) and other != path:
                weights[other] -= moved
        del weights[path]
        total -= moved
    return chosen
