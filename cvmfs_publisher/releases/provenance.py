"""What a release tag records about where its content came from.

The tag description carries the librarian's message, then `` | `` and ``key=value``
fields: ``signer`` (primary key fingerprint), ``sha256`` (of the artifact), ``source``
(URL), ``git`` (commit), ``ref``, ``pipeline`` (CI pipeline URL). ``tags`` shows it as
is; the web view and scripts read it back with ``parse``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

FIELDS = ("signer", "sha256", "source", "git", "ref", "pipeline")
SEPARATOR = " | "


@dataclass(frozen=True)
class Provenance:
    signer: str | None = None
    sha256: str | None = None
    source: str | None = None
    git: str | None = None
    ref: str | None = None
    pipeline: str | None = None

    def describe(self, message: str) -> str:
        fields = " ".join(f"{k}={v}" for k, v in asdict(self).items()
                          if v and " " not in v and "|" not in v)
        return f"{message}{SEPARATOR}{fields}" if fields else message


def parse(description: str) -> tuple[str, Provenance]:
    """The message and the recorded fields of a tag description (unknown keys ignored)."""
    message, sep, fields = description.rpartition(SEPARATOR)
    if not sep:
        return description, Provenance()
    pairs = dict(f.split("=", 1) for f in fields.split() if "=" in f)
    if not set(pairs) & set(FIELDS):
        return description, Provenance()
    return message, Provenance(**{k: v for k, v in pairs.items() if k in FIELDS})
