"""OTLP/gRPC receiver (grpcio's asyncio server): ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

The method is registered with a generic handler that hands over the request's bytes undecoded: the same bytes
are decoded once by :mod:`otel_datasink.otlp` and spooled as they are, never serialised again. Statuses match
the HTTP receiver: INVALID_ARGUMENT undecodable, UNAUTHENTICATED missing or wrong bearer token,
RESOURCE_EXHAUSTED over the message limit (grpcio's own check, after decompression), UNAVAILABLE while the store
is backlogged (retried by the exporters).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from otel_datasink.collector import responses
from otel_datasink.collector.ingest import UndecodableError
from otel_datasink.collector.spool import KIND_PROTOBUF

if TYPE_CHECKING:  # server.py imports this module
    from otel_datasink.collector.server import Collector

_logger = logging.getLogger(__name__)

SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name


def build_server(receiver: Collector, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """A gRPC server of a :class:`otel_datasink.collector.server.Collector`, and the port it bound."""
    limit = receiver.settings.max_body_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 0)],
        compression=None,
    )
    handler = grpc.unary_unary_rpc_method_handler(
        _export_handler(receiver), request_deserializer=None, response_serializer=None
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
    bound = server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen for OTLP/gRPC on {host}:{port}")
    return server, bound


def _export_handler(receiver: Collector) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
    settings = receiver.settings
    metrics = receiver.metrics
    expected_auth = f"Bearer {settings.token}".encode() if settings.token else None

    async def export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        code = grpc.StatusCode.OK
        try:
            if expected_auth is not None:
                auth = dict(context.invocation_metadata() or ()).get("authorization", "")
                if not hmac.compare_digest(str(auth).encode(), expected_auth):
                    code = grpc.StatusCode.UNAUTHENTICATED
                    await context.abort(code, "missing or wrong bearer token")
            if receiver.backlogged:
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, "the store is backlogged; retry later")
            metrics.bytes_received += len(body)
            try:
                rejected = await receiver.accept(KIND_PROTOBUF, body)
            except UndecodableError as error:
                code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, str(error))
            except OSError as error:
                _logger.error("cannot spool a request: %s", error)
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, "cannot spool the request; retry later")
            return responses.export_response(rejected, as_json=False)
        finally:
            metrics.requests["grpc", code.name] += 1

    return export
