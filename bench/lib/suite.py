"""The suite: every scenario x every proxy, N rounds, interleaved (the proxies' order rotates
each round, so drift and neighbours' load spread over all of them), disturbed runs retried."""

import json
import os
import time

from common import log
import procfs
import runner

# Flags that mean another process disturbed the measurement.
DISTURBED = {"NOISY", "PROXY_CORE_SHARED", "CPU_STEAL"}


def wait_quiet(busy_pct, limit):
    """Waits (at most `limit` s) until every core was under `busy_pct` % busy for a second;
    returns (seconds waited, busiest core's % in the last second)."""
    t0 = time.monotonic()
    while True:
        a = procfs.cores()
        time.sleep(1.0)
        b = procfs.cores()
        worst = max(procfs.core_pct(a, b, c) or 0 for c in a)
        if worst < busy_pct or time.monotonic() - t0 >= limit:
            return round(time.monotonic() - t0), worst


def disturbance(res):
    """How much other processes disturbed a run (lower is better)."""
    return (res.get("foreign_cpu_pct") or 0) + (20 if "PROXY_CORE_SHARED" in res.get("flags", []) else 0)


def applicable(proxy, sc):
    return sc.direct if proxy == "direct" else True


def run_suite(settings, proxies, scenarios, out_path, meta, rounds, retries, quiet_pct, quiet_wait,
              work):
    suite_id = os.path.basename(out_path).rsplit(".", 1)[0]
    meta = dict(meta, suite=suite_id, rounds=rounds, settings=vars(settings),
                scenarios=[s.name for s in scenarios], proxies=proxies)
    shared = runner.prepare_shared(work)
    with open(out_path, "a") as out:
        out.write(json.dumps(meta) + "\n")
        t0 = time.monotonic()
        for rnd in range(1, rounds + 1):
            for sc in scenarios:
                order = [p for p in proxies if applicable(p, sc)]
                shift = (rnd - 1) % len(order) if order else 0
                for proxy in order[shift:] + order[:shift]:
                    attempts = []
                    for attempt in range(retries + 1):
                        waited, busy = wait_quiet(quiet_pct, quiet_wait)
                        log(f"== round {rnd}/{rounds} {sc.name} {proxy} attempt {attempt + 1} "
                            f"(t+{time.monotonic() - t0:.0f}s, waited {waited}s for quiet, "
                            f"busiest core {busy}%)")
                        rundir = os.path.join(work, suite_id, f"{rnd}-{sc.name}-{proxy}-{attempt}")
                        res = runner.run(settings, proxy, sc, shared, rundir)
                        res.update(suite=suite_id, round=rnd, attempt=attempt + 1,
                                   quiet_wait_s=waited)
                        attempts.append(res)
                        if res["status"] != "ok" or not DISTURBED & set(res.get("flags", [])):
                            break
                        if attempt < retries:
                            log(f"   disturbed ({', '.join(res['flags'])}; foreign "
                                f"{res.get('foreign_cpu_pct')}% {res.get('foreign_top')}): retry")
                    best = min(attempts, key=disturbance)
                    for res in attempts:
                        res["kept"] = res is best
                        out.write(json.dumps(res, separators=(",", ":")) + "\n")
                    out.flush()
    log(f"suite done in {time.monotonic() - t0:.0f}s: {out_path}")
