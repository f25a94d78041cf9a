"""What the results were measured on: the machine, the kernel and every tool's version."""

import os
import platform
import subprocess
import time

from common import REPO_DIR
import proxies as proxy_defs


def _first(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1]
    except OSError:
        pass
    return None


def _git(*args):
    try:
        out = subprocess.run(["git", "-C", REPO_DIR, *args], capture_output=True, text=True,
                             timeout=20)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def describe(proxy_names):
    mem_kb = _first("/proc/meminfo", "MemTotal")
    os_name = _first("/etc/os-release", "PRETTY_NAME=")
    info = {
        "type": "meta",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem_kb.split()[0]) / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "os": os_name.strip().strip('"') if os_name else None,
        "hypervisor": "yes" if "hypervisor" in (_first("/proc/cpuinfo", "flags") or "") else "no",
        "load_avg_at_start": os.getloadavg()[0],
        "versions": {},
    }
    commit = _git("rev-parse", "--short", "HEAD")
    if commit:
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        info["rvoy_commit"] = commit + ("+uncommitted changes" if dirty else "")
    for name in proxy_names:
        proxy = proxy_defs.make(name)
        if proxy is not None:
            info["versions"][name] = proxy.version()
            info.setdefault("binaries", {})[name] = proxy.binary
    info["versions"]["wrk"] = proxy_defs.version_of(["wrk", "-v"])
    info["versions"]["h2load"] = proxy_defs.version_of(["h2load", "--version"])
    info["versions"]["origin"] = proxy_defs.version_of(["nginx", "-v"])
    info["versions"]["python"] = platform.python_version()
    return info
