"""Markdown tables from the benchmark's JSON lines: medians per (scenario, proxy), ratios to Envoy
measured in the same suite, the no-proxy baseline, and issue 6's targets. Writes a standalone
file, or updates the generated part of docs/performance.md (between the BEGIN/END markers)."""

import json
import os

from common import REPO_DIR, median
import suite

BEGIN = "<!-- BEGIN bench/render output: do not edit by hand -->"
END = "<!-- END bench/render output -->"
DOC = os.path.join(REPO_DIR, "docs", "performance.md")
ORDER = ["direct", "rvoy", "rvoy-base", "envoy", "nginx", "haproxy"]
LABEL = {"direct": "no proxy", "rvoy": "rvoy", "rvoy-base": "rvoy (base)", "envoy": "Envoy",
         "nginx": "nginx", "haproxy": "HAProxy"}
PEERS = ["nginx", "haproxy"]


def load(paths):
    records = []
    for path in paths:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


class Results:
    def __init__(self, records, clean_only=False):
        self.meta = [r for r in records if r.get("type") == "meta"]
        runs = [r for r in records if r.get("type") == "run" and r.get("kept", True)]
        self.all_runs = runs
        if clean_only:
            runs = [r for r in runs if not suite.DISTURBED & set(r.get("flags", []))]
        self.runs = runs
        seen = {r["scenario"] for r in runs}
        order = []
        for m in self.meta:
            order += [s for s in m.get("scenarios", []) if s not in order]
        self.scenarios = [s for s in order if s in seen] + sorted(seen - set(order))
        present = {r["proxy"] for r in runs}
        self.proxies = [p for p in ORDER if p in present]

    def cell(self, scenario, proxy):
        return [r for r in self.runs if r["scenario"] == scenario and r["proxy"] == proxy
                and r["status"] == "ok"]

    def med(self, scenario, proxy, field):
        return median(r.get(field) for r in self.cell(scenario, proxy))

    def status(self, scenario, proxy):
        """'ok', 'unsupported' (with a reason) or 'error' for a cell."""
        runs = [r for r in self.runs if r["scenario"] == scenario and r["proxy"] == proxy]
        if not runs:
            return None, None
        if any(r["status"] == "ok" for r in runs):
            return "ok", None
        last = runs[-1]
        return last["status"], last.get("reason")

    def ratio(self, scenario, proxy, field):
        mine, envoy = self.med(scenario, proxy, field), self.med(scenario, "envoy", field)
        if mine is None or not envoy:
            return None
        return mine / envoy


def fmt(v, digits=1, thousands=False):
    if v is None:
        return "–"
    if thousands:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio_text(r):
    return "" if r is None else f" ({r:.2f}×)"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def value_or_status(res, scenario, proxy, text):
    st, reason = res.status(scenario, proxy)
    if st == "unsupported":
        return "unsupported"
    if st == "error":
        return "error"
    return text


def binary_note(meta, name):
    """` from <path>` for a proxy's binary (which build was measured: plain release, PGO)."""
    path = meta.get("binaries", {}).get(name)
    if not path:
        return ""
    if os.path.abspath(path).startswith(REPO_DIR + os.sep):
        path = os.path.relpath(path, REPO_DIR)
    return f" from `{path}`"


