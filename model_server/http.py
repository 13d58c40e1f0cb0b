"""HTTP front of the model server: TF Serving's REST paths on an asyncio server.

Paths: ``GET /v1/models/NAME[/versions/N]`` (status),
``POST /v1/models/NAME[/versions/N]:predict`` and
``GET /monitoring/prometheus/metrics``. Errors are JSON ``{"error": ...}``
with a 4xx for anything the client sent wrong (``protocol.py`` lists them),
404 for an unknown model or version, and 503 with ``Retry-After`` when nothing
is loaded yet or the server is at its bound; an unexpected failure is a 500
with a one-line message, and the stack trace goes to the server log only.

Why asyncio with a bounded thread pool rather than a thread per connection:
slow or stalled clients then cost a coroutine each and are dropped on a
deadline, while the model runs on at most ``workers`` threads and at most
``max_in_flight`` requests are admitted; the next one gets a 503 at once
instead of queueing without limit. SIGTERM stops accepting, lets every
admitted request finish, then exits (``serve_forever(handle_signals=True)``).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import signal
import socket
import threading
import time
from typing import Any, Dict, Optional, Set, Tuple

import numpy as np
import tensorflow as tf

from model_server import protocol
from model_server.metrics import Metrics
from model_server.predict_request import BadRequest, parse_body, raw_columns
from model_server.registry import LoadedModel, Registry

log = logging.getLogger("model_server")
PATH = re.compile(r"^/v1/models/(?P<name>[A-Za-z0-9_.-]+)(?:/versions/(?P<version>[0-9]{1,18}))?(?P<verb>:predict)?$")
METRICS_PATH = "/monitoring/prometheus/metrics"


class ModelServer:
    """Binds at construction (so ``url`` is known with ``port=0``); ``serve_forever`` runs the loop."""

    def __init__(self, address: Tuple[str, int], model_name: str, registry: Registry,
                 max_body_bytes: int = 4 << 20, max_instances: int = 1000, max_json_depth: int = 32,
                 header_timeout_seconds: float = 10.0, body_timeout_seconds: float = 10.0,
                 idle_timeout_seconds: float = 60.0, max_connections: int = 1024, workers: int = 4,
                 max_in_flight: int = 64, drain_seconds: float = 30.0, max_header_bytes: int = 16384):
        self.model_name = model_name
        self.registry = registry
        self.max_instances = int(max_instances)
        self.max_json_depth = int(max_json_depth)
        self.limits = protocol.Limits(float(header_timeout_seconds), float(body_timeout_seconds),
                                      float(idle_timeout_seconds), int(max_header_bytes), 100, int(max_body_bytes))
        self.max_connections = int(max_connections)
        self.max_in_flight = int(max_in_flight)
        self.drain_seconds = float(drain_seconds)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=int(workers), thread_name_prefix="predict")
        self._sock = socket.create_server(address, backlog=1024)
        self.server_address = self._sock.getsockname()
        self.metrics = Metrics(model_name, lambda: registry.current.version if registry.current else None)
        self.admitted = 0        # requests taken on since start (each is answered, even during a stop)
        self.answered = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._stopped = threading.Event()
        self._idle: Set[asyncio.StreamWriter] = set()    # connections between requests
        self._tasks: Set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    # -- lifecycle -------------------------------------------------------------------------
    def serve_forever(self, handle_signals: bool = False) -> None:
        asyncio.run(self._main(handle_signals))

    def shutdown(self) -> None:
        """Graceful stop from another thread; returns once the loop has drained and exited."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not self._stopped.is_set():
            loop.call_soon_threadsafe(stop.set)
            self._stopped.wait()

    def server_close(self) -> None:
        self._sock.close()
        self._pool.shutdown(wait=False)

    async def _main(self, handle_signals: bool) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._on_signal, sig)
        server = await asyncio.start_server(self._connection, sock=self._sock, limit=self.limits.max_header_bytes)
        try:
            await self._stop.wait()
            server.close()  # stop accepting; the listening socket is closed
            in_flight = self.metrics.in_flight
            for writer in list(self._idle):  # between requests: nothing admitted to finish
                writer.close()
            deadline = self._loop.time() + self.drain_seconds
            while self.metrics.in_flight and self._loop.time() < deadline:
                await asyncio.sleep(0.01)
            if self.metrics.in_flight:
                log.error("stopped with %d request(s) still running after %.0f s", self.metrics.in_flight,
                          self.drain_seconds)
            for task in list(self._tasks):
                task.cancel()
            log.info("model server stopped: admitted=%d answered=%d in_flight_at_stop=%d",
                     self.admitted, self.answered, in_flight)
        finally:
            self._stopped.set()

    def _on_signal(self, sig: int) -> None:
        log.info("%s: no new connections; finishing %d admitted request(s)", signal.Signals(sig).name,
                 self.metrics.in_flight)
        self._stop.set()

    # -- connections -----------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        m = self.metrics
        m.open_connections += 1
        try:
            if m.open_connections > self.max_connections:
                m.rejected["connections"] += 1
                await self._write(writer, 503, {"error": f"over {self.max_connections} open connections; retry"},
                                  False, {"Retry-After": "1"})
                return
            first = True
            while not self._stop.is_set():
                if not first:
                    self._idle.add(writer)
                try:
                    keep = await self._one_request(reader, writer, first)
                finally:
                    self._idle.discard(writer)
                first = False
                if not keep:
                    return
        except protocol.ClientGone as gone:
            if str(gone) == "idle":
                m.closed["idle"] += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            m.open_connections -= 1
            self._tasks.discard(task)
            writer.close()

    async def _one_request(self, reader, writer, first: bool) -> bool:
        """Reads, answers and accounts one request; returns whether the connection stays open."""
        try:
            head = await protocol.read_head(reader, self.limits, first)
        except protocol.HttpError as e:
            if e.status == 408:
                self.metrics.closed["header_timeout"] += 1
            await self._error(reader, writer, e, time.perf_counter())
            return False
        self._idle.discard(writer)
        t0 = time.perf_counter()
        try:
            request = protocol.parse_head(head, self.limits)
        except protocol.HttpError as e:
            await self._error(reader, writer, e, t0)
            return False
        keep = request.keep_alive and not self._stop.is_set()
        if request.path == METRICS_PATH and request.method == "GET":
            await self._write(writer, 200, None, keep, text=self.metrics.text())
            self.metrics.observe(200, time.perf_counter() - t0)
            return keep
        predict = request.method == "POST"
        if predict and self.metrics.in_flight >= self.max_in_flight:
            self.metrics.rejected["in_flight"] += 1
            await self._error(reader, writer, protocol.HttpError(
                503, f"server busy: {self.max_in_flight} requests in flight; retry shortly",
                headers={"Retry-After": "1"}), t0)
            return False
        self.admitted += 1
        self.metrics.in_flight += 1
        try:
            try:
                if request.content_length and request.headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits 1 s for it on bodies > 1 KiB
                body = await protocol.read_body(reader, request, self.limits)
            except protocol.HttpError as e:
                self.metrics.closed["body_timeout"] += 1
                await self._error(reader, writer, e, t0)
                return False
            status, doc, headers = await self._answer(request, body)
            keep = keep and not self._stop.is_set()
            await self._write(writer, status, doc, keep, headers)
            self.answered += 1
            self.metrics.observe(status, time.perf_counter() - t0)
            return keep
        finally:
            self.metrics.in_flight -= 1

    async def _answer(self, request: protocol.Request, body: bytes) -> Tuple[int, Any, Dict[str, str]]:
        try:
            return await self._loop.run_in_executor(self._pool, self._handle, request, body)
        except Exception as e:  # noqa: BLE001 - never a stack trace to the client
            log.exception("%s %s failed", request.method, request.path)
            return 500, {"error": f"internal error: {type(e).__name__}"}, {}

    async def _error(self, reader, writer, e: protocol.HttpError, t0: float) -> None:
        log.debug("refused: %d %s", e.status, e.reason)
        try:
            await self._write(writer, e.status, {"error": e.reason}, not e.close, e.headers)
        except (ConnectionError, asyncio.TimeoutError):
            return
        self.metrics.observe(e.status, time.perf_counter() - t0)
        if e.close:
            await self._linger(reader, writer)

    async def _linger(self, reader, writer) -> None:
        """Closing a socket with unread input sends a TCP reset, which can destroy the error
        response before the client reads it: half-close, then read and drop what the client is
        still sending until it closes (bounded by the body limit and the body timeout)."""
        try:
            if writer.can_write_eof():
                writer.write_eof()
            left = self.limits.max_body_bytes + self.limits.max_header_bytes

            async def drop():
                nonlocal left
                while left > 0:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return
                    left -= len(chunk)

            with protocol.deadline(reader, self.limits.body_timeout):
                await drop()
        except Exception:  # noqa: BLE001 - expired, reset: the connection is being closed anyway
            pass

    async def _write(self, writer, status: int, doc: Any, keep: bool, headers: Optional[Dict[str, str]] = None,
                     text: Optional[str] = None) -> None:
        if text is not None:
            payload = protocol.response(status, text.encode(), keep, headers).replace(
                b"Content-Type: application/json", b"Content-Type: text/plain; version=0.0.4", 1)
        else:
            payload = protocol.response(status, json.dumps(doc).encode(), keep, headers)
        writer.write(payload)
        if writer.transport.get_write_buffer_size():
            # A client that stops reading must not hold the connection: the body timeout bounds the write.
            await asyncio.wait_for(writer.drain(), self.limits.body_timeout)

    # -- requests (on the worker pool) -----------------------------------------------------
    def _handle(self, request: protocol.Request, body: bytes) -> Tuple[int, Any, Dict[str, str]]:
        try:
            match = self._route(request.path)
            if request.method == "GET":
                if match["verb"]:
                    raise BadRequest("predict needs POST", 405)
                return 200, self._status(match["version"]), {}
            if not match["verb"]:
                raise BadRequest("POST needs the :predict verb, e.g. /v1/models/NAME:predict", 404)
            kind, payload = parse_body(body, self.max_instances, self.max_json_depth)
            loaded = self._model(match["version"])
            return 200, {"predictions": predict(loaded, kind, payload)}, {"X-Model-Version": str(loaded.version)}
        except BadRequest as e:
            headers = {"Allow": "POST"} if e.status == 405 else {"Retry-After": "5"} if e.status == 503 else {}
            return e.status, {"error": str(e)}, headers
        except tf.errors.InvalidArgumentError as e:
            try:
                detail = tf_error_line(e.message)
            except UnicodeDecodeError:  # TF quotes the offending bytes, which may not be UTF-8
                detail = "invalid input"
            return 400, {"error": "the model rejected the input: " + detail}, {}

    def _route(self, path: str):
        match = PATH.match(path)
        if not match:
            raise BadRequest(f"unknown path {path[:200]}; use /v1/models/{self.model_name}[:predict] "
                             f"or {METRICS_PATH}", 404)
        if match["name"] != self.model_name:
            raise BadRequest(f"model {match['name']!r} not found; this server serves {self.model_name!r}", 404)
        return match

    def _status(self, version: Optional[str]) -> Dict[str, Any]:
        registry = self.registry
        current = registry.current
        wanted = int(version) if version else None
        statuses = []
        for v, loaded in sorted(registry.loaded_versions().items(), reverse=True):
            if wanted in (None, v):
                statuses.append({"version": str(v), "state": "AVAILABLE",
                                 "status": {"error_code": "OK", "error_message": ""},
                                 "serving": bool(current and current.version == v)})
        for v, err in sorted(registry.errors.items()):
            if wanted in (None, v):
                statuses.append({"version": str(v), "state": "END",
                                 "status": {"error_code": "UNKNOWN", "error_message": err}})
        if wanted is not None and not statuses:
            raise BadRequest(f"version {version} is not loaded", 404)
        return {"model_version_status": statuses}

    def _model(self, version: Optional[str]) -> LoadedModel:
        registry = self.registry
        if version is not None:
            loaded = registry.get(int(version))
            if loaded is None:
                raise BadRequest(f"version {version} of {self.model_name!r} not found; "
                                 f"available: {sorted(registry.loaded_versions()) or 'none'} loaded", 404)
            return loaded
        loaded = registry.current
        if loaded is None:
            raise BadRequest(f"no version of {self.model_name!r} is loaded yet "
                             f"(nothing pushed to {registry.model_dir}?)", 503)
        return loaded


