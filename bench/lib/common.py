"""Constants and small helpers shared by the benchmark's modules."""

import os
import sys

LIB_DIR = os.path.dirname(os.path.abspath(__file__))
BENCH_DIR = os.path.dirname(LIB_DIR)
REPO_DIR = os.path.dirname(BENCH_DIR)
CONFIG_DIR = os.path.join(BENCH_DIR, "configs")
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
WORK_DIR = os.path.join(BENCH_DIR, ".run")
HOST = "127.0.0.1"


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
