"""The read-only HTTP server of ``otel-datasink serve``: the report's page, as last built, at ``/``, and the JSON
API of the views under ``/api`` (:mod:`otel_datasink.report.jsonapi`), behind the same checks.

Only ``GET`` and ``HEAD`` of ``/`` (or ``/index.html``) and of ``/api/...`` are answered; any other path is 404
and any other method 405: nothing can be changed through it. With a token, every request must carry
``Authorization: Bearer <token>`` (compared in constant time, as the collector compares its token), or Basic
credentials with the token as password, which is what a browser sends once the 401 answer's
``WWW-Authenticate: Basic`` made it ask its reader. The page is rebuilt by the caller (:meth:`PageServer.publish`),
never on a request: a slow store delays no reader of it (the API reads the store when asked).

Each request is judged on its line and headers alone, in this order: its ``Host`` must be one the server answers
to (:class:`HostAllowList`, 403 otherwise), then its token (401), then its method and path; no body is ever read.
A connection gets a thread of its own, at most :data:`MAX_CONNECTIONS` at once (those beyond are answered 503 and
closed by the accepting thread), and :data:`HEADER_TIMEOUT` seconds from its accept for its whole request line and
headers, however slowly they trickle in: a client that never finishes them holds its thread that long, token or
not. Every answer closes its connection (HTTP/1.0), so none idles between requests.
"""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from otel_datasink import tokens
from otel_datasink.report.page import CONTENT_SECURITY_POLICY

_logger = logging.getLogger(__name__)

PAGE_PATHS = ("/", "/index.html")
HEADER_TIMEOUT = 10.0
"""Seconds from a connection's accept until its request line and headers are all in (the collector's default
header timeout, counted here from the accept); then it is closed unanswered, however slowly they came in."""
RESPONSE_TIMEOUT = 60.0
"""Seconds a write of an answer may take (a 4.5 MB page at 75 KB/s): a reader that stops reading is dropped."""
MAX_CONNECTIONS = 128
"""Connections served at once, a thread each; those beyond are answered 503 and closed at once, on no thread."""
LISTEN_BACKLOG = 128
"""Connections the kernel queues until they are accepted (socketserver's 5 drops a burst's SYNs: 1 s retries)."""
_REFUSED = b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 10\r\nContent-Length: 0\r\n\r\n"
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
API_PREFIX = "/api"

Api = Callable[[str], tuple[HTTPStatus, bytes]]
"""The API's answer (status, JSON body) to a request's path and query string."""


def authorized(header: str | None, token: str | None) -> bool:
    """Whether ``header`` (an ``Authorization`` value) carries ``token``: ``Bearer <token>``, or Basic credentials
    with the token as password (how a browser's login prompt sends it); True when no token is required."""
    if token is None:
        return True
    return tokens.authorized(header, tokens.bearer(token)) or tokens.basic_password_is(header, token)


def host_name(text: str) -> str | None:
    """``text`` as a host is compared: a name in lower case without a final dot, or an IP address in its short
    form (IPv6 with or without brackets); None when it is neither (a port, a scheme, a path...)."""
    text = text.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        pass
    text = text[:-1] if text.endswith(".") else text
    return text if _HOST_NAME.fullmatch(text) else None


def _requested_host(header: str) -> str | None:
    """The host a ``Host`` header names, its port aside (:func:`host_name`)."""
    name, colon, port = header.strip().rpartition(":")
    if colon and port.isdigit() and (name.endswith("]") or ":" not in name):
        header = name
    return host_name(header)


