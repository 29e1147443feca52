"""The collector's counters, served as Prometheus text on ``GET /metrics`` and through the OpenTelemetry metrics API,
and a rate-limited log line.

Plain integers bumped from the event loop and the writer thread; a torn read of a counter is harmless. Both
expositions read them when scraped or collected (:data:`FAMILIES`), so counting costs an integer increment:

- ``GET /metrics``: ``prometheus_client``'s text format, from a registry of each :class:`Metrics`' own (several
  collectors in one process, as in the tests, keep their counts apart). The names and labels are those of the
  hand-written text it replaced: dashboards keep working.
- OpenTelemetry: observable instruments of the ``otel_datasink`` meter, named ``otel_datasink.collector.<name>``
  (``<name>`` as in the Prometheus name, without prefix and ``_total``), with the same labels as attributes beside
  ``otel.component.*``: the global MeterProvider's pipeline gets them, and its Prometheus exporter names them as
  ``GET /metrics`` does.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from opentelemetry.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from otel_datasink.mapping import Truncation
from otel_datasink.selfmetrics import FUTURE_DATED_ROWS, Instrument, observe

PREFIX = "otel_datasink_collector"
"""The Prometheus name of every metric starts so."""

Samples = Iterable[tuple[tuple[str, ...], float]]
"""A family's samples: (label values, value) pairs."""


@dataclasses.dataclass(eq=False)  # compared (and hashed) by identity: the OpenTelemetry callbacks key on it
class Metrics:
    """Counters since start, and gauges read when rendered."""

    requests: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    """(protocol, status) -> requests answered."""
    bytes_received: int = 0
    """Request bytes as received (compressed where they were)."""
    spans_received: int = 0
    job_spans: int = 0
    non_job_spans: int = 0
    """Spans the profile did not take as job runs: ignored, not written."""
    rejected_spans: int = 0
    """Spans that could not be read (invalid ids, malformed fields), reported to clients as partial success."""
    truncation: Truncation = dataclasses.field(default_factory=Truncation)
    """What the span limits took from the rows (attributes and events dropped, values cut)."""
    openlineage_events: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    """OpenLineage event type (``START`` ... ``OTHER``, ``static``) -> events received in requests answered 200."""
    openlineage_runs: int = 0
    """OpenLineage events that made a ``job_runs`` row (START, COMPLETE, FAIL, ABORT)."""
    rows_written: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    """table -> rows written to the store."""
    future_dated_rows: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    """table -> rows taken with a time too far ahead of the collector's clock (schema.count_future_dated)."""
    files_written: int = 0
    write_errors: int = 0
    spool_replayed_segments: int = 0
    connections_refused: int = 0
    """OTLP/HTTP connections closed at once because ``max_connections`` were open."""
    timeouts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    """phase (``header``, ``body``) -> OTLP/HTTP connections closed because that phase took too long."""
    client_disconnects: int = 0
    """OTLP/HTTP clients that went away while their request's body was being received."""
    grpc_on_http_port: int = 0
    """Connections to the OTLP/HTTP port that opened with the HTTP/2 preface (a gRPC exporter)."""
    spool_errors: Callable[[], int] = dataclasses.field(default=lambda: 0)
    """The spool's failures so far (``Spool.errors``), read when rendered."""
    gauges: dict[str, Callable[[], float]] = dataclasses.field(default_factory=dict)
    """name -> current value (see :data:`GAUGES`), read at render time."""
    registry: CollectorRegistry = dataclasses.field(init=False, repr=False, compare=False)
    """This instance's own Prometheus registry (not the global one)."""

    def __post_init__(self) -> None:
        # auto_describe off: the families are read when scraped, not when registered.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Exposition(self))

    def render(self) -> str:
        """The counters in the Prometheus text exposition format."""
        return generate_latest(self.registry).decode()

    def report_to(self, meter_provider: MeterProvider | None = None) -> None:
        """Reports the counters and gauges through ``meter_provider`` (the global one when None) from now on."""
        observe(self, OTEL_INSTRUMENTS, meter_provider, component_type=COMPONENT_TYPE)


