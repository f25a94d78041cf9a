import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _h(self):
        n = int(self.headers.get('content-length') or 0)
        if n: self.rfile.read(n)
        path = self.path
        code = 200
        size = 5
        parts = path.strip('/').split('/')
        if len(parts) >= 2 and parts[0] == 'code': code = int(parts[1])
        if len(parts) >= 2 and parts[0] == 'size': size = int(parts[1])
        body = b'x' * size
        self.send_response(code)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = _h
    do_POST = _h
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
