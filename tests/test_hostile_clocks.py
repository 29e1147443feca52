"""Hostile clocks: a time centuries ahead of the receiver's clock cannot pin a run's or a dataset's state, and an OTLP
span without an end time is rejected for that reason, not made a hung run (issue 16, findings 1 and 6).

Through the real parts: ``otel-datasink collector`` as a process fed by the OTLP/HTTP exporter, raw OTLP (protobuf
and JSON) and OpenLineage events over HTTP; ``otel-datasink replay``; the views read with DuckDB
(:func:`otel_datasink.local.connect`). Each scenario has a control (the same runs with sane times) that the
skewed one must answer like.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from collectors import CollectorProcess, get, metric_samples, post, post_lineage
from job_spans import HOUR_NS, MINUTE_NS, now_ns
from openlineage.client.event_v2 import RunState
from openlineage.client.uuid import generate_new_uuid
from openlineage_events import event
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from otlp_payloads import otlp_json

from otel_datasink.cli import main
from otel_datasink.config import Options
from otel_datasink.local import connect
from otel_datasink.writer import Writer

LAST_OTLP_NS = 2**64 - 1
"""The latest time OTLP can carry (fixed64): 2554-07-21."""
YEAR_9999 = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)
SERVICE = "skewed-clock"


def sdk_spans(emit: Callable[[Tracer], None]) -> list[ReadableSpan]:
    """The ended spans ``emit`` makes with a tracer of service ``SERVICE``."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emit(provider.get_tracer("test"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def run(tracer: Tracer, job: str, start_ns: int, end_ns: int, *, failed: bool = False, updates=()) -> None:
    """One job span from ``start_ns`` to ``end_ns``; ``updates``: (time, attributes) of its dataset.update events."""
    span = tracer.start_span(job, start_time=start_ns, attributes={"job.name": job})
    for time_ns, attributes in updates:
        span.add_event("dataset.update", attributes, timestamp=time_ns)
    if failed:
        span.set_status(Status(StatusCode.ERROR, f"{job} broke"))
    span.end(end_time=end_ns)


def skewed_runs(tracer: Tracer) -> None:
    """A success ending in 2554 then three real failures (and a control job with the same failures); datasets
    updated three hours ago with a 60-minute SLA: one watermarked 9999-12-31, one with a second update in 2554, and
    a control."""
    n = now_ns()
    run(tracer, "skewed_job", n - 5 * HOUR_NS, LAST_OTLP_NS)
    for job in ("skewed_job", "control_job"):
        for hours in (3, 2, 1):
            run(tracer, job, n - hours * HOUR_NS - 5 * MINUTE_NS, n - hours * HOUR_NS, failed=True)
    sla = {"dataset.freshness_sla_minutes": 60}
    three_hours_ago = n - 3 * HOUR_NS
    for dataset, updates in (
        ("watermarked_ds", [(three_hours_ago, {"dataset.watermark": YEAR_9999.isoformat()})]),
        ("future_ds", [(three_hours_ago, {}), (LAST_OTLP_NS, {})]),
        ("control_ds", [(three_hours_ago, {})]),
    ):
        events = [(time_ns, {"dataset.name": dataset, **sla, **more}) for time_ns, more in updates]
        run(tracer, f"load_{dataset}", three_hours_ago - MINUTE_NS, three_hours_ago, updates=events)


def query(location: str, sql: str) -> list[dict]:
    with connect(location) as con:
        relation = con.sql(sql)
        return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def streaks(location: str) -> dict[str, int]:
    return {r["job_name"]: r["current_streak"] for r in query(location, "SELECT * FROM recurring_failures")}


def datasets(location: str) -> dict[str, dict]:
    return {r["dataset"]: r for r in query(location, "SELECT * FROM dataset_status_latest")}


def partitions(location: str) -> set[str]:
    return {folder.name for table in ("job_runs", "dataset_status") for folder in Path(location, table).glob("dt=*")}


def tomorrow() -> str:
    return "dt=" + (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).strftime("%Y-%m-%d")


def assert_skewed_runs_answer_as_the_controls(location: str) -> None:
    found = streaks(location)
    assert (found["skewed_job"], found["control_job"]) == (3, 3)
    found = datasets(location)
    for dataset in ("watermarked_ds", "future_ds", "control_ds"):
        assert found[dataset]["is_stale"], dataset
        assert found[dataset]["data_as_of"] == found["control_ds"]["data_as_of"], dataset
        assert 179 <= found[dataset]["freshness_minutes"] <= 240, dataset
    assert query(location, "SELECT * FROM hung_runs") == []


