"""The model server against hostile and broken clients, over real sockets on 127.0.0.1.

Every malformed request gets a 4xx with a one-line reason (never a 5xx), stalled
clients are dropped on their deadline without slowing anyone else, the bound on
admitted requests answers 503 and recovers, and the Prometheus endpoint counts it all.
Every wait ends on progress or on failure (tests/waits.py).
"""
import json
import socket
import statistics
import time

import pytest

from tests.model_server.server_helpers import (connect, exchange, metrics, post, predict_body,
                                               read_response, running, save_tiny_model)
from tests.waits import scaled, wait_for

PREDICT = "/v1/models/ranking:predict"
MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("serving") / "ranking"))


def _head(method_line: str, *headers: str) -> bytes:
    return ("\r\n".join((method_line, "Host: t") + headers) + "\r\n\r\n").encode()


MALFORMED = [
    ("Content-Length not a number", _head(f"POST {PREDICT} HTTP/1.1", "Content-Length: abc"), 400,
     "Content-Length must be a non-negative integer"),
    ("negative Content-Length", _head(f"POST {PREDICT} HTTP/1.1", "Content-Length: -5"), 400,
     "Content-Length must be a non-negative integer"),
    ("Content-Length in exponent form", _head(f"POST {PREDICT} HTTP/1.1", "Content-Length: 1e3"), 400,
     "Content-Length must be"),
    ("two different Content-Lengths", _head(f"POST {PREDICT} HTTP/1.1", "Content-Length: 3", "Content-Length: 4"),
     400, "conflicting Content-Length"),
    ("no Content-Length", _head(f"POST {PREDICT} HTTP/1.1"), 411, "Content-Length header required"),
    ("chunked upload", _head(f"POST {PREDICT} HTTP/1.1", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n",
     411, "Transfer-Encoding"),
    ("body over the limit", _head(f"POST {PREDICT} HTTP/1.1", f"Content-Length: {MAX_BODY + 1}"), 413,
     "exceeds the limit"),
    ("100,000 nested brackets", post(PREDICT, b"[" * 100_000), 400, "nests JSON 100000 levels deep"),
    ("deep JSON inside a valid shape", post(PREDICT, b'{"instances": [' + b"[" * 40 + b"]" * 40 + b"]}"), 400,
     "the limit is 32"),
    ("not JSON", post(PREDICT, b"{oops"), 400, "not valid JSON"),
    ("body not UTF-8", post(PREDICT, b'{"instances": ["\xff\xfe"]}'), 400, "not valid JSON"),
    ("raw non-ASCII bytes in the path", b"GET /v1/models/ranking\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n", 400,
     "non-ASCII bytes"),
    ("percent-encoded path not UTF-8", _head("GET /v1/models/%FF%FE HTTP/1.1"), 400, "not valid UTF-8"),
    ("PUT", _head("PUT /v1/models/ranking HTTP/1.1", "Content-Length: 0"), 405, "method PUT is not allowed"),
    ("DELETE", _head("DELETE /v1/models/ranking HTTP/1.1"), 405, "method DELETE is not allowed"),
    ("HEAD", _head("HEAD /v1/models/ranking HTTP/1.1"), 405, "method HEAD is not allowed"),
    ("OPTIONS", _head("OPTIONS * HTTP/1.1"), 405, "method OPTIONS is not allowed"),
    ("garbage request line", b"HELLO\r\n\r\n", 400, "malformed request line"),
    ("binary method", b"\x16\x03\x01 / HTTP/1.1\r\n\r\n", 400, "malformed method"),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "unsupported protocol"),
    ("header without a colon", _head("GET /v1/models/ranking HTTP/1.1", "NoColonHere"), 400, "malformed header"),
    ("header block over the limit", _head("GET /v1/models/ranking HTTP/1.1", "X-Big: " + "a" * 20_000), 431,
     "exceed 16,384 bytes"),
    ("too many headers", _head("GET /v1/models/ranking HTTP/1.1", *[f"X-H{i}: v" for i in range(150)]), 431,
     "the limit is 100"),
    ("unknown path", _head("GET /admin HTTP/1.1"), 404, "unknown path"),
    ("predict with GET", _head(f"GET {PREDICT} HTTP/1.1"), 405, "predict needs POST"),
    ("version number too long for the path", _head("GET /v1/models/ranking/versions/" + "9" * 40 + " HTTP/1.1"),
     404, "unknown path"),
]


