"""Load generators, all bounded in time and pinned to the load core.

* saturation (requests per second, CPU per request): wrk for HTTP/1.1 and TLS, h2load for h2c;
* fixed moderate load (latency): `h2load --rps` (open loop per client connection; latency of
  each request from its actual send, read from h2load's --log-file), or, for a new connection
  per request, which h2load cannot pace, the paced client below (latency from connect start).
"""

import json
import os
import re
import selectors
import signal
import socket
import ssl
import subprocess
import threading
import time

from common import HOST, LIB_DIR, log

WRK_SCRIPT = os.path.join(LIB_DIR, "wrk-report.lua")


def percentiles(samples_us):
    """{p50, p90, p99, p999, max, mean} in milliseconds (nearest rank) of latencies in us."""
    if not samples_us:
        return {}
    s = sorted(samples_us)
    n = len(s)

    def rank(q):
        return round(s[min(n - 1, max(0, int(round(q * n + 0.5)) - 1))] / 1000, 3)

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "p999": rank(0.999),
            "max": round(s[-1] / 1000, 3), "mean": round(sum(s) / n / 1000, 3)}


def run_bounded(argv, out_path, limit, cpu):
    """Runs a load generator on `cpu`, SIGKILLed after `limit` s; (rc, wall s, its CPU s)."""
    with open(out_path, "wb") as out:
        t0 = time.monotonic()
        p = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        killer = threading.Timer(limit, lambda: p.poll() is None and os.kill(p.pid, signal.SIGKILL))
        killer.start()
        reaped = False
        try:
            _, status, usage = os.wait4(p.pid, 0)
            reaped = True
        finally:
            killer.cancel()
            if not reaped:  # interrupted: do not leave it running
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, time.monotonic() - t0, usage.ru_utime + usage.ru_stime


def url_of(sc, port):
    scheme = "https" if sc.proto in ("https", "h2") else "http"
    return f"{scheme}://{HOST}:{port}{sc.path}"


def headers_of(sc, tool):
    out = []
    if sc.host:
        # h2load adds its own Host from the URL next to a `-H 'Host: ...'`; `:authority`
        # replaces it (HTTP/1.1 and HTTP/2 alike)
        out += ["-H", f":authority: {sc.host}" if tool == "h2load" else f"Host: {sc.host}"]
    if sc.newconn:
        out += ["-H", "Connection: close"]
    return out


def saturation_argv(sc, port, seconds):
    if sc.proto in ("h2c", "h2"):
        return (["h2load", "-t1", f"-c{sc.conns}", f"-m{sc.streams}", "-D", str(seconds)]
                + headers_of(sc, "h2load") + [url_of(sc, port)])
    return (["wrk", "-t1", f"-c{sc.conns}", f"-d{seconds}s", "--timeout", "5s", "-s", WRK_SCRIPT]
            + headers_of(sc, "wrk") + [url_of(sc, port)])