@pytest.fixture
def collector(local_location, tmp_path):
    process = CollectorProcess(local_location, tmp_path / "spool", tmp_path / "log", "--flush-age", "3600")
    yield process
    if process.process.poll() is None:
        process.kill()


def stop(collector: CollectorProcess) -> None:
    """SIGTERM (the open batch is written); the collector exits 0."""
    assert collector.stop() == 0, collector.log.read_text()


def test_a_success_dated_2554_and_a_watermark_of_9999_do_not_silence_alerts_from_the_collector(
    collector, local_location
):
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{collector.port}/v1/traces", timeout=10)
    assert exporter.export(sdk_spans(skewed_runs)).name == "SUCCESS"
    exporter.shutdown()
    samples = metric_samples(get(collector.port, "/metrics")[1])
    stop(collector)

    assert_skewed_runs_answer_as_the_controls(local_location)
    # Counted, and kept as received: listed for the operator, filed within the views' windows.
    assert samples['otel_datasink_collector_future_dated_rows_total{table="job_runs"}'] == 1
    assert samples['otel_datasink_collector_future_dated_rows_total{table="dataset_status"}'] == 2
    ahead = query(
        local_location,
        "SELECT table_name, job_name, dataset, time_column, service_name, ahead_by_minutes, reported_time "
        "FROM future_dated_rows ORDER BY table_name, job_name",
    )
    assert [(r["table_name"], r["job_name"], r["dataset"], r["time_column"]) for r in ahead] == [
        ("dataset_status", "load_future_ds", "future_ds", "updated_at"),
        ("dataset_status", "load_watermarked_ds", "watermarked_ds", "watermark"),
        ("job_runs", "skewed_job", None, "end_time"),
    ]
    assert {r["service_name"] for r in ahead} == {SERVICE}
    assert all(r["ahead_by_minutes"] > 200 * 365 * 24 * 60 for r in ahead)
    assert ahead[2]["reported_time"].year == 2554
    assert max(partitions(local_location)) <= tomorrow()


def test_otlp_json_with_times_up_to_fixed64_gives_the_same_answers(collector, local_location):
    body = json.dumps(otlp_json(encode_spans(sdk_spans(skewed_runs)))).encode()
    status, _, answer = post(collector.port, body, "application/json")
    stop(collector)

    assert (status, json.loads(answer)) == (200, {})
    assert_skewed_runs_answer_as_the_controls(local_location)


def openlineage_events(n: datetime.datetime) -> list[dict]:
    """A run completed 9999-12-31 (its output dataset updated then), then three failed runs of the same job; a run
    whose nominal time is 2200-01-01 (one of 9999 is past int64 nanoseconds: kept as text, no logical_date)."""
    events = [event(RunState.COMPLETE, YEAR_9999, str(generate_new_uuid()), job="ol_job", rows=5)]
    for hours in (3, 2, 1):
        at = n - datetime.timedelta(hours=hours)
        events.append(event(RunState.FAIL, at, str(generate_new_uuid()), job="ol_job", error="boom", outputs=False))
    nominal = event(RunState.COMPLETE, n, str(generate_new_uuid()), job="ol_nominal", outputs=False)
    nominal["run"]["facets"]["nominalTime"]["nominalStartTime"] = "2200-01-01T00:00:00Z"
    return [*events, nominal]


def test_openlineage_event_times_of_9999_and_nominal_times_ahead_are_never_a_latest_state(collector, local_location):
    for one in openlineage_events(datetime.datetime.now(datetime.timezone.utc)):
        assert post_lineage(collector.port, json.dumps(one).encode())[0] == 200
    samples = metric_samples(get(collector.port, "/metrics")[1])
    stop(collector)

    assert streaks(local_location) == {"ol_job": 3}
    assert "ol_nominal" not in {r["job_name"] for r in query(local_location, "SELECT * FROM job_runs_latest")}
    ahead = query(local_location, "SELECT table_name, time_column FROM future_dated_rows ORDER BY ALL")
    assert ahead == [
        {"table_name": "dataset_status", "time_column": "updated_at"},
        {"table_name": "job_runs", "time_column": "end_time"},
        {"table_name": "job_runs", "time_column": "logical_date"},
    ]
    assert samples['otel_datasink_collector_future_dated_rows_total{table="job_runs"}'] == 2
    assert max(partitions(local_location)) <= tomorrow()


