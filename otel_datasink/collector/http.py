"""OTLP/HTTP receiver (aiohttp): ``POST /v1/traces``, ``GET /health``, ``GET /metrics``.

Statuses follow the OTLP/HTTP specification: 200 with an ``ExportTraceServiceResponse`` (``partial_success``
when spans were rejected), 400 undecodable, 401 missing or wrong bearer token, 413 over the body limit
(compressed or decompressed: gzip is inflated in a stream with a cap, so a bomb costs at most the limit),
415 unsupported content type or encoding, 503 with ``Retry-After`` while the store is backlogged. Error
bodies are ``google.rpc.Status``; every body is in the request's content type.
"""

from __future__ import annotations

import hmac
import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from otel_datasink.collector import responses
from otel_datasink.collector.ingest import UndecodableError
from otel_datasink.collector.spool import KIND_JSON, KIND_PROTOBUF

if TYPE_CHECKING:  # server.py imports this module
    from otel_datasink.collector.metrics import Metrics
    from otel_datasink.collector.server import Collector

_logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
RETRY_AFTER_SECONDS = 5
_CHUNK = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.Response]]


class _Reject(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def build_app(receiver: Collector) -> web.Application:
    """The aiohttp application of a :class:`otel_datasink.collector.server.Collector`."""
    app = web.Application(client_max_size=receiver.settings.max_body_bytes)
    app.router.add_post("/v1/traces", _traces_handler(receiver))
    app.router.add_get("/health", _health_handler(receiver))
    app.router.add_get("/metrics", _metrics_handler(receiver))
    return app


def _traces_handler(receiver: Collector) -> Handler:
    settings = receiver.settings
    metrics = receiver.metrics
    expected_auth = f"Bearer {settings.token}".encode() if settings.token else None

    async def traces(request: web.Request) -> web.Response:
        content_type = request.content_type
        as_json = content_type == JSON
        try:
            if content_type not in (PROTOBUF, JSON):
                raise _Reject(415, responses.INVALID_ARGUMENT, f"unsupported content type {content_type!r}")
            if expected_auth is not None and not hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), expected_auth
            ):
                raise _Reject(401, responses.UNAUTHENTICATED, "missing or wrong bearer token")
            if receiver.backlogged:
                raise _Reject(503, responses.UNAVAILABLE, "the store is backlogged; retry later")
            body = await _read_body(request, settings.max_body_bytes, metrics)
            kind = KIND_JSON if as_json else KIND_PROTOBUF
            try:
                rejected = await receiver.accept(kind, body)
            except UndecodableError as error:
                raise _Reject(400, responses.INVALID_ARGUMENT, str(error)) from None
            except OSError as error:
                _logger.error("cannot spool a request: %s", error)
                raise _Reject(503, responses.UNAVAILABLE, "cannot spool the request; retry later") from None
        except _Reject as reject:
            metrics.requests["http", reject.status] += 1
            if reject.status != 503:
                _logger.info("HTTP %d from %s: %s", reject.status, request.remote, reject.message)
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if reject.status == 503 else None
            return web.Response(
                status=reject.status,
                body=responses.status_body(reject.code, reject.message, as_json),
                content_type=JSON if as_json else PROTOBUF,
                headers=headers,
            )
        metrics.requests["http", 200] += 1
        return web.Response(
            body=responses.export_response(rejected, as_json), content_type=JSON if as_json else PROTOBUF
        )

    return traces


async def _read_body(request: web.Request, limit: int, metrics: Metrics) -> bytes:
    """The body, decompressed; raises _Reject (413, 415, 400) beyond ``limit`` bytes either way or when corrupt."""
    if request.content_length is not None and request.content_length > limit:
        raise _Reject(413, responses.RESOURCE_EXHAUSTED, f"body of {request.content_length} bytes over {limit}")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise _Reject(415, responses.INVALID_ARGUMENT, f"unsupported content encoding {encoding!r}")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    parts: list[bytes] = []
    received = size = 0
    async for chunk in request.content.iter_chunked(_CHUNK):
        received += len(chunk)
        if received > limit:
            metrics.bytes_received += received
            raise _Reject(413, responses.RESOURCE_EXHAUSTED, f"body over {limit} bytes")
        if inflater is not None:
            try:
                # At most one byte past the limit: a gzip bomb is cut off after ``limit`` bytes of output.
                chunk = inflater.decompress(chunk, limit - size + 1)
            except zlib.error as error:
                metrics.bytes_received += received
                raise _Reject(400, responses.INVALID_ARGUMENT, f"corrupt gzip body: {error}") from None
            if inflater.unconsumed_tail or size + len(chunk) > limit:
                metrics.bytes_received += received
                raise _Reject(413, responses.RESOURCE_EXHAUSTED, f"decompressed body over {limit} bytes")
        size += len(chunk)
        parts.append(chunk)
    metrics.bytes_received += received
    if inflater is not None and not inflater.eof:
        raise _Reject(400, responses.INVALID_ARGUMENT, "truncated gzip body")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _health_handler(receiver: Collector) -> Handler:
    async def health(request: web.Request) -> web.Response:
        state = {
            "status": "backlogged" if receiver.backlogged else "ok",
            "spool_segments": receiver.spool.depth,
            "location": receiver.options.location,
        }
        return web.Response(text=json.dumps(state), content_type=JSON)

    return health


def _metrics_handler(receiver: Collector) -> Handler:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=receiver.metrics.render(), content_type="text/plain", charset="utf-8")

    return metrics
