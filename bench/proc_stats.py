"""What one process costs, read from /proc (Linux): CPU, RSS, open fds, TCP sockets, children.

Readers only, no side effects; a process that ended meanwhile raises OSError.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
#: /proc/net/tcp state column: 01 ESTABLISHED ... 0A LISTEN (include/net/tcp_states.h)
_ESTABLISHED = "01"
_LISTEN = "0A"


def cpu_seconds(pid: int) -> float:
    """CPU time of all the process's threads, in ns precision (schedstat), else in ticks."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    """Direct children of `pid` (e.g. nginx's workers under its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def fd_targets(pid: int) -> list[str]:
    """Where each open fd points (`socket:[INODE]`, `pipe:[...]`, a path, ...)."""
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed between listing and reading
            targets.append(os.readlink(fd))
    return targets


def open_fds(pid: int) -> int:
    return len(fd_targets(pid))


def _tcp_inodes() -> dict[int, str]:
    """Socket inode -> TCP state (two hex digits), for every TCP socket in this namespace."""
    states: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9:
                    states[int(fields[9])] = fields[3]
    return states


def tcp_sockets(pid: int) -> dict[str, int]:
    """The process's TCP sockets: {"listening": n, "other": n} (other = connected or closing)."""
    inodes = [int(t[8:-1]) for t in fd_targets(pid) if t.startswith("socket:[")]
    states = _tcp_inodes()
    listening = sum(1 for inode in inodes if states.get(inode) == _LISTEN)
    other = sum(1 for inode in inodes if inode in states and states[inode] != _LISTEN)
    return {"listening": listening, "other": other}


def connections_to(port: int) -> int:
    """Established TCP connections whose local port is `port`: the clients a server on that
    port has accepted and not yet closed (this network namespace, any process)."""
    count = 0
    suffix = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[3] == _ESTABLISHED and fields[1].endswith(suffix):
                    count += 1
    return count
