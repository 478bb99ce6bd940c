"""The catalog map as a sunburst, drawn on the server as SVG paths (no script, no library).

The root catalog is the disc in the middle; each ring outwards is one level of nesting.
A catalog's angle is its share of its parent's: sized by rows (what ``autocatalog_max``
counts) or by the bytes of the files below it. What a parent keeps for its own rows is the
gap after its children, so a catalog that holds most of its subtree itself shows as a wide
arc with narrow children.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SIZE = 400  # the drawing's radius in SVG units
MIN_ANGLE = 0.002  # radians: thinner arcs are not drawn (the table lists every catalog)
PALETTE = ("#4c72b0", "#55a868", "#8172b2", "#64b5cd", "#937860", "#8c8c8c", "#ccb974")
FLAG_COLOURS = {"above_max": "#c44e52", "below_min": "#dd8452"}


@dataclass(frozen=True)
class Arc:
    index: int  # position of the catalog in the document's list
    d: str  # SVG path data
    fill: str
    flagged: bool


def weight(item: dict, by: str) -> int:
    return item["subtree_rows"] if by == "entries" else item["subtree_bytes"]


def arcs(catalogs: list[dict], by: str) -> list[Arc]:
    """One arc per catalog that is wide enough to see, parents before children."""
    if not catalogs:
        return []
    index = {item["mountpoint"]: i for i, item in enumerate(catalogs)}
    depth = max(item["depth"] for item in catalogs)
    ring = SIZE / (depth + 1)
    spans: dict[int, tuple[float, float]] = {0: (0.0, 2 * math.pi)}
    result = []
    for i, item in enumerate(catalogs):
        if i not in spans:
            continue
        start, end = spans[i]
        inner, outer = item["depth"] * ring, (item["depth"] + 1) * ring
        colour = FLAG_COLOURS.get(item["flags"][0]) if item["flags"] else \
            PALETTE[item["depth"] % len(PALETTE)]
        result.append(Arc(i, _sector(inner, outer, start, end), colour or "#000",
                          bool(item["flags"])))
        total = weight(item, by)
        if total <= 0:
            continue
        cursor = start
        for child in item["children"]:
            j = index.get(child)
            if j is None:
                continue
            share = (end - start) * weight(catalogs[j], by) / total
            if share >= MIN_ANGLE:
                spans[j] = (cursor, cursor + share)
            cursor += share
    return result


def _point(radius: float, angle: float) -> str:
    # angle 0 at twelve o'clock, clockwise
    return f"{radius * math.sin(angle):.2f},{-radius * math.cos(angle):.2f}"


def _sector(inner: float, outer: float, start: float, end: float) -> str:
    """An annulus sector (a disc or a ring when it goes all the way round)."""
    if end - start >= 2 * math.pi - 1e-9:
        half = start + math.pi
        outer_ring = (f"M{_point(outer, start)}A{outer:.2f},{outer:.2f} 0 1 1 "
                      f"{_point(outer, half)}A{outer:.2f},{outer:.2f} 0 1 1 "
                      f"{_point(outer, start)}Z")
        if inner <= 0:
            return outer_ring
        return (outer_ring + f"M{_point(inner, start)}A{inner:.2f},{inner:.2f} 0 1 0 "
                f"{_point(inner, half)}A{inner:.2f},{inner:.2f} 0 1 0 {_point(inner, start)}Z")
    large = 1 if end - start > math.pi else 0
    path = (f"M{_point(outer, start)}A{outer:.2f},{outer:.2f} 0 {large} 1 "
            f"{_point(outer, end)}")
    if inner <= 0:
        return path + "L0,0Z"
    return (path + f"L{_point(inner, end)}A{inner:.2f},{inner:.2f} 0 {large} 0 "
            f"{_point(inner, start)}Z")