@dataclasses.dataclass(frozen=True)
class HostAllowList:
    """The hosts a request's ``Host`` header may name, whatever its port (an SSH tunnel or a proxy changes it).

    Against DNS rebinding: a web page elsewhere whose name its owner makes resolve to this server could otherwise
    read the page with the reader's browser, which sends that name as ``Host``. An IP address cannot be rebound:
    ``any_address`` allows every one (a server on every interface cannot know which of its addresses, or which
    address a NAT in front of it, the reader typed).
    """

    names: frozenset[str]
    any_address: bool = False

    @classmethod
    def of(cls, names: Iterable[str], any_address: bool = False) -> HostAllowList:
        """The list of ``names`` (see :func:`host_name`; ValueError naming one that is no host)."""
        allowed = set()
        for name in names:
            normal = host_name(name)
            if normal is None:
                raise ValueError(f"not a host name or IP address: {name!r}")
            allowed.add(normal)
        return cls(frozenset(allowed), any_address)

    def allows(self, headers: list[str]) -> bool:
        """Whether a request's ``Host`` headers are one that names an allowed host."""
        name = _requested_host(headers[0]) if len(headers) == 1 else None
        return name is not None and (name in self.names or (self.any_address and _is_address(name)))


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class PageServer(ThreadingHTTPServer):
    """Serves the page last given to :meth:`publish`, and ``api``'s answers under ``/api``, to those who hold
    ``token`` (anyone without one) and name one of ``hosts``."""

    daemon_threads = True  # a reader that stalls never keeps the process from stopping
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        page: str,
        hosts: HostAllowList,
        token: str | None = None,
        api: Api | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.hosts = hosts
        self.token = token
        self.api = api
        self._lock = threading.Lock()
        self._page = page.encode("utf-8")
        self._read = False
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def publish(self, page: str) -> None:
        """Serves ``page`` from now on (requests under way finish with the previous one)."""
        encoded = page.encode("utf-8")
        with self._lock:
            self._page = encoded
            self._read = False

    @property
    def page(self) -> bytes:
        """The page served now (a request for it marks it read: see :meth:`read_since_published`)."""
        with self._lock:
            self._read = True
            return self._page

    def read_since_published(self) -> bool:
        """Whether the page was served since it was published: no reader, no need to rebuild it."""
        with self._lock:
            return self._read

    @property
    def url(self) -> str:
        """The server's address as a URL (the port it was given, once bound: ``:0`` picks a free one)."""
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serves the connection on a thread of its own, or refuses it here when :data:`MAX_CONNECTIONS` are open."""
        if self._slots.acquire(blocking=False):
            super().process_request(request, client_address)
            return
        _logger.info("refused a connection from %s: %d are open", client_address[0], MAX_CONNECTIONS)
        request.setblocking(False)  # the accepting thread must never wait on a client
        try:
            request.send(_REFUSED)
        except OSError:
            pass  # its buffer full or the client gone: closing it says enough
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection's failure (a reset, a write past :data:`RESPONSE_TIMEOUT`) is the client's: logged, not
        printed as a traceback (socketserver's default) on stderr."""
        _logger.info("connection from %s failed: %s", client_address[0], sys.exc_info()[1])


class _Deadline(io.RawIOBase):
    """A socket's bytes, read while ``deadline`` (``time.monotonic()``) has not passed: a socket's own timeout
    starts again at every byte, so a request trickling in a byte at a time would never meet it."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        self.connection = connection
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete request headers within {HEADER_TIMEOUT:g}s")
        self.connection.settimeout(left)
        return self.connection.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: PageServer
    server_version = "otel-datasink"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own reader: headers are read by the deadline's instead
        self.rfile = io.BufferedReader(_Deadline(self.connection, time.monotonic() + HEADER_TIMEOUT))

    def parse_request(self) -> bool:
        """Reads the headers (within :data:`HEADER_TIMEOUT`); then gives the answer its own time to be written."""
        parsed = super().parse_request()
        self.connection.settimeout(RESPONSE_TIMEOUT)
        return parsed

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _refuse_method(self) -> None:
        if self._admitted(body=True):
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only: GET or HEAD\n", "text/plain", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    def _answer(self, body: bool) -> None:
        if not self._admitted(body):
            return
        path = self.path.split("?", 1)[0]
        if self.server.api is not None and (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            status, content = self.server.api(self.path)
            self._send(status, content, "application/json", body=body)
            return
        if path not in PAGE_PATHS:
            self._send(HTTPStatus.NOT_FOUND, b"not found: the dashboards are at /\n", "text/plain", body=body)
            return
        self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8", body=body)

    def _admitted(self, body: bool) -> bool:
        """Whether the request names an allowed host and carries the token; if not, it is answered (403, 401)."""
        if not self.server.hosts.allows(self.headers.get_all("Host", [])):
            self._send(
                HTTPStatus.FORBIDDEN,
                b"this Host is not allowed: serve answers to the address it listens on and to --allowed-host\n",
                "text/plain",
                body=body,
            )
            return False
        if not authorized(self.headers.get("Authorization"), self.server.token):
            self._send(
                HTTPStatus.UNAUTHORIZED,
                b"missing or wrong token\n",
                "text/plain",
                # Basic makes a browser ask for it (user name: anything, password: the token).
                {"WWW-Authenticate": 'Basic realm="otel-datasink", charset="UTF-8"'},
                body,
            )
            return False
        return True

    def _send(
        self,
        status: HTTPStatus,
        content: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        body: bool = True,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        _logger.info("%s %s", self.address_string(), format % args)