def setup_section(res):
    if not res.meta:
        return ""
    m = res.meta[-1]
    st = m.get("settings", {})
    v = m.get("versions", {})
    lines = [
        f"Measured {m.get('date')} with `{m.get('command', 'bench/run')}` "
        f"({m.get('rounds')} interleaved rounds; suite `{m.get('suite')}`).",
        "",
        f"* Machine: {m.get('cpus')} × {m.get('cpu')}, {m.get('memory_gib')} GiB, "
        f"{m.get('os')}, kernel {m.get('kernel')}"
        + (", virtual machine" if m.get("hypervisor") == "yes" else "")
        + f"; load average {m.get('load_avg_at_start'):.1f} when the suite started.",
        f"* rvoy: commit {m.get('rvoy_commit', '?')}, `{v.get('rvoy', '?')}`"
        + binary_note(m, "rvoy"),
    ]
    if "rvoy-base" in v:
        lines.append(f"* rvoy (base): `{v['rvoy-base']}`" + binary_note(m, "rvoy-base"))
    for name in ("envoy", "nginx", "haproxy"):
        if name in v:
            lines.append(f"* {LABEL[name]}: `{v[name]}`")
    lines.append(f"* Load: `{v.get('wrk')}`, `{v.get('h2load')}`; origin `{v.get('origin')}`; "
                 f"Python {v.get('python')}")
    lines.append(
        f"* Per run: {st.get('warmup')} s warm-up, {st.get('duration')} s saturating load "
        f"(requests per second, CPU per request, RSS under load), then {st.get('paced_seconds')} s "
        f"at a fixed moderate rate (latency); idle-conns holds {st.get('idle_conns')} connections. "
        f"Proxy on CPU {st.get('proxy_cpu')}, load generator + origin + harness on CPU "
        f"{st.get('load_cpu')}.")
    disturbed = [r for r in res.all_runs if r["status"] == "ok"
                 and suite.DISTURBED & set(r.get("flags", []))]
    ok = [r for r in res.all_runs if r["status"] == "ok"]
    if ok:
        lines.append(
            f"* Noise: {len(disturbed)} of {len(ok)} kept runs were disturbed by other processes "
            "(NOISY: foreign processes used more than "
            f"{st.get('noise_pct', 5)} % of a core; PROXY_CORE_SHARED: the proxy's core was busier "
            "than the proxy by more than 8 points; CPU_STEAL). "
            f"Median foreign CPU during the runs: "
            f"{fmt(median(r.get('foreign_cpu_pct') for r in ok))} % of a core.")
    return "\n".join(lines)


def summary_tables(res):
    load = [s for s in res.scenarios if s != "idle-conns"]
    proxied = [p for p in res.proxies if p != "direct"]
    out = []

    out.append("### Proxy CPU per request (µs, lower is better; ×Envoy in parentheses)\n")
    out.append("utime + stime of the proxy's processes over the saturating window, divided by the "
               "requests completed. The most stable figure on a shared machine.\n")
    rows = []
    for s in load:
        row = [s]
        for p in proxied:
            v = res.med(s, p, "cpu_us_per_req")
            rat = res.ratio(s, p, "cpu_us_per_req") if p != "envoy" else None
            row.append(value_or_status(res, s, p, fmt(v) + ratio_text(rat)))
        rows.append(row)
    out.append(table(["scenario"] + [LABEL[p] for p in proxied], rows))

    if any(res.med(s, p, "user_us_per_req") is not None for s in load for p in proxied):
        out.append("\n### Of which user space (µs per request)\n")
        out.append("utime alone: the proxy's own work. The rest of the figure above is the kernel's "
                   "(socket calls, TCP, loopback delivery, waking the peers), which every proxy "
                   "pays and which grows when the peers sleep between requests.\n")
        rows = []
        for s in load:
            rows.append([s] + [value_or_status(res, s, p, fmt(res.med(s, p, "user_us_per_req")))
                               for p in proxied])
        out.append(table(["scenario"] + [LABEL[p] for p in proxied], rows))

    out.append("\n### Requests per second at saturation (×Envoy)\n")
    out.append("On two cores this mostly tells which side ran out of CPU first (PROXY_SATURATED / "
               "LOADGEN_SATURATED in the details).\n")
    rows = []
    for s in load:
        row = [s]
        for p in res.proxies:
            v = res.med(s, p, "rps")
            rat = res.ratio(s, p, "rps") if p not in ("envoy", "direct") else None
            row.append(value_or_status(res, s, p, fmt(v, thousands=True) + ratio_text(rat)))
        rows.append(row)
    out.append(table(["scenario"] + [LABEL[p] for p in res.proxies], rows))

    out.append("\n### Latency at a fixed moderate load: p50 / p99 (ms)\n")
    out.append("h2load `--rps` (keep-alive and h2c; from each request's send) or the harness's "
               "paced client (new connection per request; from connect). `no proxy` is the "
               "physical limit: the origin alone with the same client.\n")
    rows = []
    for s in load:
        rates = [r.get("rate") for r in res.runs if r["scenario"] == s and r.get("rate")]
        row = [s, f"{rates[0]:,}/s" if rates else "–"]
        for p in res.proxies:
            p50, p99 = res.med(s, p, "p50_ms"), res.med(s, p, "p99_ms")
            text = "–" if p50 is None else f"{p50:.2f} / {p99:.2f}"
            row.append(value_or_status(res, s, p, text))
        rows.append(row)
    out.append(table(["scenario", "rate"] + [LABEL[p] for p in res.proxies], rows))
    return "\n".join(out)


