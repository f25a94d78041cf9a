"""The idle-conns scenario's client: holds N keep-alive connections to the proxy, first with
nothing sent, then after one GET each (sent one connection at a time, so the proxy needs a
single upstream connection), so the harness can read the proxy's memory in both states."""

import re
import selectors
import socket
import time

from common import HOST


class IdleConnections:
    def __init__(self, port, count, path, host=None):
        self.port, self.count, self.path = port, count, path
        self.host = host or f"{HOST}:{port}"
        self.socks = []
        self.connect_errors = 0

    def connect(self, timeout=30.0):
        """Opens the connections (non-blocking, all at once); waits until each is up."""
        sel = selectors.DefaultSelector()
        for _ in range(self.count):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((HOST, self.port))
            sel.register(s, selectors.EVENT_WRITE)
        deadline = time.monotonic() + timeout
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(0.1):
                s = key.fileobj
                sel.unregister(s)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self.connect_errors += 1
                    s.close()
                else:
                    self.socks.append(s)
        for key in list(sel.get_map().values()):
            self.connect_errors += 1
            key.fileobj.close()
        return len(self.socks)

    def request_each(self, timeout=5.0):
        """One keep-alive GET on every connection, one after the other; (ok, failed)."""
        request = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
                   "User-Agent: bench-idle\r\n\r\n").encode()
        ok = failed = 0
        for s in self.socks:
            s.settimeout(timeout)
            try:
                s.sendall(request)
                status = self._read_response(s, time.monotonic() + timeout)
                ok += 200 <= status < 300
                failed += not 200 <= status < 300
            except (OSError, ValueError, IndexError):
                failed += 1
        return ok, failed

    @staticmethod
    def _read_response(s, deadline):
        buf = b""
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline:
                raise TimeoutError("response head")
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the response head")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        need = int(length.group(1)) if length else 0
        while len(body) < need:
            if time.monotonic() > deadline:
                raise TimeoutError("response body")
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed in the body")
            body += chunk
        return int(head.split(b" ", 2)[1])

    def still_open(self):
        """Connections the proxy has not closed (a short idle timeout would show here)."""
        alive = 0
        for s in self.socks:
            s.setblocking(False)
            try:
                alive += s.recv(1) != b""
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []
