"""Process-tree memory accounting via /proc (Linux only, no psutil needed)."""

from __future__ import annotations

import os


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # comm may contain spaces/parens: the fields after the last ')' are fixed.
        rest = stat[stat.rfind(")") + 2 :].split()
        kids.setdefault(int(rest[1]), []).append(int(name))
    return kids


def descendants(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, ()):
            out.append(c)
            todo.append(c)
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        name = os.path.basename(args[0].decode(errors="replace")) if args and args[0] else ""
        if name.startswith("python") and len(args) > 1:  # show the script / -m target
            tail = [a.decode(errors="replace") for a in args[1:3] if a]
            name = " ".join([name] + tail)
        if name:
            return name[:60]
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def tree_memory(pid: int | None = None) -> dict:
    """RSS and PSS (MB) of ``pid`` (default: this process) plus all its descendants."""
    pid = os.getpid() if pid is None else pid
    pids = [pid] + descendants(pid)
    procs = []
    for p in pids:
        rss = _status_kb(p, "VmRSS")
        if rss == 0 and p != pid:  # exited or kernel thread
            continue
        procs.append(
            {"pid": p, "name": _comm(p), "rss_mb": rss / 1024, "pss_mb": _pss_kb(p) / 1024}
        )
    return {
        "rss_mb": sum(x["rss_mb"] for x in procs),
        "pss_mb": sum(x["pss_mb"] for x in procs),
        "driver_rss_mb": procs[0]["rss_mb"] if procs else 0.0,
        "nprocs": len(procs),
        "procs": sorted(procs, key=lambda x: -x["rss_mb"]),
    }


def cpu_busy(interval: float = 1.0) -> float:
    """System-wide CPU busy fraction (0..1) over ``interval`` seconds, from /proc/stat."""
    import time

    def snap():
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
        return sum(vals), idle

    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 0.0 if t1 == t0 else 1.0 - (i1 - i0) / (t1 - t0)


def _userland_ticks() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime+stime+cutime+cstime) of every user-space process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().decode(errors="replace").rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[6]) & 0x00200000 or int(fields[1]) == 2:  # PF_KTHREAD / kthreadd child
            continue
        out[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return out


def cpu_snapshot() -> tuple:
    """(monotonic time, {pid: (ppid, cpu ticks)}) of all user-space processes."""
    import time

    return time.monotonic(), _userland_ticks()


def foreign_cpu(before: tuple, after: tuple, root: int | None = None) -> float:
    """CPU cores used between two snapshots by user-space processes outside the tree
    rooted at ``root`` (default: this process).  Kernel threads (softirq work for our
    own loopback traffic, page reclaim, ...) are not counted."""
    dt = after[0] - before[0]
    if dt <= 0:
        return 0.0
    root = os.getpid() if root is None else root
    ours = {root}
    for procs in (before[1], after[1]):
        kids: dict[int, list[int]] = {}
        for pid, (ppid, _) in procs.items():
            kids.setdefault(ppid, []).append(pid)
        todo = [root]
        while todo:
            for c in kids.get(todo.pop(), ()):
                if c not in ours:
                    ours.add(c)
                    todo.append(c)
    other = 0
    for pid, (_, ticks) in after[1].items():
        if pid in ours:
            continue
        prev = before[1].get(pid)
        other += ticks - prev[1] if prev else ticks
    # a process that exited was (usually) reaped by a live parent whose cutime/cstime
    # now holds its whole lifetime: take off what it had already used before
    for pid, (_, ticks) in before[1].items():
        if pid not in after[1] and pid not in ours:
            other -= ticks
    return max(0.0, other / os.sysconf("SC_CLK_TCK") / dt)
