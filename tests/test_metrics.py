"""Self-metrics: the processor's and exporter's counts through the OpenTelemetry metrics API (a real SDK
MeterProvider read by an InMemoryMetricReader), and the collector's ``GET /metrics`` from prometheus_client."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from collectors import get, metric_samples, post, rows, start_collector
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_payloads import good_request
from prometheus_client.parser import text_string_to_metric_families

from otel_datasink.collector import spool as spool_module
from otel_datasink.collector.counters import Metrics
from otel_datasink.exporter import DatasinkSpanExporter
from otel_datasink.processor import DatasinkSpanProcessor

WAIT_MILLIS = 30_000
"""A flush's bound: generous, only a broken behaviour waits it out."""

Points = dict[tuple[str, frozenset], float]
"""(instrument name, attributes) -> value of every data point a reader collected."""


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(reader) -> Iterator[MeterProvider]:
    """A MeterProvider read by ``reader``, passed to the components (the global one is left alone: one per process)."""
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


def collect(reader: InMemoryMetricReader, component: str | None = None) -> Points:
    """Every data point of the ``otel_datasink`` meter, keyed without ``otel.component.*``, of ``component`` only
    when given (its ``otel.component.name``)."""
    points: Points = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            assert scope_metrics.scope.name == "otel_datasink"
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    attributes = dict(point.attributes or {})
                    name = attributes.pop("otel.component.name")
                    attributes.pop("otel.component.type")
                    if component is None or name == component:
                        key = (metric.name, frozenset(attributes.items()))
                        points[key] = points.get(key, 0) + point.value
    return points


def component_names(reader: InMemoryMetricReader, instrument: str) -> set[str]:
    """The ``otel.component.name`` of every component reporting ``instrument``."""
    data = reader.get_metrics_data()
    return {
        str(point.attributes["otel.component.name"])
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == instrument
        for point in metric.data.data_points
    }


def run_job_spans(provider: TracerProvider, count: int) -> None:
    """``count`` job spans (each a start and an end for the processor), one after the other."""
    tracer = provider.get_tracer("job")
    for index in range(count):
        with tracer.start_as_current_span("job", attributes={"job.name": f"job{index}", "dataset.name": "d"}):
            pass


def processed(error_type: str | None = None) -> tuple[str, frozenset]:
    """The key of ``otel.sdk.processor.span.processed`` with that ``error.type`` (None: without, the mapped ones)."""
    attributes = frozenset() if error_type is None else frozenset({("error.type", error_type)})
    return "otel.sdk.processor.span.processed", attributes


# --- the processor ----------------------------------------------------------------------------------------------


