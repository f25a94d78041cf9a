"""Readers of /proc for the benchmark: CPU time and memory of process trees, per-core busy
time, and a snapshot of every process's CPU time (to see who else used the machine)."""

import os
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Stat:
    comm: str
    ppid: int
    cpu_ticks: int  # utime + stime (all threads)
    utime_ticks: int  # utime alone: user space
    reaped_ticks: int  # cutime + cstime: children this process has waited for
    start: int  # start time in ticks since boot: (pid, start) names a process uniquely


def stat(pid):
    """The interesting fields of /proc/PID/stat, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after its last ')'
    close = raw.rindex(")")
    fields = raw[close + 2:].split()
    return Stat(
        comm=raw[raw.index("(") + 1:close],
        ppid=int(fields[1]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        utime_ticks=int(fields[11]),
        reaped_ticks=int(fields[13]) + int(fields[14]),
        start=int(fields[19]),
    )


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def descendants(root):
    """`root` and every process below it."""
    children = {}
    for pid in all_pids():
        st = stat(pid)
        if st is not None:
            children.setdefault(st.ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids):
    """utime + stime of `pids` (threads included), in seconds."""
    ticks = 0
    for pid in pids:
        st = stat(pid)
        if st is not None:
            ticks += st.cpu_ticks
    return ticks / CLK_TCK


def user_seconds(pids):
    """utime of `pids` (threads included), in seconds: the user-space part of cpu_seconds."""
    return sum(st.utime_ticks for st in map(stat, pids) if st is not None) / CLK_TCK


def status_kb(pids, field):
    """Sum of a kB field of /proc/PID/status (VmRSS, VmHWM, ...) over `pids`."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def pss_kb(pids):
    """Proportional set size (shared pages split between sharers), summed over `pids`."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


@dataclass
class Core:
    busy: int
    total: int
    steal: int
    softirq: int


def cores():
    """{cpu: Core} from /proc/stat, in ticks."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                user, nice, system, idle, iowait, irq, softirq, steal = map(int, vals[:8])
                busy = user + nice + system + irq + softirq
                out[int(name[3:])] = Core(busy, busy + idle + iowait + steal, steal, softirq)
    return out


def core_pct(before, after, cpu, field="busy"):
    """Percentage of wall time core `cpu` spent in `field` between two `cores()` samples."""
    total = after[cpu].total - before[cpu].total
    if total <= 0:
        return None
    return round(100.0 * (getattr(after[cpu], field) - getattr(before[cpu], field)) / total, 1)


def everyone():
    """{pid: (comm, start, own CPU ticks, ticks of the children it has reaped)} for every
    process. Reaped children's time makes a build tool's short-lived compilers visible on the
    tool once they exit, though they were never seen running."""
    out = {}
    for pid in all_pids():
        st = stat(pid)
        if st is not None:
            out[pid] = (st.comm, st.start, st.cpu_ticks, st.reaped_ticks)
    return out


def others(before, after, ours, wall, cpus):
    """Who else ran between two `everyone()` snapshots `wall` seconds apart.

    Returns (CPU seconds of other processes, ksoftirqd seconds, the three biggest others).
    A process's share is its own CPU time plus what its reaped children used, capped at what
    `cpus` cores could do in `wall` (a shell reaping a long build would otherwise bring that
    whole build's CPU into the window). ksoftirqd mostly runs the deferred loopback work of our
    own traffic, so it is counted apart. Processes that started and ended unseen, with a parent
    that does not wait for them, are missed: runner.Window also bounds the total by the cores'
    busy time."""
    cap = wall * cpus * CLK_TCK
    total = ksoftirqd = 0
    top = []
    for pid, (comm, start, own, reaped) in after.items():
        if pid in ours:
            continue
        prev = before.get(pid)
        if prev and prev[1] == start:
            own, reaped = own - prev[2], reaped - prev[3]
        used = min(cap, max(0, own) + max(0, reaped))
        if used <= 0:
            continue
        if comm.startswith("ksoftirqd/"):
            ksoftirqd += used
            continue
        total += used
        top.append((used, f"{comm}[{pid}]"))
    top.sort(reverse=True)
    names = [f"{name} {used / CLK_TCK:.2f}s" for used, name in top[:3] if used / CLK_TCK >= 0.05]
    return total / CLK_TCK, ksoftirqd / CLK_TCK, names
