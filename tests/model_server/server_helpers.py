"""A tiny served model and raw-socket clients for the model server tests.

The model is a real SavedModel with TF Serving's ``serving_default(examples)``
signature (ctr = sigmoid(x), ctcvr = ctr / 2), so the server's whole path runs,
in a fraction of a second per load instead of a trained ranking model's.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import threading
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Tuple

import tensorflow as tf

from model_server.http import ModelServer, serve
from model_server.metrics import parse

VERSION = 20261120


def save_tiny_model(model_dir: str, version: int = VERSION) -> str:
    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])})["x"]
            ctr = tf.sigmoid(x)
            return {"ctr": ctr, "ctcvr": ctr / 2.0}

    module = Tiny()
    path = os.path.join(model_dir, str(version))
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return model_dir


def example(x: float) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))})).SerializeToString()


def predict_body(n: int = 1) -> bytes:
    return json.dumps({"instances": [{"b64": base64.b64encode(example(0.1 * i)).decode()} for i in range(n)]}).encode()


def post(path: str, body: bytes, extra: str = "", close: bool = False) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}" + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode() + body


@contextmanager
def running(model_dir: str, **limits) -> Iterator[ModelServer]:
    srv, stop = serve(model_dir, "ranking", port=0, poll_seconds=0.5, **limits)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()
        thread.join()


def connect(address, timeout: float = 60.0) -> socket.socket:
    s = socket.create_connection(address[:2], timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s: socket.socket) -> Tuple[Optional[int], Dict[str, str], bytes]:
    """(status, headers, body) of one response; (None, {}, b"") if the server closed without one."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return None, {}, b""
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    n = int(headers.get("content-length", 0))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:n]


def exchange(address, raw: bytes) -> Tuple[Optional[int], Dict[str, str], bytes]:
    with connect(address) as s:
        s.sendall(raw)
        return read_response(s)


def metrics(address) -> Dict[str, float]:
    status, _, body = exchange(address, b"GET /monitoring/prometheus/metrics HTTP/1.1\r\nHost: t\r\n"
                                        b"Connection: close\r\n\r\n")
    assert status == 200
    return parse(body.decode())