def test_every_malformed_request_gets_a_4xx_with_a_one_line_reason(model_dir):
    with running(model_dir, max_body_bytes=MAX_BODY, header_timeout_seconds=30) as srv:
        for name, raw, status, reason in MALFORMED:
            got, headers, body = exchange(srv.server_address, raw)
            assert got == status, (name, got, body[:200])
            error = json.loads(body)["error"]
            assert reason in error and "\n" not in error and "Traceback" not in error, (name, error)
            if status == 405:
                assert headers["allow"] in ("GET, POST", "POST"), name
        # The server is unharmed: a good request still works, and nothing was ever a 5xx.
        status, _, body = exchange(srv.server_address, post(PREDICT, predict_body(3), close=True))
        assert status == 200 and len(json.loads(body)["predictions"]) == 3
        counts = metrics(srv.server_address)
        assert not [k for k in counts if k.startswith("model_server_requests_total") and 'code="5' in k]
        assert sum(v for k, v in counts.items() if k.startswith("model_server_requests_total")) >= len(MALFORMED)


def test_a_body_that_stops_arriving_gets_a_408_on_the_body_deadline(model_dir):
    with running(model_dir, body_timeout_seconds=1) as srv:
        with connect(srv.server_address) as s:
            s.sendall(post(PREDICT, predict_body(1))[:-5])  # the head and all but 5 bytes of the body
            t0 = time.monotonic()
            status, _, body = read_response(s)
            assert status == 408 and "not received within 1 s" in json.loads(body)["error"]
            assert time.monotonic() - t0 >= 0.9
            assert s.recv(1) == b""  # and the connection is closed


def _percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _timed_requests(address, n):
    """n predict requests on one keep-alive connection; their latencies in seconds."""
    out = []
    with connect(address) as s:
        for i in range(n):
            t0 = time.perf_counter()
            s.sendall(post(PREDICT, predict_body(1)))
            status, _, _ = read_response(s)
            out.append(time.perf_counter() - t0)
            assert status == 200, i
    return out


def test_500_stalled_connections_are_closed_on_the_header_deadline_and_do_not_slow_a_normal_client(model_dir):
    timeout = scaled(10)  # long enough that the normal client's 200 requests run while all 500 stall
    with running(model_dir, header_timeout_seconds=timeout, max_connections=1024) as srv:
        address = srv.server_address
        _timed_requests(address, 20)  # warm up the model's first calls
        alone = _timed_requests(address, 200)
        stalled, opened_at = [], []
        for i in range(500):
            s = connect(address)
            opened_at.append(time.monotonic())
            # Half a request head; some send nothing at all after connecting.
            if i % 5:
                s.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: t\r\nContent-Le".encode())
            stalled.append(s)
        beside = _timed_requests(address, 200)
        open_now = metrics(address)['model_server_open_connections{model="ranking"}']
        assert time.monotonic() - opened_at[0] >= timeout or open_now >= 500

        closed, results = {}, {}

        def poll():
            for i, s in enumerate(stalled):
                if i in closed:
                    continue
                s.settimeout(0.01)
                try:
                    results[i] = read_response(s)[0]
                    closed[i] = time.monotonic()
                except socket.timeout:
                    pass
                except ConnectionError:
                    results[i] = None
                    closed[i] = time.monotonic()
            return len(closed) == len(stalled)

        wait_for("the stalled connections to be closed", poll, stall_s=60, interval_s=0.2,
                 progress=lambda: len(closed))
        for s in stalled:
            s.close()
        assert set(results.values()) == {408}            # each told why, then closed
        early = [i for i in closed if closed[i] - opened_at[i] < timeout - 0.05]
        assert not early, f"{len(early)} connections closed before the {timeout:g} s deadline"
        counts = metrics(address)
        assert counts['model_server_connections_closed_total{model="ranking",reason="header_timeout"}'] == 500
    p99_alone, p99_beside = _percentile(alone, 0.99), _percentile(beside, 0.99)
    print(f"p50/p99 alone {statistics.median(alone) * 1e3:.1f}/{p99_alone * 1e3:.1f} ms, beside 500 stalled "
          f"connections {statistics.median(beside) * 1e3:.1f}/{p99_beside * 1e3:.1f} ms")
    # A thread-per-connection server without deadlines blocks here for good; a bounded one stays
    # at its own pace. 50 ms is the target (benchmarks/server_latency.py measures it on a quiet
    # machine); beside the suite's other worker, the same run's unloaded p99 sets the bar.
    assert p99_beside < max(0.050, 3 * p99_alone + 0.005)