def test_spans_dropped_by_a_full_queue_are_processed_with_error_type_queue_full(local_location, reader, meter_provider):
    processor = DatasinkSpanProcessor(
        local_location, max_queue_size=2, max_export_batch_size=1, meter_provider=meter_provider
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    # The worker stalls in the profile, as behind a slow mapping: the job's burst overflows the queue of 2.
    mapping, entered, stalled = processor._profile, threading.Event(), threading.Event()

    def stalling(record):
        entered.set()
        stalled.wait(WAIT_MILLIS / 1000)
        return mapping(record)

    processor._profile = stalling
    run_job_spans(provider, 1)
    # The burst only once the worker is stalled: then it pops nothing meanwhile, and every drop is the queue's.
    assert entered.wait(WAIT_MILLIS / 1000)
    run_job_spans(provider, 19)
    assert collect(reader)[("otel.sdk.processor.span.queue.capacity", frozenset())] == 2
    stalled.set()
    assert processor.force_flush(WAIT_MILLIS)

    points = collect(reader)
    assert processor.dropped_spans > 0
    assert points[processed("queue_full")] == processor.dropped_spans
    # Each span's start and end is processed once: mapped, or dropped.
    assert points[processed()] + points[processed("queue_full")] == 2 * 20
    assert points[("otel.sdk.processor.span.queue.size", frozenset())] == 0
    assert points[("otel_datasink.processor.rows_written", frozenset({("table", "job_runs")}))] > 0
    provider.shutdown()


def test_a_profile_that_raises_drops_its_spans_with_the_exception_type(local_location, reader, meter_provider):
    processor = DatasinkSpanProcessor(local_location, meter_provider=meter_provider)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    processor._profile = lambda record: 1 / 0  # a user's mapping code with a bug
    run_job_spans(provider, 1)
    processor.force_flush(WAIT_MILLIS)

    points = collect(reader)
    assert processor.dropped_spans == 2
    assert points[processed("ZeroDivisionError")] == 2
    assert processed("queue_full") not in points  # a cause that never happened is no series
    provider.shutdown()


def test_rows_dropped_while_the_store_is_dead_and_failed_writes_are_counted(tmp_path, reader, meter_provider):
    (tmp_path / "file").write_text("")  # a location under a file: every write fails
    processor = DatasinkSpanProcessor(
        str(tmp_path / "file" / "datasink"),
        max_queue_size=2,
        max_export_batch_size=1,
        timeout=0.5,
        meter_provider=meter_provider,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    for _ in range(3):
        run_job_spans(provider, 1)
        assert processor.force_flush(WAIT_MILLIS) is False

    points = collect(reader)
    assert processor.dropped_rows > 0 and processor.write_errors >= 3
    assert points[("otel_datasink.processor.rows_dropped", frozenset({("error.type", "queue_full")}))] == (
        processor.dropped_rows
    )
    assert points[("otel_datasink.processor.write_errors", frozenset())] == processor.write_errors
    assert processor.dropped_spans == 0 and processed("queue_full") not in points
    processor.shutdown(timeout_millis=100)  # its rows are given up on: the store stays dead
    provider.shutdown()


def test_two_processors_on_one_provider_report_apart(tmp_path, reader, meter_provider):
    provider = TracerProvider()
    first = DatasinkSpanProcessor(str(tmp_path / "a"), meter_provider=meter_provider)
    second = DatasinkSpanProcessor(str(tmp_path / "b"), meter_provider=meter_provider)
    provider.add_span_processor(first)
    run_job_spans(provider, 3)
    assert first.force_flush(WAIT_MILLIS)

    names = component_names(reader, "otel.sdk.processor.span.processed")
    assert len(names) == 2  # the second one's callbacks were not lost to the first one's instrument
    counts = sorted(collect(reader, name)[processed()] for name in names)
    assert counts == [0, 6]
    provider.shutdown()
    second.shutdown()


# --- the exporter -----------------------------------------------------------------------------------------------


def test_exporter_counts_exported_spans_and_those_after_shutdown(local_location, reader, meter_provider):
    finished = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(finished))
    run_job_spans(provider, 3)
    spans = finished.get_finished_spans()
    exporter = DatasinkSpanExporter(local_location, meter_provider=meter_provider)

    assert exporter.export(spans).name == "SUCCESS"
    exporter.shutdown()
    assert exporter.export(spans[:1]).name == "FAILURE"

    points = collect(reader)
    assert points[("otel.sdk.exporter.span.exported", frozenset())] == 3
    assert points[("otel.sdk.exporter.span.exported", frozenset({("error.type", "already_shutdown")}))] == 1


def test_processor_and_exporter_count_rows_dated_too_far_ahead_per_table(local_location, reader, meter_provider):
    """A span ending (and updating its dataset) in 2554, and one ending now: one row of each table counted."""
    processor = DatasinkSpanProcessor(local_location, meter_provider=meter_provider)
    finished = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(finished))
    tracer = provider.get_tracer("job")
    for end_time in (2**64 - 1, None):
        span = tracer.start_span("job", attributes={"job.name": "job", "dataset.name": "d"})
        span.end(end_time=end_time)
    assert processor.force_flush(WAIT_MILLIS)
    exporter = DatasinkSpanExporter(local_location, meter_provider=meter_provider)
    assert exporter.export(finished.get_finished_spans()).name == "SUCCESS"

    for component in ("processor", "exporter"):
        name = f"otel_datasink.{component}.future_dated_rows"
        counted = {attributes: value for (metric, attributes), value in collect(reader).items() if metric == name}
        assert counted == {frozenset({("table", "job_runs")}): 1, frozenset({("table", "dataset_status")}): 1}
    provider.shutdown()


