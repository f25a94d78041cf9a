"""The benchmark's scenarios: what load, on which config shape, through which protocol."""

from dataclasses import dataclass
from typing import Optional

import largecfg

SMALL = 100  # bytes of the origin's /small body
BODY = {"/small": SMALL, "/64k": 64 * 1024, "/1m": 1024 * 1024}


@dataclass(frozen=True)
class Scenario:
    name: str
    # load: saturation + fixed-rate phases; idle: idle keep-alive connections
    kind: str
    # which config each proxy runs: proxy | h2c | tls | tls-h2 | tls-full | accesslog | large
    shape: str
    # how clients talk to the proxy: http | h2c | https | h2 (HTTP/2 over TLS)
    proto: str
    path: str
    body: int
    # client connections (and streams per connection for h2c)
    conns: int
    streams: int = 1
    # a new TCP connection per request (Connection: close)
    newconn: bool = False
    # total requests per second of the fixed moderate load the latency is measured at
    rate: int = 2000
    host: Optional[str] = None
    # the no-proxy baseline makes sense for it
    direct: bool = True
    about: str = ""


LARGE = largecfg.Shape()
_LARGE_HOST, _LARGE_PATH = LARGE.target()

SCENARIOS = [
    Scenario("h1-keepalive-small", "load", "proxy", "http", "/small", SMALL, conns=50,
             about="HTTP/1.1 keep-alive, 100-byte responses"),
    Scenario("h1-keepalive-64k", "load", "proxy", "http", "/64k", BODY["/64k"], conns=50, rate=1000,
             about="HTTP/1.1 keep-alive, 64 KiB responses"),
    Scenario("h1-keepalive-1m", "load", "proxy", "http", "/1m", BODY["/1m"], conns=10, rate=100,
             about="HTTP/1.1 keep-alive, 1 MiB responses"),
    Scenario("h1-newconn", "load", "proxy", "http", "/small", SMALL, conns=50, newconn=True,
             rate=1000, about="a new TCP connection per request (Connection: close)"),
    Scenario("h2c", "load", "h2c", "h2c", "/small", SMALL, conns=10, streams=10,
             about="HTTP/2 prior knowledge, 10 connections x 10 streams, HTTP/1.1 upstream"),
    Scenario("tls-keepalive", "load", "tls", "https", "/small", SMALL, conns=50,
             about="TLS 1.3 termination, HTTP/1.1 keep-alive"),
    Scenario("tls-h2", "load", "tls-h2", "h2", "/small", SMALL, conns=10, streams=10,
             direct=False,
             about="HTTP/2 over TLS 1.3 (ALPN h2), 10 connections x 10 streams, HTTP/1.1 upstream"),
    Scenario("tls-newconn", "load", "tls-full", "https", "/small", SMALL, conns=50, newconn=True,
             rate=200, direct=False,
             about="a new TLS 1.3 connection per request, resumption disabled on the proxy: a "
                   "full handshake each (ECDSA P-256), HTTP/1.1, Connection: close"),
    Scenario("h1-accesslog", "load", "accesslog", "http", "/small", SMALL, conns=50, direct=False,
             about="h1-keepalive-small with a file access log"),
    Scenario("idle-conns", "idle", "proxy", "http", "/small", SMALL, conns=2000, direct=False,
             about="2,000 idle keep-alive connections, one request each"),
    Scenario("large-config", "load", "large", "http", _LARGE_PATH, SMALL, conns=50,
             host=_LARGE_HOST, direct=False,
             about=f"{LARGE.routes:,} routes in {LARGE.vhosts} virtual hosts, {LARGE.clusters:,} "
                   "clusters; requests hit the last route"),
]

BY_NAME = {s.name: s for s in SCENARIOS}
