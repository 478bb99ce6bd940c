"""CPU time of a bench run, for the tables that set it next to a goal on few cores."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def own_and_children() -> tuple[float, float]:
    """CPU seconds of this process (all its threads) and of its reaped children: the
    engine's worker processes end with the transaction, so they are counted by then."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def of_process(pid: int) -> float:
    """CPU seconds of another process so far (a server the bench started): utime + stime."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