@dataclasses.dataclass(frozen=True)
class Family:
    """One metric of ``GET /metrics``: ``otel_datasink_collector_<name>`` (``_total`` added to a counter's)."""

    name: str
    kind: Literal["counter", "gauge"]
    documentation: str
    labels: tuple[str, ...]
    samples: Callable[[Metrics], Samples]

    def prometheus(self, metrics: Metrics) -> Metric:
        """The family with its current samples."""
        family_type = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        family = family_type(f"{PREFIX}_{self.name}", self.documentation, labels=self.labels)
        for values, value in self.samples(metrics):
            family.add_metric(values, value)
        return family

    def instrument(self) -> Instrument:
        """The OpenTelemetry instrument reporting the same samples."""

        def read(metrics: Metrics) -> Iterable[tuple[float, dict[str, str]]]:
            return [(value, dict(zip(self.labels, values, strict=True))) for values, value in self.samples(metrics)]

        kind: Literal["counter", "gauge"] = "counter" if self.kind == "counter" else "gauge"
        return Instrument(f"otel_datasink.collector.{self.name}", kind, "", self.documentation, read)


def _counter(name: str, documentation: str) -> Family:
    """An unlabelled counter read from the attribute of :class:`Metrics` of the same name."""
    return Family(name, "counter", documentation, (), lambda metrics: [((), getattr(metrics, name))])


def _gauge(name: str, documentation: str) -> Family:
    """A gauge read from ``Metrics.gauges[name]``; no sample until something registered it there."""

    def samples(metrics: Metrics) -> Samples:
        read = metrics.gauges.get(name)
        return [] if read is None else [((), read())]

    return Family(name, "gauge", documentation, (), samples)