def test_processor_and_exporter_count_what_the_span_limits_take(local_location, reader, meter_provider, read_tables):
    limits = {"max_attributes": 3, "max_events": 1, "max_attribute_length": 5}
    finished = InMemorySpanExporter()
    processor = DatasinkSpanProcessor(local_location, meter_provider=meter_provider, schedule_delay=0.1, **limits)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(finished))
    attributes = {"job.name": "wide", "a": "long value", "b": 1, "c": 2, "d": 3}
    with provider.get_tracer("job").start_as_current_span("job", attributes=attributes) as span:
        span.add_event("first")
        span.add_event("second")
    assert provider.force_flush(WAIT_MILLIS)
    exporter = DatasinkSpanExporter(local_location, meter_provider=meter_provider, **limits)
    assert exporter.export(finished.get_finished_spans()).name == "SUCCESS"

    points = collect(reader)
    ended = [row for row in read_tables(local_location).rows("job_runs") if row["status"] != "STARTED"]
    # Each of the 3 rows (the processor's start and end, the exporter's end): c and d dropped, "long value" cut.
    assert points[("otel_datasink.processor.dropped_attributes", frozenset())] == 2 * 2
    assert points[("otel_datasink.processor.truncated_values", frozenset())] == 2
    assert points[("otel_datasink.processor.dropped_events", frozenset())] == 1  # the start row has no events
    assert points[("otel_datasink.exporter.dropped_attributes", frozenset())] == 2
    assert points[("otel_datasink.exporter.dropped_events", frozenset())] == 1
    assert points[("otel_datasink.exporter.truncated_values", frozenset())] == 1
    assert [row["attributes"] for row in ended] == 2 * [
        {
            "a": "long ",
            "b": "1",
            "otel_datasink.dropped_attributes_count": "2",
            "otel_datasink.dropped_events_count": "1",
            "otel_datasink.truncated_values_count": "1",
        }
    ]
    provider.shutdown()


# --- the collector ----------------------------------------------------------------------------------------------

BEFORE = {
    # Every metric of the hand-written text that prometheus_client replaced, and the OpenLineage counters added
    # since: name (without a counter's _total, as the parser gives it) -> type.
    "otel_datasink_collector_requests": "counter",
    "otel_datasink_collector_bytes_received": "counter",
    "otel_datasink_collector_spans_received": "counter",
    "otel_datasink_collector_job_spans": "counter",
    "otel_datasink_collector_non_job_spans": "counter",
    "otel_datasink_collector_rejected_spans": "counter",
    "otel_datasink_collector_files_written": "counter",
    "otel_datasink_collector_write_errors": "counter",
    "otel_datasink_collector_spool_replayed_segments": "counter",
    "otel_datasink_collector_connections_refused": "counter",
    "otel_datasink_collector_client_disconnects": "counter",
    "otel_datasink_collector_grpc_on_http_port": "counter",
    "otel_datasink_collector_timeouts": "counter",
    "otel_datasink_collector_rows_written": "counter",
    "otel_datasink_collector_openlineage_events": "counter",
    "otel_datasink_collector_openlineage_runs": "counter",
    "otel_datasink_collector_backlogged": "gauge",
    "otel_datasink_collector_http_connections": "gauge",
    "otel_datasink_collector_inflight_bytes": "gauge",
    "otel_datasink_collector_pending_batches": "gauge",
    "otel_datasink_collector_pending_rows": "gauge",
    "otel_datasink_collector_spool_bytes": "gauge",
    "otel_datasink_collector_spool_segments": "gauge",
    "otel_datasink_collector_spool_unremoved_segments": "gauge",
}
SINCE = {
    # Added with prometheus_client: name -> type.
    "otel_datasink_collector_spool_errors": "counter",
    "otel_datasink_collector_future_dated_rows": "counter",
    # What the span limits took from the rows.
    "otel_datasink_collector_dropped_attributes": "counter",
    "otel_datasink_collector_dropped_events": "counter",
    "otel_datasink_collector_truncated_values": "counter",
}


def scrape(port: int) -> dict[str, float]:
    """``GET /metrics`` parsed: sample (name and labels as written) -> value."""
    status, text = get(port, "/metrics")
    assert status == 200
    return metric_samples(text)