def test_replay_of_skewed_spans_and_events_answers_as_the_live_path(local_location, tmp_path, capsys):
    spans = otlp_json(encode_spans(sdk_spans(skewed_runs)))
    events = openlineage_events(datetime.datetime.now(datetime.timezone.utc))
    lines = [json.dumps(spans), *map(json.dumps, events)]
    replayed = tmp_path / "traces.jsonl"
    replayed.write_text("\n".join(lines) + "\n")

    assert main(["replay", "--location", local_location, "--no-progress", str(replayed)]) == 0
    out = capsys.readouterr().out

    assert_skewed_runs_answer_as_the_controls(local_location)
    assert streaks(local_location)["ol_job"] == 3
    assert "6 row(s) dated more than 1 day(s) ahead of now" in out
    assert max(partitions(local_location)) <= tomorrow()


def test_a_partition_far_ahead_of_today_is_outside_every_view(local_location):
    """Rows a receiver with a broken clock filed in 2554 (their ingested_at as far ahead): no view reads them."""
    n = now_ns() // 1_000_000
    far = LAST_OTLP_NS // 1_000_000
    success = {"job_name": "job", "run_id": "far", "status": "SUCCESS", "event_time": far, "end_time": far}
    failures = [
        {"job_name": "job", "run_id": f"r{i}", "status": "FAILED", "event_time": n - i, "end_time": n - i}
        for i in (1, 2, 3)
    ]
    update = {"dataset": "ds", "status": "SUCCESS", "updated_at": far, "event_time": far, "freshness_sla_minutes": 60}
    old_update = {**update, "updated_at": n - 3 * 3_600_000, "event_time": n - 3 * 3_600_000}
    writer = Writer(Options.resolve(local_location))
    writer.write({"job_runs": [{**success, "ingested_at": far}], "dataset_status": [{**update, "ingested_at": far}]})
    writer.write({"job_runs": [{**row, "ingested_at": n} for row in failures], "dataset_status": [old_update]})
    assert "dt=2554-07-21" in partitions(local_location)

    assert streaks(local_location) == {"job": 3}
    assert datasets(local_location)["ds"]["is_stale"]
    for view in ("job_runs_latest", "future_dated_rows"):
        assert "far" not in {r["run_id"] for r in query(local_location, f"SELECT run_id FROM {view}")}, view


def test_an_otlp_span_without_an_end_time_is_rejected_for_that_reason_not_made_a_hung_run(collector, local_location):
    n = now_ns()

    def started_and_finished(tracer: Tracer) -> None:
        run(tracer, "never_ends", n - 2 * HOUR_NS, n - HOUR_NS)
        run(tracer, "finished", n - 2 * HOUR_NS, n - HOUR_NS)

    request = encode_spans(sdk_spans(started_and_finished))
    request.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = 0
    status, _, answer = post(collector.port, request.SerializeToString())
    partial = ExportTraceServiceResponse.FromString(answer).partial_success

    body = otlp_json(encode_spans(sdk_spans(started_and_finished)))
    json_spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    json_spans[0]["endTimeUnixNano"] = "0"
    json_spans[1]["startTimeUnixNano"] = "yesterday"
    json_status, _, json_answer = post(collector.port, json.dumps(body).encode(), "application/json")
    samples = metric_samples(get(collector.port, "/metrics")[1])
    stop(collector)

    assert (status, partial.rejected_spans, partial.error_message) == (200, 1, "1 span(s) without an end time")
    assert json_status == 200
    assert json.loads(json_answer)["partialSuccess"] == {
        "rejectedSpans": "2",
        "errorMessage": "1 span(s) without an end time; 1 span(s) with a time that is not a fixed64 count of "
        "nanoseconds",
    }
    assert samples["otel_datasink_collector_rejected_spans_total"] == 3
    assert query(local_location, "SELECT job_name, status FROM job_runs") == [
        {"job_name": "finished", "status": "SUCCESS"}
    ]
    assert query(local_location, "SELECT * FROM hung_runs") == []


def test_replay_skips_a_span_without_an_end_time_and_says_why(local_location, tmp_path, capsys):
    n = now_ns()
    body = otlp_json(encode_spans(sdk_spans(lambda tracer: run(tracer, "never_ends", n - 2 * HOUR_NS, n))))
    del body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"]
    replayed = tmp_path / "traces.jsonl"
    replayed.write_text(json.dumps(body) + "\n")

    assert main(["replay", "--location", local_location, "--no-progress", str(replayed)]) == 0
    out = capsys.readouterr().out

    assert "; 1 span(s) without an end time skipped;" in out
    assert not os.path.exists(os.path.join(local_location, "job_runs"))
