"""One benchmark run: one proxy on one scenario -> one result record (a dict, one JSON line).

A run: fresh ports; the origin (nginx) on the load core; the proxy's config rendered and
checked (`--mode validate`, `nginx -t`, `haproxy -c`: a config rvoy rejects makes the run
"unsupported"); the proxy started on the proxy core and timed to its first served request; a
correctness probe; idle memory; then either the load phases (warm-up, saturation, fixed rate)
or the idle-connection phases; then everything stopped by PID."""

import os
import shlex
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

from common import HOST, CONFIG_DIR, log
import idle
import loadgen
import procfs
import procs
import proxies as proxy_defs
import templates

PORT_NAMES = ["listener", "admin", "upstream", "upstream_h2c", "upstream_tls", "upstream_status"]


@dataclass
class Settings:
    proxy_cpu: int = 0
    load_cpu: int = 1
    duration: int = 10  # seconds of saturation
    warmup: int = 2
    paced_seconds: int = 5  # seconds at the fixed moderate rate
    idle_conns: int = 2000
    noise_pct: float = 5.0  # foreign CPU (% of one core) above which a run is NOISY
    keep: bool = False  # keep run directories
    perf: bool = False  # perf record the proxy during saturation


def prepare_shared(work):
    """Certificates and origin bodies shared by the runs of one suite."""
    certs = os.path.join(work, "certs")
    www = os.path.join(work, "www")
    os.makedirs(certs, exist_ok=True)
    os.makedirs(www, exist_ok=True)
    crt, key = os.path.join(certs, "server.crt"), os.path.join(certs, "server.key")
    if not os.path.exists(crt):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "3650", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        with open(os.path.join(certs, "server.pem"), "w") as pem:  # HAProxy: cert + key
            pem.write(open(crt).read() + open(key).read())
    for name, size in (("64k", 64 * 1024), ("1m", 1024 * 1024)):
        path = os.path.join(www, name)
        if not os.path.exists(path) or os.path.getsize(path) != size:
            with open(path, "wb") as f:
                f.write((b"0123456789abcdef" * (size // 16 + 1))[:size])
    return {"certs": certs, "www": www}


class Window:
    """CPU accounting over one measured window: the proxy's and the origin's process trees, the
    harness and what it ran and reaped (the load generator), each core's busy time, and from
    those the CPU used by anything else on the two cores (noise)."""

    def __init__(self, proxy_pids, upstream_pids, cpus):
        self.proxy_pids, self.upstream_pids, self.cpus = proxy_pids, upstream_pids, cpus

    def __enter__(self):
        self.t0 = time.monotonic()
        self.everyone0 = procfs.everyone()
        self.ours0 = set(procfs.descendants(os.getpid()))
        self.self0 = os.times()
        self.cores0 = procfs.cores()
        self.proxy0 = procfs.cpu_seconds(self.proxy_pids)
        self.proxy_user0 = procfs.user_seconds(self.proxy_pids)
        self.upstream0 = procfs.cpu_seconds(self.upstream_pids)
        return self

    def __exit__(self, *exc):
        self.proxy_cpu = procfs.cpu_seconds(self.proxy_pids) - self.proxy0
        self.proxy_user = procfs.user_seconds(self.proxy_pids) - self.proxy_user0
        self.upstream_cpu = procfs.cpu_seconds(self.upstream_pids) - self.upstream0
        self.cores1 = procfs.cores()
        t = os.times()
        harness = sum(getattr(t, f) - getattr(self.self0, f)
                      for f in ("user", "system", "children_user", "children_system"))
        self.wall = time.monotonic() - self.t0
        ours = self.ours0 | set(procfs.descendants(os.getpid()))
        visible, self.ksoftirqd, self.top = procfs.others(
            self.everyone0, procfs.everyone(), ours, self.wall, len(self.cpus))
        busy = sum(self.cores1[c].busy - self.cores0[c].busy for c in self.cpus) / procfs.CLK_TCK
        # What other processes used, bounded by the busy time of our two cores that none of our
        # processes was billed for (that bound alone would also count loopback softirq work
        # done while a core was idle, billed to nobody: ~20 % of a core at 70k req/s).
        unbilled = max(0.0, busy - self.proxy_cpu - self.upstream_cpu - harness - self.ksoftirqd)
        self.foreign = min(visible, unbilled)
        self.unbilled = unbilled
        return False

    def pct(self, seconds):
        return round(100 * seconds / self.wall, 1) if self.wall else None


class RssSampler(threading.Thread):
    """Peak RSS of a process tree, sampled every 100 ms."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.peak, self.done = pids, 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, procfs.status_kb(self.pids, "VmRSS"))
            self.done.wait(0.1)

    def stop(self):
        self.done.set()
        self.join()
        return max(self.peak, procfs.status_kb(self.pids, "VmRSS"))


def upstream_accepts(port):
    """Connections the origin has accepted so far (nginx stub_status)."""
    try:
        import http.client
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        conn.request("GET", "/status")
        text = conn.getresponse().read().decode()
        conn.close()
        return int(text.splitlines()[2].split()[0])
    except (OSError, ValueError, IndexError):
        return None


def first_error_line(output):
    """The line of a failed config check worth reporting."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in lines:
        if "critical" in ln or "[emerg]" in ln or "[ALERT]" in ln or "not supported" in ln:
            return ln[-400:]
    return (lines[-1] if lines else "config check failed")[-400:]


def run(settings, proxy_name, sc, shared, rundir, perf_out=None):
    """Runs `proxy_name` on scenario `sc`; returns the result record."""
    os.makedirs(rundir, exist_ok=True)
    res = {"type": "run", "scenario": sc.name, "proxy": proxy_name, "status": "error",
           "ts": time.strftime("%Y-%m-%dT%H:%M:%S")}
    started = []
    try:
        _run(settings, proxy_name, sc, shared, rundir, perf_out, res, started)
    except Exception as e:  # noqa: BLE001 - any failure becomes the run's result
        res["status"] = "error"
        res["reason"] = f"{type(e).__name__}: {e}"[:1000]
        log(f"FAILED {proxy_name} {sc.name}: {res['reason']} (kept {rundir})")
    finally:
        for p in reversed(started):
            p.stop()
    if sc.shape == "accesslog" and res["status"] == "ok":
        res["access_log_lines"] = count_access_log(proxy_name, rundir)
    if res["status"] != "error" and not settings.keep:
        shutil.rmtree(rundir, ignore_errors=True)
    return res


def _run(settings, proxy_name, sc, shared, rundir, perf_out, res, started):
    proxy = proxy_defs.make(proxy_name)
    ports = procs.free_ports(PORT_NAMES)
    paths = dict(shared, run=rundir)
    ucfg = templates.render_file(os.path.join(CONFIG_DIR, "upstream.nginx.conf"),
                                 os.path.join(rundir, "upstream.conf"), ports, paths)
    uprefix = os.path.join(rundir, "upstream")
    os.makedirs(os.path.join(uprefix, "tmp"), exist_ok=True)
    upstream = procs.Process("origin", ["nginx", "-p", uprefix, "-e",
                                        os.path.join(uprefix, "error.log"), "-c", ucfg],
                             settings.load_cpu, rundir, os.path.join(rundir, "upstream.log"))
    started.append(upstream)
    procs.wait_served(upstream, "http", ports["upstream"], "/small", limit=15)

    proxy_proc = None
    if proxy is None:
        port = {"http": ports["upstream"], "h2c": ports["upstream_h2c"],
                "https": ports["upstream_tls"]}[sc.proto]
        measured = upstream
    else:
        port = ports["listener"]
        cfg = proxy.config(sc.shape, rundir, ports, paths)
        valid, secs, output = proxy.validate(cfg, rundir)
        res["validate_ms"] = round(secs * 1000, 1)
        if not valid:
            # rvoy not accepting a config Envoy accepts is a gap to report, not a harness error
            res["status"] = "unsupported" if proxy_name == "rvoy" else "error"
            res["reason"] = first_error_line(output)
            log(f"{proxy_name} rejects the {sc.name} config: {res['reason']}")
            return
        argv = proxy.serve_argv(cfg, rundir)
        proxy_proc = procs.Process(proxy_name, argv, settings.proxy_cpu, rundir,
                                   os.path.join(rundir, "proxy.log"))
        started.append(proxy_proc)
        res["proxy_cmd"] = shlex.join(proxy_proc.argv)
        startup = procs.wait_served(proxy_proc, sc.proto, port, sc.path, sc.host)
        if sc.proto != "h2c":
            res["startup_ms"] = startup
            res["startup_poll_ms"] = procs.STARTUP_POLL_S * 1000
        measured = proxy_proc

    status, length = procs.probe(sc.proto, port, sc.path, sc.host, timeout=5)
    if status != 200 or length != sc.body:
        raise RuntimeError(f"probe of {sc.path}: status {status}, {length} body bytes "
                           f"(expected 200 and {sc.body})")
    time.sleep(1.0)
    pids = measured.tree()
    res["rss_idle_kb"] = procfs.status_kb(pids, "VmRSS")
    res["pss_idle_kb"] = procfs.pss_kb(pids)
    # The private part of RSS (heap, stacks, relocated data); the rest is
    # file-backed pages of the binary and its libraries, shared and reclaimable.
    res["anon_idle_kb"] = procfs.status_kb(pids, "RssAnon")
    res["threads"] = sum(len(os.listdir(f"/proc/{p}/task")) for p in pids)

    if sc.kind == "idle":
        idle_phases(settings, res, sc, port, pids, upstream.tree())
    else:
        load_phases(settings, res, sc, port, pids, upstream.tree(), ports, rundir, perf_out,
                    measure_proxy=proxy is not None)
    for p in started:
        if not p.alive():
            raise RuntimeError(f"{p.name} died during the run: {p.tail()}")
    res["status"] = "ok"


def count_access_log(proxy_name, rundir):
    path = os.path.join(rundir, "proxy.log" if proxy_name == "haproxy" else "access.log")
    try:
        with open(path, errors="replace") as f:
            return sum(1 for line in f if "GET" in line)
    except OSError:
        return 0


def load_phases(settings, res, sc, port, ppids, upids, ports, rundir, perf_out, measure_proxy):
    cpu = settings.load_cpu
    if settings.warmup:
        loadgen.saturate(sc, port, settings.warmup, os.path.join(rundir, "warmup.out"), cpu)

    # saturation: requests per second and CPU per request
    sampler = RssSampler(ppids)
    sampler.start()
    perf = None
    if perf_out and measure_proxy:
        perf = subprocess.Popen(["taskset", "-c", str(cpu), "perf", "record", "--call-graph", os.environ.get("BENCH_PERF_CALL_GRAPH", "fp"),
                                 "-F", "999",
                                 "-p", str(ppids[0]), "-o", os.path.join(rundir, "perf.data"),
                                 "--", "sleep", str(settings.duration)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    accepts0 = upstream_accepts(ports["upstream_status"])
    cpus = (settings.proxy_cpu, settings.load_cpu)
    wpids = ppids if measure_proxy else []  # direct: the origin is measured as the origin
    with Window(wpids, upids, cpus) as w:
        sat = loadgen.saturate(sc, port, settings.duration, os.path.join(rundir, "load.out"), cpu)
    accepts1 = upstream_accepts(ports["upstream_status"])
    rss_peak = sampler.stop()
    if perf is not None:
        perf.wait(timeout=60)
        perf_report(os.path.join(rundir, "perf.data"), perf_out)

    n = sat["requests"]
    res["loadgen_cmd"] = shlex.join(["taskset", "-c", str(cpu)] + sat["argv"])
    res["requests"] = n
    res["rps"] = round(n / sat["seconds"], 1) if sat["seconds"] else None
    res["errors"], res["non2xx"] = sat["errors"], sat["non2xx"]
    res["sat_p50_ms"] = sat["latency"].get("p50")
    res["sat_p99_ms"] = sat["latency"].get("p99")
    res["loadgen_cpu_pct"] = w.pct(sat["loadgen_cpu_s"])
    res["upstream_cpu_pct"] = w.pct(w.upstream_cpu)
    if accepts0 is not None and accepts1 is not None:
        res["upstream_conns_opened"] = accepts1 - accepts0 - 1  # minus our status request
    pc, lc = settings.proxy_cpu, settings.load_cpu
    res["proxy_core_busy_pct"] = procfs.core_pct(w.cores0, w.cores1, pc)
    res["load_core_busy_pct"] = procfs.core_pct(w.cores0, w.cores1, lc)
    res["steal_pct"] = max(procfs.core_pct(w.cores0, w.cores1, pc, "steal") or 0,
                           procfs.core_pct(w.cores0, w.cores1, lc, "steal") or 0)
    if measure_proxy:
        res["proxy_cpu_pct"] = w.pct(w.proxy_cpu)
        res["cpu_us_per_req"] = round(w.proxy_cpu * 1e6 / n, 2) if n else None
        # the user-space part of it (the rest is the kernel: sockets, TCP, wake-ups)
        res["user_us_per_req"] = round(w.proxy_user * 1e6 / n, 2) if n else None
        res["rss_load_kb"] = rss_peak
        res["hwm_kb"] = procfs.status_kb(ppids, "VmHWM")
    foreign = [w.pct(w.foreign)]
    tops = list(w.top)

    # fixed moderate rate: latency
    with Window(wpids, upids, cpus) as wp:
        pr = loadgen.paced(sc, port, settings.paced_seconds, rundir, cpu)
    res["paced_cmd"] = shlex.join(pr["argv"])
    res["rate"] = sc.rate
    res["paced_rps"] = round(pr["requests"] / pr["seconds"], 1) if pr["seconds"] else None
    for k in ("p50", "p90", "p99", "p999", "max"):
        res[f"{k}_ms"] = pr["latency"].get(k)
    res["paced_errors"] = pr["errors"] + pr["non2xx"]
    if measure_proxy and pr["requests"]:
        res["paced_cpu_us_per_req"] = round(wp.proxy_cpu * 1e6 / pr["requests"], 2)
    foreign.append(wp.pct(wp.foreign))
    tops += wp.top

    res["foreign_cpu_pct"] = max(f for f in foreign if f is not None)
    res["foreign_top"] = tops[:3]
    res["ksoftirqd_pct"] = w.pct(w.ksoftirqd)
    res["unbilled_cpu_pct"] = w.pct(w.unbilled)
    flags = []
    if res["foreign_cpu_pct"] > settings.noise_pct:
        flags.append("NOISY")
    if measure_proxy and (res["proxy_core_busy_pct"] or 0) - res["proxy_cpu_pct"] > 8:
        flags.append("PROXY_CORE_SHARED")  # something else ran on the proxy's core
    if res["steal_pct"] > 2:
        flags.append("CPU_STEAL")
    if measure_proxy and (res["proxy_core_busy_pct"] or 0) >= 90:
        flags.append("PROXY_SATURATED")
    if (res["load_core_busy_pct"] or 0) >= 90:
        flags.append("LOADGEN_SATURATED")
    if res["errors"] or res["non2xx"] or res["paced_errors"]:
        flags.append("ERRORS")
    res["flags"] = flags
    log(f"{res['proxy']} {sc.name}: {res['rps']} req/s, {res.get('cpu_us_per_req')} us/req (user {res.get('user_us_per_req')}) "
        f"(proxy {res.get('proxy_cpu_pct')}% cpu, core {res['proxy_core_busy_pct']}%), "
        f"p50/p99 {res['p50_ms']}/{res['p99_ms']} ms at {sc.rate}/s, foreign "
        f"{res['foreign_cpu_pct']}% {flags}")


def idle_phases(settings, res, sc, port, pids, upids):
    n = settings.idle_conns
    before = res["rss_idle_kb"]
    holder = idle.IdleConnections(port, n, sc.path, sc.host)
    try:
        with Window(pids, upids, (settings.proxy_cpu, settings.load_cpu)) as w:
            holder.connect()
            time.sleep(1.0)
            connected = procfs.status_kb(pids, "VmRSS")
            cpu0 = procfs.cpu_seconds(pids)
            ok, failed = holder.request_each()
            cpu1 = procfs.cpu_seconds(pids)
            time.sleep(1.0)
            after_req = procfs.status_kb(pids, "VmRSS")
            res["idle_still_open"] = holder.still_open()
        holder.close()
        time.sleep(1.0)
        res["rss_after_close_kb"] = procfs.status_kb(pids, "VmRSS")
    finally:
        holder.close()
    res["idle_conns"] = n
    res["idle_connect_errors"] = holder.connect_errors
    res["requests"], res["errors"] = ok, failed + holder.connect_errors
    res["rss_connected_kb"], res["rss_after_req_kb"] = connected, after_req
    res["per_conn_connected_b"] = round((connected - before) * 1024 / n)
    res["per_conn_after_req_b"] = round((after_req - before) * 1024 / n)
    res["cpu_us_per_req"] = round((cpu1 - cpu0) * 1e6 / ok, 2) if ok else None
    res["hwm_kb"] = procfs.status_kb(pids, "VmHWM")
    res["foreign_cpu_pct"] = w.pct(w.foreign)
    res["foreign_top"] = w.top
    res["flags"] = (["ERRORS"] if res["errors"] else []) + (
        ["NOISY"] if res["foreign_cpu_pct"] > settings.noise_pct else [])
    log(f"{res['proxy']} idle-conns: idle {before} kB, {n} connected {connected} kB "
        f"({res['per_conn_connected_b']} B each), after a request each {after_req} kB "
        f"({res['per_conn_after_req_b']} B each), closed {res['rss_after_close_kb']} kB")


def perf_report(data, out):
    """Top symbols (self time) of a perf recording, into `out`."""
    with open(out, "w") as f:
        subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort",
                        "symbol", "--percent-limit", "0.5", "-g", "none"],
                       stdout=f, stderr=subprocess.DEVNULL, timeout=300)
