"""Processes the benchmark starts (pinned with taskset, stopped by PID only), free ports, and
the small HTTP probes used for readiness and correctness checks."""

import http.client
import os
import resource
import shlex
import signal
import socket
import ssl
import subprocess
import time

from common import HOST, log
import procfs


def raise_fd_limit():
    """Soft RLIMIT_NOFILE up to the hard limit (idle-conns needs 2,000+ sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Process:
    """A process started by the benchmark, pinned to one CPU with taskset.

    taskset exec()s the command, so the PID is the command's own. Stopping sends SIGTERM to that
    PID, SIGKILL after a grace period, then SIGKILL to descendants recorded before the stop that
    are still the same processes (same PID and start time): nothing is ever killed by name."""

    def __init__(self, name, argv, cpu, cwd, log_path, env=None):
        self.name = name
        self.argv = ["taskset", "-c", str(cpu)] + list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        log(f"start {name}: {shlex.join(self.argv)}")
        # The limit is inherited: raised here rather than in a `preexec_fn`, which would make
        # Python fork() and run Python code in the child (a few ms counted as start-up).
        raise_fd_limit()
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            self.argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, env=env)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def tree(self):
        return procfs.descendants(self.pid) if self.alive() else []

    def tail(self, lines=5):
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace=5.0):
        recorded = [(pid, procfs.stat(pid)) for pid in self.tree() if pid != self.pid]
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=grace)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for {grace}s: SIGKILL {self.pid}")
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        for pid, before in recorded:
            now = procfs.stat(pid)
            if before and now and now.start == before.start:
                log(f"{self.name}: child {pid} outlived its parent: SIGKILL")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()


def free_ports(names):
    """{name: port} of ports the kernel reports free on 127.0.0.1 right now.

    All sockets are held open until every port is chosen, so the ports are distinct; another
    program may still take one before our servers bind it, which then fails the run cleanly."""
    socks, ports = [], {}
    try:
        for name in names:
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
            ports[name] = s.getsockname()[1]
    finally:
        for s in socks:
            s.close()
    return ports


def listening(port):
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def get(port, path, host=None, tls=False, timeout=2.0):
    """One HTTP/1.1 GET; (status, body length). Raises on connection errors."""
    if tls:
        conn = http.client.HTTPSConnection(HOST, port, timeout=timeout,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        resp = conn.getresponse()
        return resp.status, len(resp.read())
    finally:
        conn.close()


def get_h2c(port, path, host=None, timeout=2.0):
    """One GET over HTTP/2 with prior knowledge (through curl); (status, body length)."""
    argv = ["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "--max-time", str(timeout),
            "-w", "%{http_code} %{size_download}"]
    if host:
        argv += ["-H", f"Host: {host}"]
    out = subprocess.run(argv + [f"http://{HOST}:{port}{path}"], capture_output=True, text=True,
                         timeout=timeout + 5)
    code, size = out.stdout.split()
    if code == "000":
        raise ConnectionError(f"curl --http2-prior-knowledge failed (rc {out.returncode})")
    return int(code), int(size)


def probe(proto, port, path, host=None, timeout=2.0):
    if proto == "h2c":
        return get_h2c(port, path, host, timeout)
    # HTTP/1.1 over TLS without ALPN for h2 too: enough to see the listener serve
    return get(port, path, host, tls=proto in ("https", "h2"), timeout=timeout)


# How often `wait_served` polls plain HTTP and TLS listeners (recorded with each start-up figure).
STARTUP_POLL_S = 0.0005


def wait_served(proc, proto, port, path, host=None, limit=60.0):
    """Polls until a GET through `port` answers 200; returns milliseconds since `proc` was
    started (start-up to the first served request). Every 0.5 ms for plain HTTP and TLS (a
    refused connect costs tens of microseconds, on the harness's core); the h2c probe runs
    curl, so its time is not a start-up figure."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited (rc {proc.popen.returncode}): {proc.tail()}")
        # curl costs a fork and exec per try: only once the port is open
        if proto != "h2c" or listening(port):
            try:
                status, _ = probe(proto, port, path, host, timeout=2.0)
                if status == 200:
                    return round((time.monotonic() - proc.started) * 1000, 1) if proc else None
            except (OSError, http.client.HTTPException, ValueError, subprocess.SubprocessError):
                pass
        time.sleep(STARTUP_POLL_S if proto != "h2c" else 0.002)
    raise RuntimeError(f"nothing served 200 on :{port}{path} within {limit:.0f}s")