def test_metrics_text_has_every_metric_it_had_and_those_added(local_location, tmp_path):
    with start_collector(local_location, tmp_path / "spool") as collector:
        assert post(collector.http_port, good_request(2))[0] == 200
        rows(local_location, expect=2)
        _, text = get(collector.http_port, "/metrics")
        samples = scrape(collector.http_port)

    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert families == {**BEFORE, **SINCE}
    # The names as exposed: prometheus_client adds _total to counters once, as the hand-written text did.
    assert "# TYPE otel_datasink_collector_requests_total counter" in text
    assert "# TYPE otel_datasink_collector_inflight_bytes gauge" in text
    assert samples['otel_datasink_collector_requests_total{protocol="http",status="200"}'] == 1
    assert samples['otel_datasink_collector_rows_written_total{table="job_runs"}'] == 2
    assert samples['otel_datasink_collector_timeouts_total{phase="header"}'] == 0
    assert samples["otel_datasink_collector_spool_errors_total"] == 0
    assert samples["otel_datasink_collector_job_spans_total"] == 2


def test_two_collectors_in_one_process_keep_their_counts_apart(tmp_path, monkeypatch):
    armed = True
    write_all = spool_module._write_all

    def full_disk(fd: int, data: bytes) -> None:
        if armed:
            raise OSError(28, "No space left on device")
        write_all(fd, data)

    monkeypatch.setattr(spool_module, "_write_all", full_disk)
    with (
        start_collector(str(tmp_path / "a"), tmp_path / "spool_a") as first,
        start_collector(str(tmp_path / "b"), tmp_path / "spool_b") as second,
    ):
        assert post(first.http_port, good_request(1))[0] == 503  # its spool cannot take the request
        armed = False
        assert post(second.http_port, good_request(1))[0] == 200
        rows(str(tmp_path / "b"))
        one, two = scrape(first.http_port), scrape(second.http_port)

    assert one["otel_datasink_collector_spool_errors_total"] >= 1
    assert two["otel_datasink_collector_spool_errors_total"] == 0
    assert one['otel_datasink_collector_requests_total{protocol="http",status="503"}'] == 1
    assert 'otel_datasink_collector_requests_total{protocol="http",status="200"}' not in one
    assert two['otel_datasink_collector_requests_total{protocol="http",status="200"}'] == 1
    assert 'otel_datasink_collector_requests_total{protocol="http",status="503"}' not in two
    assert two['otel_datasink_collector_rows_written_total{table="job_runs"}'] == 1
    assert one.get('otel_datasink_collector_rows_written_total{table="job_runs"}', 0) == 0


def test_collector_counters_reach_a_meter_provider_per_collector(reader, meter_provider):
    first, second = Metrics(), Metrics()
    first.report_to(meter_provider)
    second.report_to(meter_provider)
    first.requests["http", 200] += 2
    first.rows_written["job_runs"] += 5
    second.write_errors += 1
    second.spool_errors = lambda: 3
    first.gauges["inflight_bytes"] = lambda: 42

    names = sorted(component_names(reader, "otel_datasink.collector.write_errors"))
    assert len(names) == 2
    one, two = (collect(reader, name) for name in names)
    assert one[("otel_datasink.collector.requests", frozenset({("protocol", "http"), ("status", "200")}))] == 2
    assert one[("otel_datasink.collector.rows_written", frozenset({("table", "job_runs")}))] == 5
    assert one[("otel_datasink.collector.inflight_bytes", frozenset())] == 42
    assert one[("otel_datasink.collector.write_errors", frozenset())] == 0
    assert two[("otel_datasink.collector.write_errors", frozenset())] == 1
    assert two[("otel_datasink.collector.spool_errors", frozenset())] == 3
    assert ("otel_datasink.collector.inflight_bytes", frozenset()) not in two  # a gauge no one registered


def test_collector_metric_names_are_not_in_the_global_registry(local_location, tmp_path):
    from prometheus_client import REGISTRY

    with start_collector(local_location, tmp_path / "spool"):
        assert not any(name.startswith("otel_datasink") for name in REGISTRY._names_to_collectors)


def test_render_of_a_fresh_metrics_parses():
    families = {family.name for family in text_string_to_metric_families(Metrics().render())}
    assert families == {*BEFORE, *SINCE}
