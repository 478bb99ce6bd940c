"""Configuration values from YAML or the environment, turned into the types the code wants.

YAML already gives booleans and numbers, the environment gives strings; both go through
here so that ``CVMFS_PUBLISHER_AUTO_TAG=yes`` and ``auto_tag: true`` mean the same, and a
bad value is a ``ConfigError`` naming the setting (``what``), never a traceback.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ConfigError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def to_bool(value: Any, what: str) -> bool:
    """``true/yes/on/1`` and ``false/no/off/0`` in any case, or a real boolean."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(f"{what} must be true or false, not {value!r}")


def to_int(value: Any, what: str) -> int:
    """A whole number; ``3.5`` and ``true`` are refused rather than rounded or counted."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{what} must be an integer, not {value!r}")
    try:
        return int(value if isinstance(value, int | float) else str(value).strip())
    except ValueError:
        raise ConfigError(f"{what} must be an integer, not {value!r}") from None


def to_float(value: Any, what: str) -> float:
    """A finite number such as a timeout in seconds."""
    try:
        number = float(value if isinstance(value, int | float) else str(value).strip())
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ConfigError(f"{what} must be a number, not {value!r}")
    return number
