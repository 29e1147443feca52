"""OTLP response bodies: ``ExportTraceServiceResponse`` and ``google.rpc.Status``, in protobuf or JSON."""

from __future__ import annotations

import json

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from otel_datasink.otlp import Rejections

# google.rpc.Code values used by OTLP/HTTP error bodies.
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
UNAUTHENTICATED = 16
UNAVAILABLE = 14


def export_response(rejected: Rejections, as_json: bool) -> bytes:
    """A success body, with ``partial_success`` when spans were rejected (its message: how many, and why)."""
    message = rejected.describe()
    if as_json:
        obj = {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}} if rejected else {}
        return json.dumps(obj).encode()
    if not rejected:
        return b""
    partial = ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
    return ExportTraceServiceResponse(partial_success=partial).SerializeToString()


def status_body(code: int, message: str, as_json: bool) -> bytes:
    """A ``google.rpc.Status`` body (code and message; no details)."""
    if as_json:
        return json.dumps({"code": code, "message": message}).encode()
    # Encoded by hand (field 1 varint, field 2 string): two fields do not warrant a googleapis dependency.
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
