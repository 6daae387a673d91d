"""Hardening shared by the local web servers (``asapnet demo``, ``asapnet study``).

Both are small stdlib :mod:`http.server` applications meant for one user on this machine. This
module keeps a misbehaving or hostile client from taking them down or driving them from another
web site:

* :class:`GuardedHTTPServer`: at most ``max_connections`` connection threads; further connections
  get an immediate ``503 {"error": "busy, retry"}`` (``Retry-After``) instead of a new thread.
* :class:`GuardedHandler`: a socket read timeout (``timeout``, seconds per read) so stalled clients
  are dropped, a deadline for the whole request body, every error answered as JSON (including
  http.server's own 400/414/431/501 pages and unexpected exceptions: a 500, never a traceback page
  or a dropped connection), and :meth:`GuardedHandler.read_json`: a JSON body only with
  ``Content-Type: application/json`` from the same origin (``Origin`` absent or equal to
  ``http://<Host>``), else 403; ``Content-Length`` required (411) and checked against the limit
  before anything is read (413); parse errors, ``NaN``/``Infinity`` and nesting deep enough for a
  ``RecursionError`` are a 400.
* On a loopback address the ``Host`` header must name a loopback host (``localhost``,
  ``127.0.0.1``, ``[::1]``), so a web page that rebinds its DNS name to 127.0.0.1 cannot read or
  drive the server either.
* :func:`exposure_warning`: the line to print when a server listens on a non-loopback address.

A request refused before its body was read is answered, then the rest of the body is read and
discarded for a moment (a "lingering close"), so the client sees the answer instead of a reset
connection.
"""
from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional

#: Default per-read socket timeout of the servers, in seconds.
DEFAULT_TIMEOUT = 10.0
#: Default largest number of simultaneous connections (one thread each).
DEFAULT_MAX_CONNECTIONS = 32
#: The answer to a request that finds every slot taken (and its Retry-After, seconds).
BUSY = {"error": "busy, retry"}
RETRY_AFTER = 2


class Reject(Exception):
    """Answer the current request with ``status`` and ``{"error": message}`` (raised in handlers)."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.headers = int(status), message, headers or {}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or host name, IPv6 with or without brackets) is this machine
    only: ``localhost``, ``*.localhost``, 127.0.0.0/8 or ::1. ``""`` / ``0.0.0.0`` / ``::`` (all
    interfaces) and other names are not."""
    h = str(host).strip().strip("[]").lower().rstrip(".")
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(h.split("%")[0])
    except ValueError:
        return False
    if getattr(ip, "ipv4_mapped", None) is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def exposure_warning(prog: str, host: str, port: int) -> Optional[str]:
    """The warning line for a server bound to ``host`` (``None`` on a loopback address)."""
    if is_loopback(host):
        return None
    return (f"{prog}: warning: listening on {host or '0.0.0.0'}:{port}, not a loopback address: anyone who can "
            f"reach this machine on port {port} can use this server (use --host 127.0.0.1 to keep it local)")


def _host_name(host_header: str) -> str:
    """``"[::1]:8000"`` -> ``"::1"``, ``"localhost:8000"`` -> ``"localhost"``."""
    h = host_header.strip()
    if h.startswith("["):
        return h[1:].split("]", 1)[0]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _no_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