def baseline_section(res):
    if "direct" not in res.proxies:
        return ""
    proxied = [p for p in res.proxies if p != "direct"]
    rows = []
    for s in res.scenarios:
        d50, d99 = res.med(s, "direct", "p50_ms"), res.med(s, "direct", "p99_ms")
        if d50 is None:
            continue
        row = [s, f"{d50:.2f} / {d99:.2f}"]
        for p in proxied:
            p50, p99 = res.med(s, p, "p50_ms"), res.med(s, p, "p99_ms")
            row.append("–" if p50 is None else f"+{(p50 - d50) * 1000:.0f} / +{(p99 - d99) * 1000:.0f}")
        rows.append(row)
    return ("### Overhead against the no-proxy baseline\n\nLatency added by each proxy at the "
            "fixed rate (µs, p50 / p99), over the origin served directly (ms). A proxy's CPU per "
            "request is all overhead: the baseline has no proxy process.\n\n"
            + table(["scenario", "no proxy p50 / p99 ms"] + [f"{LABEL[p]} +µs" for p in proxied],
                    rows))


def memory_section(res):
    proxied = [p for p in res.proxies if p != "direct"]
    rows = []
    for p in proxied:
        idle_rss = res.med("h1-keepalive-small", p, "rss_idle_kb") or res.med("idle-conns", p, "rss_idle_kb")
        idle_anon = res.med("h1-keepalive-small", p, "anon_idle_kb")
        load_rss = res.med("h1-keepalive-small", p, "rss_load_kb")
        per_conn = res.med("idle-conns", p, "per_conn_after_req_b")
        startup = res.med("h1-keepalive-small", p, "startup_ms")
        startup_r = res.ratio("h1-keepalive-small", p, "startup_ms") if p != "envoy" else None
        rows.append([LABEL[p], fmt(idle_rss / 1024 if idle_rss else None),
                     fmt(idle_anon / 1024 if idle_anon else None),
                     fmt(load_rss / 1024 if load_rss else None),
                     fmt(per_conn / 1024 if per_conn is not None else None, 2),
                     fmt(startup) + ratio_text(startup_r)])
    # Suites measured before the figure was recorded polled every 2 ms.
    polls = sorted({r.get("startup_poll_ms", 2) for r in res.runs
                    if r["scenario"] == "h1-keepalive-small" and r.get("startup_ms")})
    poll = " / ".join(f"{p:g}" for p in polls) or "2"
    return ("### Memory and start-up\n\nRSS of the proxy's processes (nginx: master + worker) in "
            "h1-keepalive-small: idle 1 s after the first request (and its anonymous part, "
            "RssAnon: the rest is file-backed pages of the binary and libraries, shared and "
            "reclaimable), peak under load; memory per "
            "idle keep-alive connection from idle-conns; start-up = exec to the first 200 "
            f"through the listener (polled every {poll} ms).\n\n"
            + table(["proxy", "RSS idle MiB", "of it anonymous MiB", "RSS under load MiB",
                     "KiB per idle conn",
                     "start-up ms (×Envoy)"], rows))


def idle_section(res):
    s = "idle-conns"
    rows = []
    for p in res.proxies:
        st, _ = res.status(s, p)
        if st is None or p == "direct":
            continue
        if st != "ok":
            rows.append([LABEL[p], st, "", "", "", ""])
            continue

        def kib(field):
            v = res.med(s, p, field)
            return None if v is None else v / 1024

        rows.append([LABEL[p], fmt(kib("rss_idle_kb")), fmt(kib("per_conn_connected_b"), 2),
                     fmt(kib("per_conn_after_req_b"), 2), fmt(kib("rss_after_close_kb")),
                     fmt(res.med(s, p, "idle_still_open"), 0)])
    if not rows:
        return ""
    n = res.med(s, res.proxies[-1], "idle_conns") or 2000
    return (f"### Idle keep-alive connections ({n:,.0f})\n\n"
            + table(["proxy", "RSS idle MiB", "KiB per conn, connected",
                     "KiB per conn, after 1 request", "RSS after closing MiB", "still open"], rows))


