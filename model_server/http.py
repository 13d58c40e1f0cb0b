"""HTTP front of the model server: TF Serving's REST paths on a threading HTTP server.

Paths: ``GET /v1/models/NAME[/versions/N]`` (status) and
``POST /v1/models/NAME[/versions/N]:predict``. Errors are JSON ``{"error": ...}``
with 400 (bad request), 404 (unknown model or version), 411/413 (size limits)
or 503 (nothing loaded yet); an unexpected failure is a 500 with a one-line
message, and the stack trace goes to the server log only.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Tuple

import numpy as np
import tensorflow as tf

from model_server.predict_request import BadRequest, parse_body, raw_columns
from model_server.registry import LoadedModel, Registry

log = logging.getLogger("model_server")
PATH = re.compile(r"^/v1/models/(?P<name>[A-Za-z0-9_.-]+)(?:/versions/(?P<version>[0-9]+))?(?P<verb>:predict)?$")


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: Tuple[str, int], model_name: str, registry: Registry,
                 max_body_bytes: int = 4 << 20, max_instances: int = 1000):
        super().__init__(address, Handler)
        self.model_name = model_name
        self.registry = registry
        self.max_body_bytes = max_body_bytes
        self.max_instances = max_instances
        self.in_flight = 0
        self._count_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    server: ModelServer
    protocol_version = "HTTP/1.1"  # keep-alive: load tests and clients reuse connections
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK adds
    # ~40 ms to every response (measured: p50 44 ms for a 1 ms model call).
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, doc: Any, version: Optional[int] = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if version is not None:
            self.send_header("X-Model-Version", str(version))
        self.end_headers()
        self.wfile.write(body)

    def _route(self):
        match = PATH.match(self.path.split("?", 1)[0])
        if not match:
            raise BadRequest(f"unknown path {self.path}; use /v1/models/{self.server.model_name}[:predict]", 404)
        if match["name"] != self.server.model_name:
            raise BadRequest(f"model {match['name']!r} not found; this server serves {self.server.model_name!r}", 404)
        return match

    def _model(self, version: Optional[str]) -> LoadedModel:
        registry = self.server.registry
        if version is not None:
            loaded = registry.get(int(version))
            if loaded is None:
                raise BadRequest(f"version {version} of {self.server.model_name!r} not found; "
                                 f"available: {sorted(registry.loaded_versions()) or 'none'} loaded", 404)
            return loaded
        loaded = registry.current
        if loaded is None:
            raise BadRequest(f"no version of {self.server.model_name!r} is loaded yet "
                             f"(nothing pushed to {registry.model_dir}?)", 503)
        return loaded

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            match = self._route()
            if match["verb"]:
                raise BadRequest("predict needs POST", 405)
            registry = self.server.registry
            current = registry.current
            wanted = int(match["version"]) if match["version"] else None
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
                raise BadRequest(f"version {match['version']} is not loaded", 404)
            self._send(200, {"model_version_status": statuses})
        except BadRequest as e:
            self._send(e.status, {"error": str(e)})
        except Exception as e:  # noqa: BLE001 - never a stack trace to the client
            log.exception("GET %s failed", self.path)
            self._send(500, {"error": f"internal error: {type(e).__name__}"})

    def do_POST(self) -> None:  # noqa: N802
        server = self.server
        with server._count_lock:
            server.in_flight += 1
        try:
            match = self._route()
            if not match["verb"]:
                raise BadRequest("POST needs the :predict verb, e.g. /v1/models/NAME:predict", 404)
            length = self.headers.get("Content-Length")
            if length is None:
                raise BadRequest("Content-Length header required", 411)
            if int(length) > server.max_body_bytes:
                self.close_connection = True  # the unread body would corrupt the next request
                raise BadRequest(f"request body of {int(length):,} bytes exceeds the limit of "
                                 f"{server.max_body_bytes:,} bytes", 413)
            body = self.rfile.read(int(length))
            kind, payload = parse_body(body, server.max_instances)
            loaded = self._model(match["version"])
            preds = predict(loaded, kind, payload)
            self._send(200, {"predictions": preds}, version=loaded.version)
        except BadRequest as e:
            self._send(e.status, {"error": str(e)})
        except tf.errors.InvalidArgumentError as e:
            try:
                detail = tf_error_line(e.message)
            except UnicodeDecodeError:  # TF quotes the offending bytes, which may not be UTF-8
                detail = "invalid input"
            self._send(400, {"error": "the model rejected the input: " + detail})
        except Exception as e:  # noqa: BLE001
            log.exception("POST %s failed", self.path)
            self._send(500, {"error": f"internal error: {type(e).__name__}"})
        finally:
            with server._count_lock:
                server.in_flight -= 1


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
    """Loads the target version, starts the version watcher; returns the (unstarted) server."""
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
