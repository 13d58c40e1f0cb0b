"""HTTP/1.1 request reading with every limit a hostile client can push on.

Why not ``http.server``: its handler reads headers and bodies with no deadline
on a thread per connection, answers ``Content-Length: abc`` with a 500, and
cannot turn a client away once all threads are taken. Here a connection is an
asyncio coroutine (a stalled one costs a few KiB, not a thread), the request
head must arrive within ``header_timeout`` and the body within
``body_timeout``, and every malformed request raises ``HttpError`` with the
4xx status and the one-line reason the client gets back.

Only what TF Serving's REST API needs: ``Content-Length`` bodies (no chunked
uploads), HTTP/1.0 and 1.1, keep-alive.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import urllib.parse
from typing import Dict, Optional

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           411: "Length Required", 413: "Content Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}
METHODS = ("GET", "POST")
TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
DIGITS = re.compile(r"^[0-9]{1,15}$")


class HttpError(Exception):
    """A request the server refuses: ``status`` (4xx/503) and a reason for the client.
    ``close``: the connection cannot be reused (unread body, broken framing)."""

    def __init__(self, status: int, reason: str, close: bool = True, headers: Optional[Dict[str, str]] = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close = close
        self.headers = headers or {}


class ClientGone(Exception):
    """The client closed the connection, or sent nothing before the idle limit: nothing to answer."""


@dataclasses.dataclass
class Limits:
    header_timeout: float = 10.0   # seconds from the first byte of a request to the end of its head
    body_timeout: float = 10.0     # seconds to receive the body once the head is in
    idle_timeout: float = 60.0     # keep-alive: seconds a connection may wait for its next request
    max_header_bytes: int = 16384  # request line + headers
    max_headers: int = 100
    max_body_bytes: int = 4 << 20


@dataclasses.dataclass
class Request:
    method: str
    path: str                   # percent-decoded, UTF-8, without the query
    version: str                # "HTTP/1.1" or "HTTP/1.0"
    headers: Dict[str, str]     # lower-case names
    content_length: int
    keep_alive: bool


class _Expired(Exception):
    pass


@contextlib.contextmanager
def deadline(reader: asyncio.StreamReader, seconds: float):
    """Fails a pending read on ``reader`` with ``_Expired`` after ``seconds``. A timer handle per
    phase, not ``asyncio.wait_for``, which wraps every read in a new task: that was a third of the
    server's own time per request. An expired reader stays failed: the connection is closed after."""
    handle = asyncio.get_running_loop().call_later(max(seconds, 0), reader.set_exception, _Expired())
    try:
        yield
    finally:
        handle.cancel()


async def read_head(reader: asyncio.StreamReader, limits: Limits, first: bool) -> bytes:
    """The raw request head. A new connection has ``header_timeout`` from connecting for all of
    it; a kept-alive one may idle ``idle_timeout`` before its next request starts, and then has
    ``header_timeout`` from that request's first byte."""
    loop = asyncio.get_running_loop()
    start_by = loop.time() + limits.header_timeout
    try:
        with deadline(reader, limits.header_timeout if first else limits.idle_timeout):
            start = await reader.read(1)
    except _Expired:
        if first:
            raise HttpError(408, f"no request within {limits.header_timeout:g} s of connecting") from None
        raise ClientGone("idle") from None
    if not start:
        raise ClientGone("closed")
    if not first:
        start_by = loop.time() + limits.header_timeout
    try:
        with deadline(reader, start_by - loop.time()):
            return start + await reader.readuntil(b"\r\n\r\n")
    except _Expired:
        raise HttpError(408, f"request head not complete within {limits.header_timeout:g} s") from None
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request line and headers exceed {limits.max_header_bytes:,} bytes") from None
    except asyncio.IncompleteReadError as e:
        if (start + e.partial).strip():
            raise HttpError(400, "connection closed in the middle of the request head") from None
        raise ClientGone("closed") from None


def parse_head(head: bytes, limits: Limits) -> Request:
    lines = head[:-4].split(b"\r\n")
    while lines and not lines[0]:  # RFC 9112 2.2: ignore empty lines before the request line
        lines.pop(0)
    if not lines:
        raise HttpError(400, "empty request")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HttpError(400, "malformed request line; expected 'METHOD /path HTTP/1.1'")
    raw_method, target, raw_version = parts
    if not TOKEN.match(raw_method):
        raise HttpError(400, "malformed method in the request line")
    version = raw_version.decode("latin-1")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(400, f"unsupported protocol {version[:20]!r}; use HTTP/1.1")
    path = decode_path(target)
    if len(lines) - 1 > limits.max_headers:
        raise HttpError(431, f"{len(lines) - 1} header fields; the limit is {limits.max_headers}")
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not TOKEN.match(name):
            raise HttpError(400, "malformed header line (expected 'Name: value')")
        key = name.decode("ascii").lower()
        text = value.strip().decode("latin-1")
        if key in headers and key == "content-length" and headers[key] != text:
            raise HttpError(400, "conflicting Content-Length headers")
        headers[key] = f"{headers[key]}, {text}" if key in headers and key != "content-length" else text
    method = raw_method.decode("ascii")
    if "transfer-encoding" in headers:
        raise HttpError(411, "Transfer-Encoding bodies are not supported; send the body with a Content-Length")
    length = headers.get("content-length")
    if length is None:
        content_length = 0
    elif not DIGITS.match(length):
        raise HttpError(400, f"Content-Length must be a non-negative integer, got {length[:40]!r}")
    else:
        content_length = int(length)
    conn = headers.get("connection", "").lower()
    keep_alive = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
    request = Request(method, path, version, headers, content_length, keep_alive)
    if method not in METHODS:
        raise HttpError(405, f"method {method[:20]} is not allowed; use GET (status) or POST (:predict)",
                        close=content_length > 0, headers={"Allow": ", ".join(METHODS)})
    if method == "POST" and length is None:
        raise HttpError(411, "Content-Length header required")
    if content_length > limits.max_body_bytes:
        raise HttpError(413, f"request body of {content_length:,} bytes exceeds the limit of "
                             f"{limits.max_body_bytes:,} bytes")
    return request


def decode_path(target: bytes) -> str:
    """The percent-decoded path without its query; a path that is not UTF-8 is a 400, not a 500."""
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "the request path has raw non-ASCII bytes; percent-encode it (UTF-8)") from None
    path = text.split("?", 1)[0]
    try:
        return urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise HttpError(400, "the request path is not valid UTF-8 once percent-decoded") from None


async def read_body(reader: asyncio.StreamReader, request: Request, limits: Limits) -> bytes:
    if not request.content_length:
        return b""
    try:
        with deadline(reader, limits.body_timeout):
            return await reader.readexactly(request.content_length)
    except _Expired:
        raise HttpError(408, f"request body of {request.content_length:,} bytes not received within "
                             f"{limits.body_timeout:g} s") from None
    except asyncio.IncompleteReadError:
        raise ClientGone("closed mid-body") from None


def response(status: int, body: bytes, keep_alive: bool, headers: Optional[Dict[str, str]] = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: " + ("keep-alive" if keep_alive else "close")]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
