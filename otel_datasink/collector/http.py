"""OTLP/HTTP receiver (aiohttp): ``POST /v1/traces``, ``POST /api/v1/lineage`` (OpenLineage's HTTP transport),
``GET /health`` (``/live``, ``/ready``), ``GET /metrics``.

``/api/v1/lineage`` takes OpenLineage run events in JSON (one event, or an array) through the same machinery as
``/v1/traces``: token, limits, gzip, memory budget, spool-before-acknowledge, and the same statuses; its bodies
are JSON, its requests counted as ``requests{protocol="openlineage"}``.

Statuses follow the OTLP/HTTP specification: 200 with an ``ExportTraceServiceResponse`` (``partial_success``
when spans were rejected), 400 undecodable, 401 missing or wrong bearer token, 408 a body slower than the body
timeout, 413 over the body limit (compressed or decompressed: gzip is inflated in a stream with a cap, so a bomb
costs at most the limit) or when decoding the body would take more memory than ``max_inflight_bytes`` alone, 415
unsupported content type or encoding, 503 with ``Retry-After`` while the store is backlogged or the memory held at
once (bodies, and the estimated size of their decoding) would pass ``max_inflight_bytes``. Error bodies are
``google.rpc.Status``; every body is in the request's content type.

Connections go through :class:`_Guard` before aiohttp sees them: it caps how many are open, closes those whose
request headers take longer than the header timeout (aiohttp's keep-alive timeout closes idle ones), and turns
away gRPC clients (the HTTP/2 preface) with one clear log line instead of an HTTP parse error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from aiohttp import ClientPayloadError, StreamReader, web
from aiohttp.web_protocol import RequestHandler

from otel_datasink.collector import responses
from otel_datasink.collector.counters import Throttled
from otel_datasink.collector.ingest import OverBudgetError, TooLargeToDecodeError, UndecodableError
from otel_datasink.formats import Format
from otel_datasink.otlp import Rejections
from otel_datasink.tokens import authorized, bearer

if TYPE_CHECKING:  # server.py imports this module
    from otel_datasink.collector.counters import Metrics
    from otel_datasink.collector.server import Collector, Hold
    from otel_datasink.collector.settings import CollectorSettings

_logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
LINEAGE_PATH = "/api/v1/lineage"
"""OpenLineage's HTTP transport endpoint (its ``endpoint`` setting's default, ``api/v1/lineage``, under its ``url``)."""
RETRY_AFTER_SECONDS = 5
_CHUNK = 64 * 1024
LINGER_SECONDS = 2.0
"""How long the body of a request answered without reading it (401, 413, 503) is read and dropped, so that the
client gets the answer rather than a reset; then the connection is closed."""
_FD_RESERVE = 128
"""File descriptors kept for everything but OTLP/HTTP connections (spool, store, gRPC, logs)."""
ACCEPT_BATCH = 32
"""How many connections asyncio accepts in one loop turn, each a file opened before the cap can refuse it (and
closed a turn later): two batches and the process's own files (about 20, more while writing) must fit in the
reserve. With aiohttp's 128, accept() at the cap under ``ulimit -n 256`` still failed with EMFILE on a loaded
machine now and then."""
LISTEN_BACKLOG = 128
"""Connections the kernel queues until they are accepted (aiohttp's default): asyncio's one ``backlog`` is both
this and the batch, and a queue of 32 dropped the SYNs of a burst of connections (clients waited 1 s each)."""
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Reject(Exception):
    def __init__(self, status: int, code: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.close = status, code, message, close


class _ClientGone(Exception):
    """The client closed its connection before its body was in."""


def build_app(receiver: Collector) -> web.Application:
    """The aiohttp application of a :class:`otel_datasink.collector.server.Collector`, with its connection guard."""
    guard = _Guard(receiver)
    app = web.Application(client_max_size=receiver.settings.max_body_bytes, middlewares=[guard.middleware])
    app[GUARD] = guard
    health = _health_handler(receiver)
    app.router.add_post("/v1/traces", _traces_handler(receiver))
    app.router.add_post(LINEAGE_PATH, _lineage_handler(receiver))
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", health)
    app.router.add_get("/health/live", _live_handler)
    app.router.add_get("/metrics", _metrics_handler(receiver))
    return app


async def start(receiver: Collector, host: str, port: int) -> tuple[web.AppRunner, list[tuple[str, int]]]:
    """Starts the OTLP/HTTP receiver; its runner (to clean up) and the addresses it is bound to."""
    settings = receiver.settings
    app = build_app(receiver)
    runner = web.AppRunner(
        app,
        auto_decompress=False,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=2.0,
        keepalive_timeout=settings.idle_timeout,  # also from the connection's start until its first request
        lingering_time=LINGER_SECONDS,
    )
    await runner.setup()
    guard = app[GUARD]
    guard.cap = connection_cap(settings.max_connections)
    receiver.metrics.gauges["http_connections"] = lambda: guard.open
    try:
        await _GuardedSite(runner, guard, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, [tuple(address[:2]) for address in runner.addresses]


def connection_cap(wanted: int) -> int:
    """``wanted``, or fewer when the process may not open that many files (``ulimit -n``) and cannot raise it.

    Past the open-file limit ``accept()`` fails, every client is locked out and asyncio logs each failure: the
    cap must close connections before that.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + _FD_RESERVE
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError):
        pass
    if soft >= need:
        return wanted
    cap = max(1, soft - _FD_RESERVE) if soft > 2 * _FD_RESERVE else max(1, soft // 2)
    _logger.warning(
        "at most %d OTLP/HTTP connections, not %d: the process may open %d files (ulimit -n)", cap, wanted, soft
    )
    return cap


class _GuardedSite(web.TCPSite):
    """A TCP site whose connections go through a :class:`_Guard` (aiohttp's own site takes no protocol factory)."""

    def __init__(self, runner: web.AppRunner, guard: _Guard, host: str, port: int) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        self._guard.factory = self._runner.server
        self._server = await asyncio.get_running_loop().create_server(
            self._guard, self._host, self._port, backlog=ACCEPT_BATCH, reuse_address=self._reuse_address
        )
        for listening in self._server.sockets:
            with listening.dup() as same:  # the same socket: a longer queue, the batch unchanged
                same.listen(LISTEN_BACKLOG)
        self._bound_port = self._server.sockets[0].getsockname()[1]


class _Guard:
    """The OTLP/HTTP connections: a cap on how many are open, a header timeout, and the HTTP/2 preface sniff."""

    def __init__(self, receiver: Collector) -> None:
        self.receiver = receiver
        self.settings = receiver.settings
        self.metrics = receiver.metrics
        self.cap = self.settings.max_connections
        self.factory: Callable[[], RequestHandler] | None = None
        self.open = 0
        self.connections: dict[RequestHandler, _Connection] = {}
        self.log_refused = Throttled(_logger)
        self.log_timeout = Throttled(_logger, logging.INFO)
        self.log_http2 = Throttled(_logger)

    def __call__(self) -> asyncio.Protocol:
        # Counted here, not in connection_made: asyncio accepts a backlog of connections before any is made.
        if self.open >= self.cap:
            self.metrics.connections_refused += 1
            self.log_refused("OTLP/HTTP connection limit (%d) reached: refusing connections until some close", self.cap)
            return _Refused()
        factory = self.factory
        assert factory is not None, "connections come only through _GuardedSite.start, which sets the factory first"
        self.open += 1
        return _Connection(self, factory())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection busy while a request is handled: its header timer stops, its next one starts later."""
        connection = self.connections.get(request.protocol)
        if connection is None:
            return await handler(request)
        connection.begin_request()
        try:
            return await handler(request)
        finally:
            connection.end_request(request)

    @property
    def hint(self) -> str:
        """What a gRPC client on this port should do instead."""
        port = self.receiver.grpc_port
        where = f"send OTLP/gRPC to the gRPC port {port}" if port else "the gRPC receiver is off (--grpc none)"
        # The protocol variable is not read everywhere (under Airflow 3.3, 'otlp' stays gRPC whatever
        # OTEL_EXPORTER_OTLP_PROTOCOL says): the exporter's own name always is.
        return (
            f"{where}, or set OTEL_TRACES_EXPORTER=otlp_proto_http "
            "(OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf where it is read)"
        )

    def gone(self, connection: _Connection) -> None:
        self.open -= 1
        self.connections.pop(connection.inner, None)


GUARD = web.AppKey("otel_datasink_guard", _Guard)

_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    % RETRY_AFTER_SECONDS
)


class _Refused(asyncio.Protocol):
    """A connection over the cap: answered 503 and closed at once, before anything of it is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport: asyncio types the callback with the base class, which has no write().
        transport = cast(asyncio.Transport, transport)
        transport.write(_503)
        transport.close()


class _Connection(asyncio.Protocol):
    """One OTLP/HTTP connection: aiohttp's handler behind a header timer and, on its first bytes, an HTTP/2 sniff."""

    def __init__(self, guard: _Guard, inner: RequestHandler) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.in_request = False
        self._unread: StreamReader | None = None
        """The body of the last request while aiohttp still reads (and drops) what its handler did not read."""
        self._timer: asyncio.TimerHandle | None = None
        self._head: bytes | None = b""
        """The first bytes, held while they may still be the HTTP/2 preface; None once they cannot."""
        guard.connections[inner] = self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream server's (the callback names the base class)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_timer()
        self.guard.gone(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def eof_received(self) -> bool | None:
        self.inner.eof_received()
        return None  # aiohttp's handler never keeps a half-closed connection open (its eof_received returns None)

    def data_received(self, data: bytes) -> None:
        if self._unread is not None and self._unread.is_eof():
            self._unread = None
        if not self.in_request and self._unread is None and self._timer is None:
            # The first bytes of a request: its line and headers must all be in within the header timeout.
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.guard.settings.header_timeout, self._header_timeout)
        if self._head is not None:
            data = self._sniff(self._head + data)
            if not data:
                return
        self.inner.data_received(data)

    def begin_request(self) -> None:
        """Called when a request's headers are in and its handler starts."""
        self.in_request = True
        self._stop_timer()

    def end_request(self, request: web.Request) -> None:
        """Called when a request's handler returns: bytes that follow its unread body start the next request."""
        self.in_request = False
        self._unread = None if request.content.is_eof() else request.content

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_timeout(self) -> None:
        self._timer = None
        transport = self.transport
        if self.in_request or transport is None or transport.is_closing():
            return
        guard = self.guard
        guard.metrics.timeouts["header"] += 1
        guard.log_timeout(
            "closed an OTLP/HTTP connection from %s: no complete request headers within %gs",
            _peer(transport),
            guard.settings.header_timeout,
        )
        transport.write(_408)
        transport.close()

    def _sniff(self, head: bytes) -> bytes:
        """The first bytes (``head``, held ones and new) to hand to aiohttp, or b"" while they may be the HTTP/2
        preface (or once they were)."""
        size = min(len(head), len(HTTP2_PREFACE))
        if head[:size] != HTTP2_PREFACE[:size]:
            self._head = None
            return head
        if len(head) < len(HTTP2_PREFACE):
            self._head = head
            return b""
        self._head = None
        self._turn_away_http2()
        return b""

    def _turn_away_http2(self) -> None:
        guard = self.guard
        guard.metrics.grpc_on_http_port += 1
        transport = self.transport
        assert transport is not None, "bytes came in: the connection was made"
        guard.log_http2(
            "a gRPC (HTTP/2) client at %s connected to the OTLP/HTTP port: %s", _peer(transport), guard.hint
        )
        self._stop_timer()
        # The server preface (empty SETTINGS), then GOAWAY "HTTP_1_1_REQUIRED" with the hint as debug data, which
        # gRPC clients put in their error message: the exporter's own log says what to change.
        debug = f"this is an OTLP/HTTP (HTTP/1.1) port: {guard.hint}".encode()
        goaway = (0).to_bytes(4, "big") + (0xD).to_bytes(4, "big") + debug
        transport.write(_frame(4, b"") + _frame(7, goaway))
        transport.close()


def _frame(kind: int, payload: bytes) -> bytes:
    """An HTTP/2 frame on stream 0 without flags."""
    return len(payload).to_bytes(3, "big") + bytes((kind, 0)) + (0).to_bytes(4, "big") + payload


def _peer(transport: asyncio.BaseTransport | None) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"


def _expected_auth(settings: CollectorSettings) -> bytes | None:
    return bearer(settings.token) if settings.token else None


def _traces_handler(receiver: Collector) -> Handler:
    """``POST /v1/traces``: OTLP/HTTP, protobuf or JSON."""
    return _receiver_handler(
        receiver,
        "http",
        {PROTOBUF: Format.OTLP_PROTOBUF, JSON: Format.OTLP_JSON},
        responses.export_response,
        "OTLP/HTTP",
    )


def _lineage_handler(receiver: Collector) -> Handler:
    """``POST /api/v1/lineage``: OpenLineage's HTTP transport (one RunEvent, or an array of them, in JSON), with
    the OTLP route's token, limits, budget, spool-before-acknowledge and error answers (JSON ``code``/``message``)."""
    return _receiver_handler(receiver, "openlineage", {JSON: Format.OPENLINEAGE}, _lineage_response, "OpenLineage")


def _lineage_response(rejected: Rejections, as_json: bool) -> bytes:
    # OpenLineage clients read only the status (any 2xx); an empty object, as OTLP JSON answers a full success.
    return b"{}"


def _receiver_handler(
    receiver: Collector,
    protocol: str,
    kinds: dict[str, Format],
    success: Callable[[Rejections, bool], bytes],
    label: str,
) -> Handler:
    """A POST route taking bodies of the content types of ``kinds`` (content type -> what a body of it is), counted in
    ``requests{protocol=...}``."""
    settings = receiver.settings
    metrics = receiver.metrics
    expected_auth = _expected_auth(settings)
    log_gone = Throttled(_logger, logging.INFO)
    rejection_logs: dict[int, Throttled] = {}

    async def traces(request: web.Request) -> web.Response:
        content_type = request.content_type
        as_json = content_type == JSON or PROTOBUF not in kinds  # a JSON-only route answers in JSON whatever came
        hold: Hold | None = None
        try:
            kind = kinds.get(content_type)
            if kind is None:
                raise _Reject(415, responses.INVALID_ARGUMENT, f"unsupported content type {content_type!r}")
            if expected_auth is not None and not authorized(request.headers.get("Authorization"), expected_auth):
                raise _Reject(401, responses.UNAUTHENTICATED, "missing or wrong bearer token")
            if receiver.backlogged:
                raise _Reject(503, responses.UNAVAILABLE, "the store is backlogged; retry later")
            inflater = _check_headers(request, settings.max_body_bytes)
            # The body's share of the memory budget is taken before a byte of it is read.
            hold = receiver.budget.hold(request.content_length or 0)
            if hold is None:
                raise _Reject(503, responses.UNAVAILABLE, "too many request bodies in flight; retry later", close=True)
            body = await _read_body(request, settings, metrics, inflater, hold)
            try:
                rejected = await receiver.accept(kind, body)
            except UndecodableError as error:
                raise _Reject(400, responses.INVALID_ARGUMENT, str(error)) from None
            except TooLargeToDecodeError as error:
                raise _Reject(413, responses.RESOURCE_EXHAUSTED, str(error)) from None
            except OverBudgetError as error:
                raise _Reject(503, responses.UNAVAILABLE, str(error)) from None
            except OSError as error:
                _logger.error("cannot spool a request: %s", error)
                raise _Reject(503, responses.UNAVAILABLE, "cannot spool the request; retry later") from None
        except _Reject as reject:
            return _rejection(request, reject, metrics, as_json, rejection_logs, protocol)
        except _ClientGone:
            metrics.client_disconnects += 1
            log_gone("%s client %s went away (or broke off its body) before its body was in", label, request.remote)
            return web.Response(status=400)  # nobody reads it: the connection is gone
        finally:
            if hold is not None:
                hold.release()
        metrics.requests[protocol, 200] += 1
        return web.Response(body=success(rejected, as_json), content_type=JSON if as_json else PROTOBUF)

    return traces


def _rejection(
    request: web.Request,
    reject: _Reject,
    metrics: Metrics,
    as_json: bool,
    logs: dict[int, Throttled],
    protocol: str = "http",
) -> web.Response:
    metrics.requests[protocol, reject.status] += 1
    if reject.status not in (503, 408):  # both come in floods when they come: counted, not logged
        # One line per status every 10 s at most: a misconfigured or hostile client must not flood the log.
        log = logs.setdefault(reject.status, Throttled(_logger, logging.INFO, interval=10.0))
        log("HTTP %d from %s on %s: %s", reject.status, request.remote, request.path, reject.message)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if reject.status == 503 else None
    response = web.Response(
        status=reject.status,
        body=responses.status_body(reject.code, reject.message, as_json),
        content_type=JSON if as_json else PROTOBUF,
        headers=headers,
    )
    if reject.close:
        response.force_close()
    return response


def _check_headers(request: web.Request, limit: int) -> zlib._Decompress | None:
    """The gzip inflater the body needs (None for identity); raises _Reject (413, 415) from the headers alone."""
    if request.content_length is not None and request.content_length > limit:
        raise _Reject(413, responses.RESOURCE_EXHAUSTED, f"body of {request.content_length} bytes over {limit}")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise _Reject(415, responses.INVALID_ARGUMENT, f"unsupported content encoding {encoding!r}")
    return zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None


async def _read_body(
    request: web.Request, settings: CollectorSettings, metrics: Metrics, inflater: zlib._Decompress | None, hold: Hold
) -> bytes:
    """The body, decompressed, within the body timeout and the memory budget (``hold`` grows with it).

    Raises _Reject (408, 413, 400, 503) or _ClientGone.
    """
    try:
        receiving = _receive(request, settings.max_body_bytes, metrics, inflater, hold)
        return await asyncio.wait_for(receiving, settings.body_timeout)
    except asyncio.TimeoutError:  # not TimeoutError: Python 3.10's wait_for raises its own
        metrics.timeouts["body"] += 1
        raise _Reject(
            408, responses.DEADLINE_EXCEEDED, f"the body took longer than {settings.body_timeout:g}s", close=True
        ) from None
    except (ConnectionError, ClientPayloadError):
        raise _ClientGone from None


async def _receive(
    request: web.Request, limit: int, metrics: Metrics, inflater: zlib._Decompress | None, hold: Hold
) -> bytes:
    parts: list[bytes] = []
    received = size = 0
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            received += len(chunk)
            if received > limit:
                raise _Reject(413, responses.RESOURCE_EXHAUSTED, f"body over {limit} bytes")
            if inflater is not None:
                try:
                    # At most one byte past the limit: a gzip bomb is cut off after ``limit`` bytes of output.
                    chunk = inflater.decompress(chunk, limit - size + 1)
                except zlib.error as error:
                    raise _Reject(400, responses.INVALID_ARGUMENT, f"corrupt gzip body: {error}") from None
                if inflater.unconsumed_tail or size + len(chunk) > limit:
                    raise _Reject(413, responses.RESOURCE_EXHAUSTED, f"decompressed body over {limit} bytes")
            size += len(chunk)
            if not hold.grow_to(size):  # chunked or inflated past its declared length
                raise _Reject(503, responses.UNAVAILABLE, "too many request bodies in flight; retry later", close=True)
            parts.append(chunk)
    finally:
        metrics.bytes_received += received
    if inflater is not None and not inflater.eof:
        raise _Reject(400, responses.INVALID_ARGUMENT, "truncated gzip body")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _health_handler(receiver: Collector) -> Handler:
    expected_auth = _expected_auth(receiver.settings)

    async def health(request: web.Request) -> web.Response:
        # Readiness: 503 while writes fail or the store is backlogged. Where the tables are, and the cause of a
        # failure, only for those who send the token: the rest learn the state, not the setup.
        detailed = authorized(request.headers.get("Authorization"), expected_auth)
        ready, state = receiver.health(detailed=detailed)
        return web.Response(text=json.dumps(state), content_type=JSON, status=200 if ready else 503)

    return health


async def _live_handler(request: web.Request) -> web.Response:
    """Liveness: answered while the event loop runs, whatever the store does."""
    return web.Response(text='{"status": "ok"}', content_type=JSON)


def _metrics_handler(receiver: Collector) -> Handler:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=receiver.metrics.render(), content_type="text/plain", charset="utf-8")

    return metrics
