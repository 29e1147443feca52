"""The read-only HTTP server of ``otel-datasink serve``: the report's page, as last built, at ``/``.

Only ``GET`` and ``HEAD`` of ``/`` (or ``/index.html``) are answered; any other path is 404 and any other method
405: nothing can be changed through it. With a token, every request must carry ``Authorization: Bearer <token>``
(compared in constant time, as the collector compares its token), or Basic credentials with the token as password,
which is what a browser sends once the 401 answer's ``WWW-Authenticate: Basic`` made it ask its reader. The page
is rebuilt by the caller (:meth:`PageServer.publish`), never on a request: a slow store delays no reader.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from otel_datasink import tokens
from otel_datasink.report.page import CONTENT_SECURITY_POLICY

_logger = logging.getLogger(__name__)

PAGE_PATHS = ("/", "/index.html")


def authorized(header: str | None, token: str | None) -> bool:
    """Whether ``header`` (an ``Authorization`` value) carries ``token``: ``Bearer <token>``, or Basic credentials
    with the token as password (how a browser's login prompt sends it); True when no token is required."""
    if token is None:
        return True
    return tokens.authorized(header, tokens.bearer(token)) or tokens.basic_password_is(header, token)


class PageServer(ThreadingHTTPServer):
    """Serves the page last given to :meth:`publish`, to those who hold ``token`` (anyone without one)."""

    daemon_threads = True  # a reader that stalls never keeps the process from stopping

    def __init__(self, address: tuple[str, int], page: str, token: str | None = None) -> None:
        super().__init__(address, _Handler)
        self.token = token
        self._lock = threading.Lock()
        self._page = page.encode("utf-8")
        self._read = False

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


class _Handler(BaseHTTPRequestHandler):
    server: PageServer
    server_version = "otel-datasink"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only: GET or HEAD\n", "text/plain", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    def _answer(self, body: bool) -> None:
        if not authorized(self.headers.get("Authorization"), self.server.token):
            self._send(
                HTTPStatus.UNAUTHORIZED,
                b"missing or wrong token\n",
                "text/plain",
                # Basic makes a browser ask for it (user name: anything, password: the token).
                {"WWW-Authenticate": 'Basic realm="otel-datasink", charset="UTF-8"'},
                body,
            )
            return
        if self.path.split("?", 1)[0] not in PAGE_PATHS:
            self._send(HTTPStatus.NOT_FOUND, b"not found: the dashboards are at /\n", "text/plain", body=body)
            return
        self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8", body=body)

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