def paced_argv(sc, port, seconds, logfile):
    per_conn = max(1, sc.rate // sc.conns)
    argv = ["h2load", "-t1", f"-c{sc.conns}", f"-m{sc.streams}", f"--rps={per_conn}", "-D",
            str(seconds), f"--log-file={logfile}"]
    if sc.proto not in ("h2c", "h2"):
        argv.append("--h1")
    return argv + headers_of(sc, "h2load") + [url_of(sc, port)]


def parse_wrk(text):
    for line in text.splitlines():
        if line.startswith("BENCH "):
            r = json.loads(line[6:])
            return {
                "requests": r["requests"], "seconds": r["duration_us"] / 1e6, "bytes": r["bytes"],
                "errors": r["connect"] + r["read"] + r["write"] + r["timeout"],
                "non2xx": r["status"],  # wrk counts status >= 400 only
                "latency": {k: r[k] / 1000 for k in ("p50", "p90", "p99", "p999", "max", "mean")},
            }
    raise RuntimeError("wrk printed no BENCH line: " + text[-1500:])


def parse_h2load(text, logfile=None):
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (m and counts and codes):
        raise RuntimeError("cannot read h2load's output: " + text[-1500:])
    traffic = re.search(r"traffic: \S+ \((\d+)\) total", text)
    _, _, done, _, failed, errored, timeouts = map(int, counts.groups())
    out = {
        "requests": done, "seconds": float(m.group(1)),
        "bytes": int(traffic.group(1)) if traffic else 0,
        "errors": failed + errored + timeouts,
        "non2xx": sum(map(int, codes.groups()[1:])),
        "latency": {},
    }
    if logfile and os.path.exists(logfile):
        samples = []
        with open(logfile) as f:
            for line in f:
                cols = line.split("\t")
                if len(cols) >= 3:
                    samples.append(int(cols[2]))
        out["latency"] = percentiles(samples)
    return out


def saturate(sc, port, seconds, out_path, cpu):
    argv = saturation_argv(sc, port, seconds)
    rc, wall, cpu_s = run_bounded(argv, out_path, seconds + 30, cpu)
    with open(out_path, errors="replace") as f:
        text = f.read()
    if rc != 0:
        raise RuntimeError(f"{argv[0]} exited {rc}: {text[-1500:]}")
    r = parse_h2load(text) if argv[0] == "h2load" else parse_wrk(text)
    r.update(argv=argv, wall=wall, loadgen_cpu_s=cpu_s)
    return r


def paced(sc, port, seconds, rundir, cpu):
    """Latency at the scenario's fixed rate."""
    if sc.newconn:
        t0 = time.monotonic()
        r = paced_newconn(port, sc.path, sc.host or f"{HOST}:{port}", sc.rate, seconds,
                          tls=sc.proto == "https")
        r.update(argv=["(bench paced client)", f"rate={sc.rate}", f"{seconds}s"],
                 wall=time.monotonic() - t0)
        return r
    logfile = os.path.join(rundir, "paced.log")
    argv = paced_argv(sc, port, seconds, logfile)
    out_path = os.path.join(rundir, "paced.out")
    rc, wall, _ = run_bounded(argv, out_path, seconds + 30, cpu)
    with open(out_path, errors="replace") as f:
        text = f.read()
    if rc != 0:
        raise RuntimeError(f"h2load exited {rc}: {text[-1500:]}")
    r = parse_h2load(text, logfile)
    r.update(argv=argv, wall=wall)
    return r


class _Pending:
    __slots__ = ("started", "sent", "buf", "need", "tls")

    def __init__(self, started):
        self.started = started
        self.sent = False
        self.buf = b""
        self.need = None  # total bytes of the response once its head is read
        self.tls = None  # the TLS socket once TCP is connected (https)


def _tls_client():
    """A TLS client context for the proxy's self-signed test certificate: no verification and
    no session cache (ssl sessions are only resumed when passed explicitly), so every new
    connection is a full handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def paced_newconn(port, path, host, rate, seconds, timeout=5.0, max_inflight=512, tls=False):
    """Open-loop client: at `rate` per second, a new connection (with `tls`, a full TLS
    handshake), one GET, close. Latency runs from the connect() to the last byte of the
    response (not from the schedule: a request started late is counted in `late`). Everything
    stops `timeout` s after the last start."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    tls_ctx = _tls_client() if tls else None
    sel = selectors.DefaultSelector()
    total = int(rate * seconds)
    start = time.monotonic() + 0.01
    issued = 0
    samples, errors, non2xx, late = [], 0, 0, 0

    def finish(sock, ok, status=None):
        nonlocal errors, non2xx
        sel.unregister(sock)
        sock.close()
        if not ok:
            errors += 1
        elif status is not None and not 200 <= status < 300:
            non2xx += 1

    hard_stop = start + seconds + timeout
    while (issued < total or sel.get_map()) and time.monotonic() < hard_stop:
        now = time.monotonic()
        while issued < total and start + issued / rate <= now:
            if len(sel.get_map()) >= max_inflight:
                errors += 1  # the proxy is not keeping up with a moderate load: count it
                issued += 1
                continue
            if now - (start + issued / rate) > 0.001:
                late += 1
            issued += 1
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((HOST, port))
            sel.register(sock, selectors.EVENT_WRITE, _Pending(time.monotonic()))
        wait = (start + issued / rate - time.monotonic()) if issued < total else 0.05
        for key, _ in sel.select(max(0.0, min(wait, 0.05))):
            sock, p = key.fileobj, key.data
            try:
                if not p.sent:
                    if p.tls is None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        finish(sock, False)
                        continue
                    if tls_ctx is not None:
                        if p.tls is None:
                            sel.unregister(sock)
                            sock = p.tls = tls_ctx.wrap_socket(sock, do_handshake_on_connect=False)
                            sel.register(sock, selectors.EVENT_WRITE, p)
                        try:
                            sock.do_handshake()
                        except ssl.SSLWantReadError:
                            sel.modify(sock, selectors.EVENT_READ, p)
                            continue
                        except ssl.SSLWantWriteError:
                            sel.modify(sock, selectors.EVENT_WRITE, p)
                            continue
                    sock.sendall(request)
                    p.sent = True
                    sel.modify(sock, selectors.EVENT_READ, p)
                    continue
                chunk = sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except OSError:
                finish(sock, False)
                continue
            p.buf += chunk
            if p.need is None and b"\r\n\r\n" in p.buf:
                head, _, _ = p.buf.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                p.need = len(head) + 4 + (int(length.group(1)) if length else 0)
            if p.need is not None and len(p.buf) >= p.need:
                samples.append((time.monotonic() - p.started) * 1e6)
                finish(sock, True, int(p.buf.split(b" ", 2)[1]))
            elif not chunk:
                finish(sock, False)
    for key in list(sel.get_map().values()):
        finish(key.fileobj, False)
    elapsed = min(time.monotonic(), start + seconds) - start
    if late:
        log(f"paced client: {late} of {total} requests started over 1 ms late")
    return {"requests": len(samples), "seconds": elapsed, "bytes": 0, "errors": errors,
            "non2xx": non2xx, "late": late, "latency": percentiles(samples)}