def parse_json(body: bytes):
    """``json.loads`` that refuses NaN/Infinity; raises :class:`Reject` (400) on any parse error,
    including nesting deep enough for a RecursionError."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise Reject(400, "bad request: JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise Reject(400, "bad request: body is not UTF-8") from None
    except ValueError as e:
        raise Reject(400, f"bad request: {e}") from None


class GuardedHandler(BaseHTTPRequestHandler):
    """Base request handler: subclasses implement :meth:`get` and :meth:`post`.

    Attributes (class level; a server can use a subclass with other values):
        timeout: seconds one socket read may wait (stalled clients are dropped; None = forever).
        body_timeout: seconds the whole request body may take.
        max_body: largest request body, in bytes (413 from ``Content-Length``, before reading).
        quiet: no per-request log lines on stderr.
    """

    timeout: Optional[float] = DEFAULT_TIMEOUT
    body_timeout: float = 60.0
    max_body: int = 64 * 1024
    quiet: bool = True
    #: bytes of a request body left unread when answering (drained after the answer)
    _unread: int = 0
    _responded: bool = False

    def log_message(self, fmt, *args):  # noqa: D401 - http.server API
        if not self.quiet:
            super().log_message(fmt, *args)

    # -- answers --------------------------------------------------------------------------------

    def _send(self, code: int, body: bytes, ctype: str, headers: Optional[Dict[str, str]] = None) -> None:
        self._responded = True
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client went away
                self.close_connection = True

    def _json(self, code: int, obj, headers: Optional[Dict[str, str]] = None) -> None:
        self._send(code, json.dumps(obj, allow_nan=False, default=str).encode(), "application/json", headers)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (malformed request line, too long headers, unknown method):
        JSON like every other error, and the connection is closed."""
        self.close_connection = True
        if getattr(self, "request_version", None) in (None, "HTTP/0.9"):  # garbage, not HTTP/0.9: answer with headers
            self.request_version = "HTTP/1.0"
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        try:
            self._json(code, {"error": message or phrase})
        except OSError:
            pass

    # -- dispatch -------------------------------------------------------------------------------

    def get(self) -> None:
        raise Reject(404, f"no such page: {self.path}")

    def post(self) -> None:
        raise Reject(404, f"no such endpoint: {self.path}")

    def do_GET(self):  # noqa: N802 - http.server API
        self._dispatch(self.get)

    def do_POST(self):  # noqa: N802
        self._dispatch(self.post)

    def _dispatch(self, fn) -> None:
        self._responded = False
        self._unread = self._declared_length()
        try:
            self.check_host()
            fn()
        except Reject as e:
            if self._unread:
                self.close_connection = True
            if not self._responded:
                self._json(e.status, {"error": e.message}, e.headers)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, socket.timeout):  # the client went away
            self.close_connection = True
        except Exception as e:  # a bug: say so in JSON, keep the traceback for the server's log
            self.close_connection = True
            sys.stderr.write(f"{type(self).__name__}: error in {self.command} {self.path!r}:\n{traceback.format_exc()}")
            if not self._responded:
                self._json(500, {"error": f"internal server error ({type(e).__name__})"})

    def _declared_length(self) -> int:
        try:
            return max(0, int(self.headers.get("Content-Length", "0")))
        except ValueError:
            return 0

    def finish(self) -> None:
        super().finish()
        if self._unread > 0:  # answered without reading the body: drain a little before closing
            linger(self.connection, min(self._unread, 256 * 2 ** 20), seconds=3.0)

    # -- checks ---------------------------------------------------------------------------------

    def check_host(self) -> None:
        """On a loopback server, a ``Host`` naming another machine is refused (DNS rebinding)."""
        host = self.headers.get("Host")
        if host and getattr(self.server, "loopback", False) and not is_loopback(_host_name(host)):
            raise Reject(403, f"host {host!r} refused: this server answers on localhost only")

    def check_origin(self) -> None:
        """Same-origin only: ``Origin`` absent, or equal to ``http://<Host>``; else 403."""
        origin = self.headers.get("Origin")
        if origin is None:
            return
        host = self.headers.get("Host")
        if not host or origin.strip().rstrip("/").lower() != f"http://{host.strip()}".lower():
            raise Reject(403, f"cross-origin request from {origin!r} refused")

    def read_json(self, max_bytes: Optional[int] = None, before_read=None):
        """The request's JSON body, after the origin, Content-Type and size checks (see the module
        docstring). ``before_read()`` runs after the checks and before the body is read (e.g. to
        take a slot; it may raise :class:`Reject`).

        Raises:
            Reject: 403 cross-origin / not application/json, 411 no Content-Length, 413 too large,
                408 body too slow, 400 truncated body or not JSON.
        """
        limit = self.max_body if max_bytes is None else max_bytes
        self.check_origin()
        if self.headers.get_content_type() != "application/json":
            raise Reject(403, "requests must be sent as Content-Type: application/json, got "
                              f"{self.headers.get('Content-Type') or 'none'!r}")
        if self.headers.get("Transfer-Encoding"):
            raise Reject(411, "chunked request bodies are not accepted: send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise Reject(411, "Content-Length required")
        try:
            n = int(raw)
            if n < 0:
                raise ValueError
        except ValueError:
            raise Reject(400, f"bad Content-Length {raw!r}") from None
        if n > limit:
            raise Reject(413, f"request of {n} bytes exceeds {limit} bytes")
        if before_read is not None:
            before_read()
        return parse_json(self.read_body(n))

    def read_body(self, n: int) -> bytes:
        """Read exactly ``n`` body bytes within :attr:`body_timeout` (408 otherwise, 400 if the
        client closes early)."""
        deadline = time.monotonic() + self.body_timeout
        parts, got = [], 0
        try:
            while got < n:
                if time.monotonic() > deadline:
                    raise Reject(408, f"request body not received within {self.body_timeout:g} s")
                chunk = self.rfile.read(min(n - got, 2 ** 20))
                if not chunk:
                    raise Reject(400, f"request body ended after {got} of {n} bytes")
                parts.append(chunk)
                got += len(chunk)
                self._unread = n - got
        except (TimeoutError, socket.timeout):
            self._unread = 0  # nothing more is coming
            self.close_connection = True
            raise Reject(408, f"request body not received within {self.timeout:g} s") from None
        return b"".join(parts)


def linger(sock: socket.socket, max_bytes: int, seconds: float) -> None:
    """Close our side for writing, then read and discard up to ``max_bytes`` for at most
    ``seconds``, so that an answer sent before the request body was read reaches the client
    (closing a socket with unread data makes the peer see a reset instead)."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    deadline, got = time.monotonic() + seconds, 0
    try:
        while got < max_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                break
            got += len(data)
    except OSError:
        pass


class GuardedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server with at most ``max_connections`` connection threads; a connection
    beyond that is answered ``503 {"error": "busy, retry"}`` from the accepting thread and closed.
    ``loopback`` tells whether it listens on a loopback address only."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address, handler, max_connections: int = DEFAULT_MAX_CONNECTIONS):
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        super().__init__(address, handler)
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self.loopback = is_loopback(self.server_address[0])
        self.refused_connections = 0

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.refused_connections += 1
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request) -> None:
        body = json.dumps(BUSY).encode()
        head = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: {RETRY_AFTER}\r\nCache-Control: no-store\r\n"
                f"Connection: close\r\n\r\n").encode()
        try:
            request.settimeout(0.5)
            request.sendall(head + body)
            request.shutdown(socket.SHUT_WR)
            request.setblocking(False)
            for _ in range(16):  # what the client already sent, so that closing does not reset
                if not request.recv(65536):
                    break
        except OSError:  # includes BlockingIOError: nothing more buffered
            pass
        finally:
            self.shutdown_request(request)

    def handle_error(self, request, client_address):
        """Clients that vanish or stall are routine: no traceback for socket errors."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        super().handle_error(request, client_address)
