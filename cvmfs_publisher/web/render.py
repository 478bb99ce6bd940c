"""HTML pages: Jinja2 templates with autoescape on for every template, and the filters they use.

Names from a repository are shown with ``visible``: characters that do not print
(newlines, escape sequences, bidirectional overrides, bytes that are not UTF-8) appear as
backslash escapes, like ``ls -b``, and autoescape turns what is left (``<``, ``&``,
quotes) into text. No template marks anything ``safe``.
"""

from __future__ import annotations

import functools

import jinja2

from . import sunburst, urls

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def visible(text: str | None) -> str:
    """``text`` with every character that does not print as a backslash escape."""
    if text is None:
        return ""
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogate escape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return "".join(out)


def human_bytes(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in UNITS:
        if abs(value) < 1024 or unit == UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def duration(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    if days:
        return f"{sign}{days} days {rest // 3600} h"
    return f"{sign}{rest // 3600} h {rest % 3600 // 60} min"


def when(iso_utc: str | None) -> str:
    """``2026-11-30T06:13:56Z`` as ``2026-11-30 06:13:56 UTC``."""
    if not iso_utc:
        return "\u2013"  # an en dash
    return iso_utc.replace("T", " ").replace("Z", " UTC")


def link_url(value: str | None) -> str | None:
    """An address from a repository that may become a link: http(s) only, never
    ``javascript:`` or ``data:``."""
    if value and value.lower().startswith(("https://", "http://")):
        return value
    return None


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cvmfs_publisher.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(visible=visible, bytes=human_bytes, duration=duration, when=when,
                       link_url=link_url)
    env.globals.update(urls=urls, sunburst=sunburst)
    return env


def page(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)
