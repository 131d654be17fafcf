"""CPU time and resident memory of a process tree, read from ``/proc`` (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(pid: int, exclude: set[int] | None = None) -> list[int]:
    """``pid`` and all its descendants, leaving out the subtrees of ``exclude``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = _stat_fields(int(stat.parent.name))
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        if exclude and current in exclude:
            continue
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int, exclude: set[int] | None = None) -> float:
    """User + system CPU of ``pid``'s tree (less ``exclude``'s subtrees), with the CPU of
    children each member has already waited for (cutime, cstime)."""
    ticks = 0
    for member in process_tree(pid, exclude):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / CLOCK_TICKS


def rss_mb(pid: int, exclude: set[int] | None = None) -> float:
    """Resident memory of ``pid`` and its descendants (less ``exclude``'s subtrees), in MB."""
    total = 0
    for member in process_tree(pid, exclude):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def stdout_file(pid: int) -> Path | None:
    """The regular file ``pid``'s standard output goes to, if it is one."""
    try:
        target = Path(os.readlink(f"/proc/{pid}/fd/1"))
    except OSError:
        return None
    return target if target.is_file() else None
