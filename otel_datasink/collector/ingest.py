"""One request body to rows: decode (:mod:`otel_datasink.otlp`, or :mod:`otel_datasink.openlineage`), profile,
then `map_records`.

HTTP, gRPC and the spool's replay all go through :class:`Ingest`, so a span maps the same whichever way it came.
OpenLineage events are translated into the span conventions, then mapped by the default profile: they are job runs
in the contract's terms already, and a profile written for some tracer's spans has nothing to rewrite in them.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterator
from typing import TypeVar

from google.protobuf.message import DecodeError

from otel_datasink.collector.metrics import Metrics
from otel_datasink.collector.spool import KIND_JSON, KIND_OPENLINEAGE, KIND_PROTOBUF
from otel_datasink.mapping import map_records
from otel_datasink.openlineage import OpenLineageError, records_of, summary_of
from otel_datasink.otlp import OtlpDecodeError, Rejections, records_from_json, records_from_protobuf
from otel_datasink.profiles import Profile, default_profile, job_keys_of
from otel_datasink.schema import JOB_RUNS_TABLE, Rows, count_future_dated

T = TypeVar("T")


class UndecodableError(ValueError):
    """A body that is not OTLP trace data (or OpenLineage run events) in the format it claims (answered 400, not
    retried)."""


@dataclasses.dataclass
class Result:
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

    @property
    def row_count(self) -> int:
        """Rows of both tables."""
        return sum(len(rows) for rows in self.rows.values())


class Ingest:
    """Decodes and maps request bodies with one profile, counting what it sees."""

    def __init__(self, profile: Profile, metrics: Metrics, *, namespace_prefix: bool = False) -> None:
        self.profile = profile
        self.metrics = metrics
        self.namespace_prefix = namespace_prefix
        """The ``openlineage_namespace_prefix`` option: OpenLineage job names as ``<namespace>/<name>``."""
        # Spans the profile can never take get no record and no mapping (when it says which keys it needs).
        self.job_keys = job_keys_of(profile)

    def __call__(self, kind: int, body: bytes, *, count: bool = True) -> Result:
        """The rows of a request body of ``kind`` (spool.KIND_*), counted; raises :class:`UndecodableError`."""
        result = self.decode(kind, body)
        if count:
            self.count(result)
        return result

    def decode(self, kind: int, body: bytes) -> Result:
        """The rows of a request body, not counted: safe on a worker thread (it only reads the profile)."""
        if kind == KIND_OPENLINEAGE:
            return self._decode_openlineage(body)
        try:
            if kind == KIND_PROTOBUF:
                records, rejected, spans = records_from_protobuf(body, job_keys=self.job_keys)
            elif kind == KIND_JSON:
                records, rejected = records_from_json(json.loads(body) if body.strip() else {})
                spans = len(records) + rejected
            else:
                raise UndecodableError(f"unknown body kind {kind}")
        except (DecodeError, OtlpDecodeError, ValueError, RecursionError) as error:
            raise UndecodableError(f"undecodable OTLP {'JSON' if kind == KIND_JSON else 'protobuf'}: {error}") from None
        rows = map_records(_consumed(records), self.profile)
        return Result(rows, spans, len(rows[JOB_RUNS_TABLE]), rejected, future_dated=count_future_dated(rows))

    def _decode_openlineage(self, body: bytes) -> Result:
        try:
            document = json.loads(body)
            records, types = records_of(document, namespace_prefix=self.namespace_prefix)
        except OpenLineageError as error:
            raise UndecodableError(f"not an OpenLineage run event: {error}") from None
        except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise UndecodableError(f"undecodable OpenLineage JSON: {error}") from None
        rows = map_records(_consumed(records), default_profile)
        return Result(rows, 0, 0, Rejections(), summary_of(types), count_future_dated(rows))

    def count(self, result: Result) -> None:
        """Adds a request's spans to the counters (on the event loop: the counters are not locked)."""
        metrics = self.metrics
        metrics.spans_received += result.spans
        metrics.job_spans += result.job_spans
        metrics.non_job_spans += result.spans - result.rejected - result.job_spans
        metrics.rejected_spans += result.rejected
        metrics.future_dated_rows.update(result.future_dated)
        if result.lineage_events:
            metrics.openlineage_events.update(result.lineage_events)
            metrics.openlineage_runs += len(result.rows[JOB_RUNS_TABLE])


def _consumed(records: list[T]) -> Iterator[T]:
    """The records, each forgotten once the next is asked for (``records`` is left empty).

    The 150,000 records of a big request would otherwise be freed at once when mapping ends: one cascade of
    deallocations in C that holds the GIL (~0.2 s) and stalls the event loop even when decoding on a thread.
    """
    records.reverse()  # popped from the end: no list shifting
    while records:
        yield records.pop()