def test_over_the_in_flight_bound_requests_get_503_with_retry_after_and_the_server_recovers(model_dir):
    bound = 4
    with running(model_dir, max_in_flight=bound, body_timeout_seconds=120) as srv:
        address = srv.server_address
        body = predict_body(2)
        held = []
        for _ in range(bound):  # admitted requests whose bodies have not arrived yet hold their slot
            s = connect(address)
            s.sendall(post(PREDICT, body)[:-3])
            held.append(s)
        wait_for("the held requests to be admitted",
                 lambda: metrics(address)['model_server_in_flight_requests{model="ranking"}'] == bound,
                 stall_s=30, interval_s=0.05)
        status, headers, reply = exchange(address, post(PREDICT, body))
        assert status == 503 and headers["retry-after"] == "1" and "server busy" in json.loads(reply)["error"]
        status, _, _ = exchange(address, _head("GET /v1/models/ranking HTTP/1.1", "Connection: close"))
        assert status == 200  # status reads are not predict requests: they are not turned away ...
        assert metrics(address)['model_server_rejected_total{model="ranking",reason="in_flight"}'] >= 1
        for s in held:  # ... and the held ones complete normally
            s.sendall(post(PREDICT, body)[-3:])
            status, _, reply = read_response(s)
            assert status == 200 and len(json.loads(reply)["predictions"]) == 2
            s.close()
        status, _, _ = exchange(address, post(PREDICT, body, close=True))
        assert status == 200  # recovered


def test_over_the_connection_bound_a_new_connection_gets_503_and_idle_ones_close_after_the_idle_time(model_dir):
    with running(model_dir, max_connections=5, idle_timeout_seconds=1) as srv:
        address = srv.server_address
        kept = [connect(address) for _ in range(5)]
        for s in kept:  # one request each, then idle on keep-alive
            s.sendall(post(PREDICT, predict_body(1)))
            assert read_response(s)[0] == 200
        status, headers, _ = exchange(address, post(PREDICT, predict_body(1)))
        assert status == 503 and headers["retry-after"] == "1"
        for s in kept:
            s.settimeout(60)
            assert s.recv(1) == b""  # closed by the server once idle for 1 s
            s.close()
        counts = metrics(address)
        assert counts['model_server_connections_closed_total{model="ranking",reason="idle"}'] == 5
        assert counts['model_server_rejected_total{model="ranking",reason="connections"}'] == 1


def test_prometheus_endpoint_counts_requests_by_status_latency_and_the_served_version(model_dir):
    with running(model_dir) as srv:
        address = srv.server_address
        for _ in range(3):
            assert exchange(address, post(PREDICT, predict_body(1), close=True))[0] == 200
        assert exchange(address, post(PREDICT, b"{oops", close=True))[0] == 400
        status, headers, body = exchange(address, _head("GET /monitoring/prometheus/metrics HTTP/1.1",
                                                        "Connection: close"))
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        text = body.decode()
        assert "# TYPE model_server_request_duration_seconds histogram" in text
        counts = metrics(address)
        assert counts['model_server_requests_total{model="ranking",code="200"}'] >= 4  # 3 + the metrics read
        assert counts['model_server_requests_total{model="ranking",code="400"}'] == 1
        assert counts['model_server_request_duration_seconds_bucket{model="ranking",le="+Inf"}'] == \
            counts['model_server_request_duration_seconds_count{model="ranking"}'] >= 5
        assert counts['model_server_model_version{model="ranking"}'] == 20261120
        assert counts['model_server_in_flight_requests{model="ranking"}'] == 0