def large_section(res):
    s = "large-config"
    rows = []
    for p in res.proxies:
        st, reason = res.status(s, p)
        if st is None or p == "direct":
            continue
        if st != "ok":
            rows.append([LABEL[p], st] + [""] * 5)
            continue
        rss = res.med(s, p, "rss_idle_kb")
        rows.append([LABEL[p], fmt(res.med(s, p, "validate_ms"), 0),
                     fmt(res.med(s, p, "startup_ms"), 0), fmt(rss / 1024 if rss else None),
                     fmt(res.med(s, p, "cpu_us_per_req")), fmt(res.med(s, p, "rps"), thousands=True),
                     fmt(res.med(s, p, "p99_ms"), 2)])
    if not rows:
        return ""
    return ("### Large config (10,000 routes, 1,000 clusters)\n\n`bench/gen-large-config`; the "
            "measured request matches the last route of a 1,000-route virtual host.\n\n"
            + table(["proxy", "validate ms", "start-up ms", "RSS idle MiB", "CPU µs/req", "req/s",
                     "p99 ms"], rows))


def accesslog_section(res):
    rows = []
    for p in res.proxies:
        off = res.med("h1-keepalive-small", p, "cpu_us_per_req")
        on = res.med("h1-accesslog", p, "cpu_us_per_req")
        st, _ = res.status("h1-accesslog", p)
        if st is None or p == "direct":
            continue
        if st != "ok":
            rows.append([LABEL[p], fmt(off), st, ""])
            continue
        rows.append([LABEL[p], fmt(off), fmt(on),
                     "–" if off is None or on is None else f"+{on - off:.1f}"])
    if not rows:
        return ""
    return ("### Access logging (CPU µs per request)\n\n"
            + table(["proxy", "off (h1-keepalive-small)", "on (h1-accesslog)", "cost"], rows))


def targets_section(res):
    if "rvoy" not in res.proxies:
        return ""
    rows = []
    for s in res.scenarios:
        if s == "idle-conns":
            continue
        mine = res.med(s, "rvoy", "cpu_us_per_req")
        peers = [res.med(s, p, "cpu_us_per_req") for p in PEERS]
        peers = [v for v in peers if v is not None]
        st, _ = res.status(s, "rvoy")
        if st == "unsupported":
            rows.append([f"CPU per request, {s}", "≤ best of nginx/HAProxy", "unsupported", "no"])
        elif mine is not None and peers:
            rows.append([f"CPU per request, {s}", f"≤ {min(peers):.1f} µs", f"{mine:.1f} µs",
                         "yes" if mine <= min(peers) else "no"])
    mine99 = res.med("h1-keepalive-small", "rvoy", "p99_ms")
    peers99 = [res.med("h1-keepalive-small", p, "p99_ms") for p in PEERS]
    peers99 = [v for v in peers99 if v is not None]
    if mine99 is not None and peers99:
        rows.append(["p99 at fixed load, h1-keepalive-small", f"≤ {min(peers99):.2f} ms",
                     f"{mine99:.2f} ms", "yes" if mine99 <= min(peers99) else "no"])
    rss = res.med("h1-keepalive-small", "rvoy", "rss_idle_kb")
    if rss:
        rows.append(["RSS idle", "≤ 8 MiB", f"{rss / 1024:.1f} MiB", "yes" if rss <= 8 * 1024 else "no"])
    per_conn = res.med("idle-conns", "rvoy", "per_conn_after_req_b")
    if per_conn is not None:
        rows.append(["memory per idle connection", "≤ 2 KiB", f"{per_conn / 1024:.2f} KiB",
                     "yes" if per_conn <= 2048 else "no"])
    su, su_e = res.med("h1-keepalive-small", "rvoy", "startup_ms"), res.med("h1-keepalive-small", "envoy", "startup_ms")
    if su is not None and su_e:
        rows.append(["start-up to first request", f"≤ 0.2 × Envoy = {0.2 * su_e:.0f} ms",
                     f"{su:.0f} ms ({su / su_e:.2f}×)", "yes" if su <= 0.2 * su_e else "no"])
    if not rows:
        return ""
    return "### Issue 6 targets (rvoy)\n\n" + table(["target", "goal", "rvoy", "met"], rows)