FAMILIES: tuple[Family, ...] = (
    Family(
        "requests",
        "counter",
        "Export requests answered, per protocol (http, grpc, openlineage: POST /api/v1/lineage) and status "
        "(HTTP status, gRPC code name).",
        ("protocol", "status"),
        lambda metrics: [
            ((protocol, str(status)), count) for (protocol, status), count in sorted(metrics.requests.items())
        ],
    ),
    _counter("bytes_received", "Request bytes as received (compressed where they were)."),
    _counter("spans_received", "Spans received."),
    _counter("job_spans", "Spans the profile took as job runs."),
    _counter("non_job_spans", "Spans the profile did not take as job runs: ignored, not written."),
    _counter("rejected_spans", "Spans that could not be read, reported to clients as partial success."),
    Family(
        "dropped_attributes",
        "counter",
        "Attributes of spans and their events dropped past max_attributes (the rows say how many).",
        (),
        lambda metrics: [((), metrics.truncation.dropped_attributes)],
    ),
    Family(
        "dropped_events",
        "counter",
        "Events of spans dropped past max_events (the rows say how many).",
        (),
        lambda metrics: [((), metrics.truncation.dropped_events)],
    ),
    Family(
        "truncated_values",
        "counter",
        "Values of the rows' attributes cut to max_attribute_length characters (the rows say how many).",
        (),
        lambda metrics: [((), metrics.truncation.truncated_values)],
    ),
    Family(
        "openlineage_events",
        "counter",
        "OpenLineage events taken, per event type (START, RUNNING, COMPLETE, ABORT, FAIL, OTHER; static: job and "
        "dataset events).",
        ("event_type",),
        lambda metrics: [((kind,), count) for kind, count in sorted(metrics.openlineage_events.items())],
    ),
    _counter("openlineage_runs", "OpenLineage events that made a job_runs row (START, COMPLETE, FAIL, ABORT)."),
    _counter("files_written", "Parquet files written to the store."),
    _counter("write_errors", "Writes to the store that failed (retried from the spool)."),
    _counter("spool_replayed_segments", "Spool segments left by an earlier run and replayed at start."),
    _counter("connections_refused", "OTLP/HTTP connections closed at once because max_connections were open."),
    _counter("client_disconnects", "OTLP/HTTP clients that went away while their request's body was received."),
    _counter("grpc_on_http_port", "Connections to the OTLP/HTTP port that opened as gRPC (HTTP/2)."),
    Family(
        "spool_errors",
        "counter",
        "Failed creations, appends, fsyncs, truncations and closes of spool segments (Spool.errors).",
        (),
        lambda metrics: [((), metrics.spool_errors())],
    ),
    Family(
        "timeouts",
        "counter",
        "OTLP/HTTP connections closed because a phase (header, body) took too long.",
        ("phase",),
        lambda metrics: [((phase,), metrics.timeouts[phase]) for phase in ("header", "body")],
    ),
    Family(
        "rows_written",
        "counter",
        "Rows written to the store, per table.",
        ("table",),
        lambda metrics: [((table,), metrics.rows_written[table]) for table in sorted(metrics.rows_written)],
    ),
    Family(
        "future_dated_rows",
        "counter",
        FUTURE_DATED_ROWS,
        ("table",),
        lambda metrics: [((table,), count) for table, count in sorted(metrics.future_dated_rows.items())],
    ),
    _gauge("backlogged", "1 while max_pending_batches batches or more wait for the store (requests get 503), else 0."),
    _gauge("http_connections", "OTLP/HTTP connections open."),
    _gauge(
        "inflight_bytes",
        "Memory held by requests: their bodies and the estimated size of their decoding (bounded by "
        "max_inflight_bytes).",
    ),
    _gauge("pending_batches", "Rolled batches waiting for the store."),
    _gauge("pending_rows", "Rows of the rolled batches and of the batch being filled."),
    _gauge("spool_bytes", "Bytes of the spool segments whose rows are not yet written (or whose removal failed)."),
    _gauge("spool_segments", "Spool segments whose rows are not yet written (or whose removal failed)."),
    _gauge("spool_unremoved_segments", "Segments whose batch was written but which could not be removed (retried)."),
)
"""Every metric, in the order ``GET /metrics`` lists them (the order of the hand-written text it replaced)."""

COMPONENT_TYPE = "otel_datasink.collector.server.Collector"
"""``otel.component.type`` of the collector's OpenTelemetry observations (the class that owns the counters)."""
OTEL_INSTRUMENTS: tuple[Instrument, ...] = tuple(family.instrument() for family in FAMILIES)


class _Exposition:
    """A ``prometheus_client`` collector: the families of one :class:`Metrics`, read when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        """Each family of :data:`FAMILIES`, then any gauge registered without a family (named as given)."""
        known = {family.name for family in FAMILIES}
        for family in FAMILIES:
            yield family.prometheus(self.metrics)
        for name, read in sorted(self.metrics.gauges.items()):
            if name not in known:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", name.replace("_", " ").capitalize() + ".", value=read())


class Throttled:
    """A log line for an event that clients can cause at any rate: the first at once, then one per ``interval``.

    Each line after the first says how many events it stands for, so the log stays bounded (a flood of
    refused connections writes one line a minute) while /metrics counts every event.
    """

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING, interval: float = 60.0) -> None:
        self.logger = logger
        self.level = level
        self.interval = interval
        self._next = 0.0
        self._since = 0

    def __call__(self, message: str, *args: object) -> None:
        """Counts one event; logs ``message % args`` if the last line is ``interval`` seconds old."""
        self._since += 1
        now = time.monotonic()
        if now < self._next:
            return
        if self._since > 1:
            message += f" ({self._since} such events since the last such message)"
        self.logger.log(self.level, message, *args)
        self._since = 0
        self._next = now + self.interval
