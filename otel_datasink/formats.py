"""What a request body or a replayed line is, and its records: the one decision of the collector and replay.

Three formats come from outside a job: OTLP trace data in protobuf (OTLP/HTTP, gRPC) or in JSON (OTLP/HTTP, the
file exporter's JSON Lines), and OpenLineage run events in JSON (its HTTP and file transports). The way a body came
may say which (the collector's routes: ``POST /v1/traces`` takes OTLP in the content type it names,
``POST /api/v1/lineage`` OpenLineage; replay's ``--format``); where it does not, a JSON document says by its keys
(:func:`format_of`). :func:`decode` reads a body of a format, :func:`decode_document` a parsed JSON document, with
:mod:`otel_datasink.otlp` or :mod:`otel_datasink.openlineage`; the caller maps the records.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import json
from typing import Any

from otel_datasink.config import SpanLimits
from otel_datasink.mapping import DEFAULT_LIMITS, SpanRecord
from otel_datasink.openlineage import records_of
from otel_datasink.otlp import Rejections, SkippedSpans, records_from_json, records_from_protobuf

_OPENLINEAGE_KEYS = ("eventType", "eventTime", "run", "job", "dataset", "schemaURL")
"""Keys of an OpenLineage event (a RunEvent's, a JobEvent's or a DatasetEvent's) that OTLP trace data never has."""
_OTLP_KEYS = ("resourceSpans", "resource_spans")


class Format(enum.IntEnum):
    """What a body or a line is. The values are the collector's spool frame kinds: written in its files, so never
    renumbered."""

    OTLP_PROTOBUF = 1
    """An ``ExportTraceServiceRequest`` (or ``TracesData``) in protobuf."""
    OTLP_JSON = 2
    """An OTLP ``ExportTraceServiceRequest`` (or ``TracesData``) in the OTLP JSON encoding."""
    OPENLINEAGE = 3
    """One OpenLineage event, or an array of them, in JSON."""

    @property
    def label(self) -> str:
        """The format in messages: ``OTLP protobuf``, ``OTLP JSON``, ``OpenLineage JSON``."""
        return _LABELS[self]


_LABELS = {Format.OTLP_PROTOBUF: "OTLP protobuf", Format.OTLP_JSON: "OTLP JSON", Format.OPENLINEAGE: "OpenLineage JSON"}


def format_of(document: Any, claimed: Format | None = None) -> Format:
    """What a parsed JSON document is: ``claimed`` when the way it came says, else told by its keys. It is
    OpenLineage when it is an array (a batch of events) or an object with OpenLineage's keys (``eventType``,
    ``eventTime``, ``run``, ``job`` ...) and no ``resourceSpans``; anything else is read as OTLP JSON."""
    if claimed is not None:
        return claimed
    if isinstance(document, list):
        return Format.OPENLINEAGE
    if not isinstance(document, dict) or any(key in document for key in _OTLP_KEYS):
        return Format.OTLP_JSON
    return Format.OPENLINEAGE if any(key in document for key in _OPENLINEAGE_KEYS) else Format.OTLP_JSON


@dataclasses.dataclass
class Decoded:
    """The records of a body or a line, and what it held."""

    format: Format
    records: list[SpanRecord]
    spans: int = 0
    """OTLP spans read, those rejected included."""
    rejected: Rejections = dataclasses.field(default_factory=Rejections)
    """OTLP spans that cannot be recorded, and why."""
    event_types: list[str] = dataclasses.field(default_factory=list)
    """The type of each OpenLineage event read (:func:`otel_datasink.openlineage.event_type_of`), row or not."""
    unrecognised: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Instrumentation scope name -> OTLP spans carrying none of the profile's job keys, left out: of no producer it
    recognises (:func:`~otel_datasink.otlp.records_from_protobuf`, :func:`~otel_datasink.otlp.records_from_json`)."""
    skipped: SkippedSpans = dataclasses.field(default_factory=SkippedSpans)
    """The OTLP spans left out, as links of the enclosing-job-span walk (``map_records(skipped=...)``)."""


def decode(
    fmt: Format,
    body: bytes,
    *,
    job_keys: frozenset[str] | None = None,
    limits: SpanLimits = DEFAULT_LIMITS,
    namespace_prefix: bool = False,
) -> Decoded:
    """The records of a body of ``fmt``. ``job_keys`` and ``limits`` are those of
    :func:`~otel_datasink.otlp.records_from_protobuf`, ``namespace_prefix`` the ``openlineage_namespace_prefix``
    option.

    Raises :class:`~otel_datasink.openlineage.OpenLineageError` for JSON that is not OpenLineage run data, and a
    ``google.protobuf`` ``DecodeError``, or a ValueError (a JSONDecodeError, an
    :class:`~otel_datasink.otlp.OtlpDecodeError`), or a RecursionError for any other body that is not ``fmt``.
    """
    if fmt == Format.OTLP_PROTOBUF:
        unrecognised: collections.Counter[str] = collections.Counter()
        skipped = SkippedSpans()
        records, rejected, spans = records_from_protobuf(
            body, job_keys=job_keys, limits=limits, unrecognised=unrecognised, skipped=skipped
        )
        return Decoded(fmt, records, spans, rejected, unrecognised=unrecognised, skipped=skipped)
    # An empty OTLP/HTTP JSON body is an empty request; OpenLineage has no empty event.
    document = {} if fmt == Format.OTLP_JSON and not body.strip() else json.loads(body)
    return decode_document(fmt, document, namespace_prefix=namespace_prefix, job_keys=job_keys)


def decode_document(
    fmt: Format, document: Any, *, namespace_prefix: bool = False, job_keys: frozenset[str] | None = None
) -> Decoded:
    """The records of a parsed JSON document of ``fmt`` (OTLP JSON or OpenLineage); raises as :func:`decode`.
    ``job_keys`` leaves out the OTLP spans carrying none of them (:func:`~otel_datasink.otlp.records_from_json`)."""
    if fmt == Format.OPENLINEAGE:
        records, types = records_of(document, namespace_prefix=namespace_prefix)
        return Decoded(fmt, records, event_types=types)
    if fmt == Format.OTLP_JSON:
        unrecognised: collections.Counter[str] = collections.Counter()
        skipped = SkippedSpans()
        records, rejected = records_from_json(document, job_keys=job_keys, unrecognised=unrecognised, skipped=skipped)
        spans = len(records) + rejected + sum(unrecognised.values())
        return Decoded(fmt, records, spans, rejected, unrecognised=unrecognised, skipped=skipped)
    raise ValueError(f"{fmt.label} is not read from a JSON document")
