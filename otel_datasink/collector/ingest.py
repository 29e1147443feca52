"""One request body to rows: decode (:func:`otel_datasink.formats.decode`: OTLP or OpenLineage, as the route and
content type it came with say), profile, then `map_records`.

HTTP, gRPC and the spool's replay all go through :class:`Ingest`, so a span maps the same whichever way it came.
OpenLineage events are translated into the span conventions, then mapped by the contract's profile: they are job runs
in the contract's terms already, and a profile written for some tracer's spans has nothing to rewrite in them.

Before a body is decoded, :meth:`Ingest.decoded_size` estimates the memory its decoding takes, so that the collector
counts it in its in-flight budget: a protobuf request of 1 MiB or more from the lengths of its repeated fields (its
spans, events and attributes, within the span limits), a smaller one as 48 times its size, a JSON one from its
punctuation (its objects, arrays, strings and items), before a single object is made. The costs below were measured
(resident memory of the decoding, mapping and conversion to Arrow of requests of each shape: small spans, spans of
128 attributes or events, of unique or repeated values, big values, a resource of 300,000 attributes, JSON spans,
an OpenLineage event of 50,000 schema fields) and rounded up: each estimate was 1.3 to 5 times what decoding took.
A protobuf estimate counts every span as a run, so a request of many spans that are not runs is estimated higher
still (10 times).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Iterator
from typing import TypeVar

from google.protobuf.message import DecodeError

from otel_datasink.collector.counters import Metrics
from otel_datasink.config import SpanLimits
from otel_datasink.formats import Format, decode
from otel_datasink.mapping import DEFAULT_LIMITS, Truncation, map_records, spans_of
from otel_datasink.openlineage import OpenLineageError, summary_of
from otel_datasink.otlp import Rejections, protobuf_shape
from otel_datasink.profiles import Profile, default_profile, job_keys_of
from otel_datasink.schema import JOB_RUNS_TABLE, Rows, count_future_dated

T = TypeVar("T")

_logger = logging.getLogger(__name__)

MAX_SCOPES_LOGGED = 1_000
"""Instrumentation scope names whose unrecognised spans a collector logs, at most (each once)."""


class UndecodableError(ValueError):
    """A body that is not OTLP trace data (or OpenLineage run events) in the format it claims (answered 400, not
    retried)."""


class TooLargeToDecodeError(ValueError):
    """A body whose decoding would take more memory than the whole in-flight budget (answered 413 or
    RESOURCE_EXHAUSTED, as a body over the size limit: it would never fit)."""


class OverBudgetError(Exception):
    """A body whose decoding does not fit in what is left of the in-flight budget (answered 503 with Retry-After, or
    UNAVAILABLE, as a body that does not fit: retried later)."""


_SMALL_PROTOBUF_FACTOR = 48
"""A protobuf body under :data:`_COUNTED_FROM_BYTES` is estimated at this many times its size: the most decoding
took for any shape measured was 34 times (400 KiB of spans of nothing but ids and a one-letter job name), and
counting the spans of a small request costs a tenth of decoding them."""
_COUNTED_FROM_BYTES = 1024 * 1024

# What decoding costs, in bytes (see the module's docstring): of a protobuf request per span (its record, its row,
# and the row in Arrow), per event kept (its dataset_status row) and per attribute kept (decoded, in the row's map,
# in Arrow), and what its parse holds per event and per attribute, kept or not; of a JSON request per object (the
# dict, and a third of a span's record and rows: a run takes three objects at least), array, string, and item after
# a comma (a number, or a slot of a list or dict). Every request also counts twice its size, for the strings decoded
# from it and their copies in Arrow.
_SPAN_BYTES = 1_600
_EVENT_BYTES = 1_000
_ATTRIBUTE_BYTES = 384
_PARSED_EVENT_BYTES = 200
_PARSED_ATTRIBUTE_BYTES = 32
_JSON_OBJECT_BYTES = 750
_JSON_ARRAY_BYTES = 80
_JSON_STRING_BYTES = 60
_JSON_ITEM_BYTES = 32
_TEXT_COPIES = 2


@dataclasses.dataclass
class Ingested:
    """What one request yielded."""

    rows: Rows
    spans: int
    job_spans: int
    rejected: Rejections
    lineage_events: dict[str, int] = dataclasses.field(default_factory=dict)
    """OpenLineage events of the request per event type (``START`` ... ``OTHER``, ``static``)."""
    future_dated: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Table -> rows with a time too far ahead of the collector's clock
    (:func:`~otel_datasink.schema.count_future_dated`): written as received, never a latest state in the views."""
    truncation: Truncation = dataclasses.field(default_factory=Truncation)
    """What the span limits took from the request's rows."""
    runs: int = 0
    """Its ``job_runs`` rows, counted when they are made (the collector frees the rows once they are Arrow)."""
    unrecognised: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Instrumentation scope name -> spans of no producer the profile recognises (counted in ``non_job_spans``)."""

    @property
    def row_count(self) -> int:
        """Rows of both tables."""
        return sum(len(rows) for rows in self.rows.values())


class Ingest:
    """Decodes and maps request bodies with one profile, counting what it sees."""

    def __init__(
        self, profile: Profile, metrics: Metrics, *, namespace_prefix: bool = False, limits: SpanLimits = DEFAULT_LIMITS
    ) -> None:
        self.profile = profile
        self.metrics = metrics
        self.namespace_prefix = namespace_prefix
        """The ``openlineage_namespace_prefix`` option: OpenLineage job names as ``<namespace>/<name>``."""
        self.limits = limits
        # Spans the profile can never take get no record and no mapping (when it says which keys it needs).
        self.job_keys = job_keys_of(profile)
        self.scopes_logged: set[str] = set()
        """Instrumentation scopes whose unrecognised spans were logged: once each, for the process's life."""

    def __call__(self, kind: int, body: bytes, *, count: bool = True) -> Ingested:
        """The rows of a request body of ``kind`` (a :class:`~otel_datasink.formats.Format`: the spool's frame
        kind), counted; raises :class:`UndecodableError`."""
        result = self.decode(kind, body)
        if count:
            self.count(result)
        return result

    def decoded_size(self, kind: int, body: bytes) -> int:
        """An estimate of the memory decoding a body takes, its own bytes aside (see the module's docstring).

        Reads only the body: safe on a worker thread. Raises :class:`UndecodableError` for a protobuf body that
        does not parse.
        """
        if kind != Format.OTLP_PROTOBUF:
            return _json_size(body)
        if len(body) < _COUNTED_FROM_BYTES:
            return _SMALL_PROTOBUF_FACTOR * len(body)
        try:
            shape = protobuf_shape(body, self.limits)
        except DecodeError as error:
            raise UndecodableError(f"undecodable OTLP protobuf: {error}") from None
        return (
            _TEXT_COPIES * len(body)
            + _SPAN_BYTES * shape.spans
            + _EVENT_BYTES * shape.kept_events
            + _ATTRIBUTE_BYTES * shape.kept_attributes
            + _PARSED_EVENT_BYTES * shape.events
            + _PARSED_ATTRIBUTE_BYTES * shape.attributes
        )

    def decode(self, kind: int, body: bytes) -> Ingested:
        """The rows of a request body, not counted: safe on a worker thread (it only reads the profile)."""
        try:
            fmt = Format(kind)
        except ValueError:
            raise UndecodableError(f"unknown body kind {kind}") from None
        try:
            decoded = decode(
                fmt, body, job_keys=self.job_keys, limits=self.limits, namespace_prefix=self.namespace_prefix
            )
        except OpenLineageError as error:
            raise UndecodableError(f"not an OpenLineage run event: {error}") from None
        # OtlpDecodeError, JSONDecodeError and UnicodeDecodeError are ValueErrors.
        except (DecodeError, ValueError, RecursionError) as error:
            raise UndecodableError(f"undecodable {fmt.label}: {error}") from None
        lineage = fmt == Format.OPENLINEAGE
        # OpenLineage events are in the span conventions once translated: a profile for spans has nothing to do.
        profile = default_profile if lineage else self.profile
        truncation = Truncation()
        rows = map_records(
            _consumed(decoded.records), profile, limits=self.limits, counts=truncation, skipped=decoded.skipped
        )
        runs = len(rows[JOB_RUNS_TABLE])
        return Ingested(
            rows,
            decoded.spans,
            # Spans, not rows: a span may make several runs (a retried Prefect task's tries).
            0 if lineage else spans_of(rows[JOB_RUNS_TABLE]),
            decoded.rejected,
            summary_of(decoded.event_types) if lineage else {},
            future_dated=count_future_dated(rows),
            truncation=truncation,
            runs=runs,
            unrecognised=decoded.unrecognised,
        )

    def count(self, result: Ingested) -> None:
        """Adds a request's spans to the counters (on the event loop: the counters are not locked)."""
        metrics = self.metrics
        metrics.spans_received += result.spans
        metrics.job_spans += result.job_spans
        metrics.non_job_spans += result.spans - result.rejected - result.job_spans
        metrics.rejected_spans += result.rejected
        metrics.future_dated_rows.update(result.future_dated)
        metrics.truncation.add(result.truncation)
        if result.lineage_events:
            metrics.openlineage_events.update(result.lineage_events)
            metrics.openlineage_runs += result.runs
        for scope, spans in result.unrecognised.items():
            self.log_unrecognised(scope, spans)

    def log_unrecognised(self, scope: str, spans: int) -> None:
        """Logs, the first time a scope's spans are skipped, that no producer the profile knows recognised them.

        Once per scope name, not per request: a producer sends the same spans all day. The names remembered are
        capped (:data:`MAX_SCOPES_LOGGED`), so that a client inventing scope names cannot grow the set.
        """
        if scope in self.scopes_logged or len(self.scopes_logged) >= MAX_SCOPES_LOGGED:
            return
        self.scopes_logged.add(scope)
        _logger.info(
            "skipped %d span(s) of instrumentation scope %r: no producer recognises them (they carry none of %s), "
            "so they are not runs (counted in non_job_spans; logged once per scope). If they are job runs, name "
            "their producer with --profile or add a mapping file (OTEL_EXPORTER_DATASINK_PROFILE)",
            spans,
            scope,
            _described(self.job_keys),
        )


def _described(job_keys: frozenset[str] | None) -> str:
    # The keys a producer is recognised by, a few of them: enough for a user to see what their spans lack.
    keys = sorted(job_keys or ())
    return ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")


def _json_size(body: bytes) -> int:
    # What json.loads makes, it makes for punctuation, which no escape can hide (a brace or quote inside a string
    # only counts too much): counted in C.
    return (
        _TEXT_COPIES * len(body)
        + _JSON_OBJECT_BYTES * body.count(b"{")
        + _JSON_ARRAY_BYTES * body.count(b"[")
        + _JSON_STRING_BYTES * (body.count(b'"') // 2)
        + _JSON_ITEM_BYTES * body.count(b",")
    )


def _consumed(records: list[T]) -> Iterator[T]:
    """The records, each forgotten once the next is asked for (``records`` is left empty).

    The 150,000 records of a big request would otherwise be freed at once when mapping ends: one cascade of
    deallocations in C that holds the GIL (~0.2 s) and stalls the event loop even when decoding on a thread.
    """
    records.reverse()  # popped from the end: no list shifting
    while records:
        yield records.pop()