def details_section(res):
    out = ["### Details per scenario\n",
           "Medians (min–max over runs). `disturbed`: runs flagged NOISY / PROXY_CORE_SHARED / "
           "CPU_STEAL (kept: the least disturbed attempt of each run). Flags: PROXY_SATURATED "
           "(proxy core ≥ 90 % busy), LOADGEN_SATURATED (load core ≥ 90 %: the client side was the "
           "limit), ERRORS.\n"]
    for s in res.scenarios:
        if s == "idle-conns":
            continue
        rows = []
        for p in res.proxies:
            st, reason = res.status(s, p)
            if st is None:
                continue
            if st != "ok":
                rows.append([LABEL[p], st, (reason or "")[:160].replace("|", "/")] + [""] * 7)
                continue
            cell = res.cell(s, p)

            def span(field, digits=1, scale=1.0, thousands=False):
                vals = [r[field] * scale for r in cell if r.get(field) is not None]
                if not vals:
                    return "–"
                mid = fmt(median(vals), digits, thousands)
                if len(vals) < 2:
                    return mid
                return f"{mid} ({fmt(min(vals), digits, thousands)}–{fmt(max(vals), digits, thousands)})"

            disturbed = sum(1 for r in cell if suite.DISTURBED & set(r.get("flags", [])))
            flags = {}
            for r in cell:
                for f in r.get("flags", []):
                    if f not in suite.DISTURBED:
                        flags[f] = flags.get(f, 0) + 1
            rss_i, rss_l = res.med(s, p, "rss_idle_kb"), res.med(s, p, "rss_load_kb")
            if p == "direct":  # that would be the origin's
                rss_i = rss_l = None
            rows.append([
                LABEL[p], f"{len(cell)} ({disturbed} disturbed)", span("cpu_us_per_req"),
                span("rps", thousands=True), span("p50_ms", 2), span("p99_ms", 2),
                fmt(rss_i / 1024 if rss_i else None) + " → " + fmt(rss_l / 1024 if rss_l else None),
                fmt(res.med(s, p, "startup_ms"), 0), fmt(res.med(s, p, "foreign_cpu_pct")),
                " ".join(f"{k}×{v}" for k, v in sorted(flags.items())),
            ])
        out.append(f"\n#### {s}\n")
        out.append(table(["proxy", "runs", "CPU µs/req", "req/s", "p50 ms", "p99 ms",
                          "RSS idle → load MiB", "start-up ms", "foreign CPU %", "flags"], rows))
    return "\n".join(out)


def unsupported_section(res):
    rows = []
    for s in res.scenarios:
        for p in res.proxies:
            st, reason = res.status(s, p)
            if st in ("unsupported", "error"):
                rows.append([s, LABEL[p], st, (reason or "").replace("|", "/")[:300]])
    if not rows:
        return ""
    return ("### Not measured\n\n`unsupported`: rvoy rejects the scenario's config (`rvoy --mode "
            "validate`), reported until it accepts it.\n\n"
            + table(["scenario", "proxy", "status", "reason"], rows))


def render(records, clean_only=False):
    res = Results(records, clean_only)
    parts = [setup_section(res), summary_tables(res), baseline_section(res), memory_section(res),
             idle_section(res), large_section(res), accesslog_section(res), targets_section(res),
             unsupported_section(res), details_section(res)]
    return "\n\n".join(p for p in parts if p) + "\n"


DOC_INTRO = """# Performance

rvoy against Envoy 1.40, nginx and HAProxy, and against no proxy at all, measured by the
project's benchmark (`bench/`, see [bench/README.md](../bench/README.md)). Every figure is a
median over interleaved rounds of one suite; ratios are to Envoy measured in the same suite.
Compare figures within one suite, not across suites or machines.

To refresh the tables below (they are generated; the text around them is not):

```sh
cargo build --release -p rvoy-server
bench/run -r 3 --docs                # every scenario and proxy, ~25 min per round
bench/render bench/results/<suite>.jsonl --docs   # re-render from saved results
```

"""


def update_docs(records, clean_only=False, path=DOC):
    block = f"{BEGIN}\n\n{render(records, clean_only)}\n{END}\n"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1].lstrip("\n")
            text = head + block + ("\n" + tail if tail else "")
        else:
            text = text.rstrip("\n") + "\n\n" + block
    else:
        text = DOC_INTRO + block
    with open(path, "w") as f:
        f.write(text)
