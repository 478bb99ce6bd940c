"""Log output of a command: ours on stderr, one escaped line each; libraries' kept quiet."""

from __future__ import annotations

import logging
import sys

from .output import printable

OUR_LOGGERS = ("cvmfs_publisher", "unpacker")


def setup_logging(verbose: int) -> None:
    """Our warnings (and with -v our progress notes) on stderr, one line each.

    Libraries (urllib3 retrying, python-gnupg, watchdog, botocore, ...) and Python warnings
    stay silent unless -vv asks for debug output: what they would say reaches the user as
    the one-line error of the operation that failed.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    if verbose < 2:
        handler.addFilter(_ours)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)


def _ours(record: logging.LogRecord) -> bool:
    return record.name.split(".", 1)[0] in OUR_LOGGERS


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record arrives, not at setup time.

    Log messages quote names from repositories and archives: escaped like all output.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        shown = logging.makeLogRecord(record.__dict__)
        shown.msg, shown.args = printable(record.getMessage()), None
        super().emit(shown)