def tf_error_line(message: str) -> str:
    """The line of a TF error a client can act on ("Could not parse example input, ..."), without
    graph node names or stack-trace markers."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "\t", " [[", "[[")
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.startswith(noise)]
    return lines[0] if lines else "invalid input"


def predict(loaded: LoadedModel, kind: str, payload) -> list:
    if kind == "examples":
        out = loaded.serving_default(examples=tf.constant(payload, tf.string))
    else:
        if loaded.serving_raw is None:
            raise BadRequest(f"version {loaded.version} has no raw-feature signature; send b64 tf.Examples")
        out = loaded.serving_raw(**raw_columns(payload, loaded.raw_inputs))
    heads = {k: np.asarray(v).reshape(-1) for k, v in out.items()}
    n = len(next(iter(heads.values())))
    return [{k: float(v[i]) for k, v in sorted(heads.items())} for i in range(n)]


def serve(model_dir: str, model_name: str, host: str = "127.0.0.1", port: int = 8501,
          poll_seconds: float = 2.0, **limits: Any) -> Tuple[ModelServer, threading.Event]:
    """Loads the target version, starts the version watcher; returns the (unstarted) server.
    ``limits``: the ``model_server:`` settings of configs/pipeline.yaml other than host, port, poll."""
    registry = Registry(model_dir)
    t0 = time.time()
    loaded = registry.refresh()
    if loaded is not None:
        log.info("model %s version %s ready in %.1fs", model_name, loaded.version, time.time() - t0)
    else:
        log.warning("no version of %s in %s yet; waiting for a push", model_name, model_dir)
    stop = threading.Event()
    registry.watch(poll_seconds, stop)
    return ModelServer((host, port), model_name, registry, **limits), stop
