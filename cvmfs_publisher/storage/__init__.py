"""Where repository bytes live: a local directory, an HTTP server (read-only), S3.

Code above this layer opens storage with ``open_storage`` and talks to the ``Storage``
interface (``base.py``: each method's contract is in its docstring); it never names a
backend class. Retries, dry runs and fault injection are wrappers (``wrappers.py``);
``add_wrapper`` / ``wrapped_by`` apply one to every storage ``open_storage`` opens.
"""

from __future__ import annotations

from .base import Capabilities, LockInfo, ObjectStream, Storage
from .factory import add_wrapper, open_storage, wrapped_by

__all__ = ["Capabilities", "LockInfo", "ObjectStream", "Storage", "add_wrapper",
           "open_storage", "wrapped_by"]
