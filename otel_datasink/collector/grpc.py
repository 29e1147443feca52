"""OTLP/gRPC receiver (grpcio's asyncio server): ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

The method is registered with a generic handler that hands over the request's bytes undecoded: the same bytes
are decoded once by :mod:`otel_datasink.otlp` and spooled as they are, never serialised again. Statuses match
the HTTP receiver: INVALID_ARGUMENT undecodable, UNAUTHENTICATED missing or wrong bearer token,
RESOURCE_EXHAUSTED over the message limit (grpcio's own check, after decompression) or when decoding the message
would take more memory than the whole in-flight budget, UNAVAILABLE while the store is backlogged or the budget has
no room for the message or its decoding (retried by the exporters).

Nothing is read of a call before it is admitted: the token is checked on the call's metadata by an interceptor,
and Export is registered as a client-streaming method, so that grpcio hands over the call before its message and
the handler reads the message only once the call holds ``max_body_bytes`` of the memory budget (given back down
to the message's size once it is read). What grpcio buffers of a call's message ahead of that is bounded by
a fixed HTTP/2 window (:data:`STREAM_WINDOW_BYTES`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from otel_datasink.collector import responses
from otel_datasink.collector.ingest import OverBudgetError, TooLargeToDecodeError, UndecodableError
from otel_datasink.formats import Format
from otel_datasink.tokens import authorized, bearer

if TYPE_CHECKING:  # server.py imports this module
    from otel_datasink.collector.counters import Metrics
    from otel_datasink.collector.server import Collector

_logger = logging.getLogger(__name__)

SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
MAX_CALLS = 256
"""Calls grpcio takes at once (more get RESOURCE_EXHAUSTED): admitted ones hold the budget, the rest wait unread."""
STREAM_WINDOW_BYTES = 1024 * 1024
"""The HTTP/2 window of each call, fixed: what a client can make grpcio buffer of a message nobody reads yet.

With grpcio's default BDP probing the window grows towards the link's bandwidth-delay product, several MiB a
call, so 30 refused calls of 15 MiB held 200 MiB for a moment. 1 MiB is still 50 MiB/s a call at 20 ms RTT."""
ADMISSION_WAIT_SECONDS = 2.0
"""How long a request may wait for a share of the memory budget before UNAVAILABLE (or 503): a call for its
message's, before the message is read; any request for its decoding's (:meth:`Collector.accept`)."""


def build_server(receiver: Collector, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """A gRPC server of a :class:`otel_datasink.collector.server.Collector`, and the port it bound."""
    settings = receiver.settings
    interceptors = [_TokenCheck(settings.token, receiver.metrics)] if settings.token else []
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES),
            ("grpc.max_connection_idle_ms", int(settings.idle_timeout * 1000)),
        ],
        maximum_concurrent_rpcs=MAX_CALLS,
        compression=None,
    )
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_unary_rpc_method_handler(
        _export_handler(receiver), request_deserializer=None, response_serializer=None
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
    bound = server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen for OTLP/gRPC on {host}:{port}")
    return server, bound


class _TokenCheck(grpc.aio.ServerInterceptor):
    """Refuses calls without the bearer token on their metadata, before their message is read."""

    def __init__(self, token: str, metrics: Metrics) -> None:
        self._expected = bearer(token)
        self._metrics = metrics

        async def refuse(requests: object, context: grpc.aio.ServicerContext) -> bytes:
            # Client-streaming, so grpcio calls it without reading the message first.
            metrics.requests["grpc", grpc.StatusCode.UNAUTHENTICATED.name] += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        # Any message types: the refusal stands in for whichever method was called.
        self._refuse: grpc.RpcMethodHandler[Any, Any] = grpc.stream_unary_rpc_method_handler(refuse)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization" and isinstance(value, str) and authorized(value, self._expected):
                return await continuation(handler_call_details)
        return self._refuse


def _export_handler(receiver: Collector) -> Callable[[object, grpc.aio.ServicerContext], Awaitable[bytes]]:
    settings = receiver.settings
    metrics = receiver.metrics

    async def export(requests: object, context: grpc.aio.ServicerContext) -> bytes:
        code = grpc.StatusCode.OK
        hold = None
        try:
            if receiver.backlogged:
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, "the store is backlogged; retry later")
            # The message's size is known only once it is read: hold room for the largest one first.
            hold = await receiver.budget.wait_hold(settings.max_body_bytes, ADMISSION_WAIT_SECONDS)
            if hold is None:
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, "too many request bodies in flight; retry later")
            body = await context.read()
            if body is grpc.aio.EOF:  # grpcio refused the message (over the limit: it answered so) or none came
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
                await context.abort(code, f"no request message of at most {settings.max_body_bytes} bytes")
            hold.shrink_to(len(body))
            metrics.bytes_received += len(body)
            try:
                rejected = await receiver.accept(Format.OTLP_PROTOBUF, body)
            except UndecodableError as error:
                code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, str(error))
            except TooLargeToDecodeError as error:
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
                await context.abort(code, str(error))
            except OverBudgetError as error:
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, str(error))
            except OSError as error:
                _logger.error("cannot spool a request: %s", error)
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, "cannot spool the request; retry later")
            return responses.export_response(rejected, as_json=False)
        finally:
            if hold is not None:
                hold.release()
            metrics.requests["grpc", code.name] += 1

    return export
