"""gRPC peer for rvoy's `tests/grpc.rs`: a grpcio server or client, no protoc codegen.

Messages are raw bytes (generic handlers, no serializers), UTF-8 text in practice.

    peer.py server            serve `test.Test` on 127.0.0.1, print "READY <port>"
    peer.py client TARGET     run every call through TARGET (host:port), one JSON line each

Every call has a deadline; the server exits when its stdin closes (the test's end).
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "test.Test"
STREAM_N = 5
# grpcio honours http_proxy & co; a test talks to 127.0.0.1 only.
OPTIONS = [("grpc.enable_http_proxy", 0)]


def unary(request, context):
    return b"echo:" + request


def big(request, context):
    return ("len:%d" % len(request)).encode()


def server_stream(request, context):
    for i in range(STREAM_N):
        yield b"%s-%d" % (request, i)


def client_stream(request_iterator, context):
    return b"got:" + b",".join(request_iterator)


def bidi(request_iterator, context):
    for r in request_iterator:
        yield b"bidi:" + r


def slow(request, context):
    # Longer than the client's deadline; bounded.
    time.sleep(2)
    return b"late"


def fail(request, context):
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")


def serve():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Big": grpc.unary_unary_rpc_method_handler(big),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("READY %d" % port, flush=True)
    # Until the test closes stdin (or kills us).
    sys.stdin.read()
    server.stop(0)


def record(name, call):
    """Runs `call` (returns a list of response messages) and prints what the client saw."""
    out = {"call": name}
    try:
        msgs = call()
        out.update(code="OK", details="", messages=[m.decode() for m in msgs])
    except grpc.RpcError as e:
        out.update(code=e.code().name, details=e.details() or "", messages=[])
    print(json.dumps(out, sort_keys=True), flush=True)


def client(target):
    ch = grpc.insecure_channel(target, options=OPTIONS)
    grpc.channel_ready_future(ch).result(timeout=10)

    def path(service, method):
        return "/%s/%s" % (service, method)

    uu = lambda m, s=SERVICE: ch.unary_unary(path(s, m))
    T = 5
    record("unary", lambda: [uu("Unary")(b"hello", timeout=T)])
    record("big", lambda: [uu("Big")(b"x" * (1 << 20), timeout=T)])
    record(
        "server_stream",
        lambda: list(ch.unary_stream(path(SERVICE, "ServerStream"))(b"msg", timeout=T)),
    )
    record(
        "client_stream",
        lambda: [ch.stream_unary(path(SERVICE, "ClientStream"))(iter([b"a", b"b", b"c"]), timeout=T)],
    )
    record(
        "bidi",
        lambda: list(ch.stream_stream(path(SERVICE, "Bidi"))(iter([b"x", b"y", b"z"]), timeout=T)),
    )
    record("deadline", lambda: [uu("Slow")(b"", timeout=0.5)])
    record("error", lambda: [uu("Fail")(b"", timeout=T)])
    # Routes whose cluster has no endpoint / a refused endpoint: the proxy's local reply.
    record("no_upstream", lambda: [uu("Call", "nohost.Svc")(b"", timeout=T)])
    record("refused_upstream", lambda: [uu("Call", "refused.Svc")(b"", timeout=T)])
    ch.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        serve()
    elif sys.argv[1:2] == ["client"] and len(sys.argv) == 3:
        client(sys.argv[2])
    else:
        sys.exit(__doc__)
