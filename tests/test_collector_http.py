"""The collector's OTLP/HTTP receiver, driven by the real OTLP/HTTP exporter and by raw HTTP requests."""

from __future__ import annotations

import copy
import fcntl
import gzip
import json
import logging
import time

import duckdb
import pyarrow.parquet as pq
import pytest
from collectors import TOKEN, get, gzip_bomb, metric_samples, post, rows, start_collector
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_payloads import SPEC_EXAMPLE, good_request, job_spans, otlp_json

from otel_datasink.collector import batcher, server
from otel_datasink.collector.counters import Metrics
from otel_datasink.collector.ingest import Ingest
from otel_datasink.collector.server import BackgroundCollector
from otel_datasink.collector.settings import CollectorSettings
from otel_datasink.collector.spool import SpoolLockedError
from otel_datasink.config import Options
from otel_datasink.formats import Format
from otel_datasink.local import connect
from otel_datasink.profiles import default_profile, load_profile


def job_runs_files(location: str) -> list[tuple[str]]:
    """The Parquet files of the job_runs table."""
    return duckdb.sql(
        f"select distinct filename from read_parquet('{location}/job_runs/*/*.parquet', filename=true)"
    ).fetchall()


@pytest.fixture
def collector(local_location, tmp_path):
    running = start_collector(local_location, tmp_path / "spool", token=TOKEN, max_body_bytes=256 * 1024)
    yield running
    running.stop()


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_otlp_http_exporter_spans_become_rows_and_non_job_spans_are_ignored(local_location, tmp_path, compression):
    with start_collector(local_location, tmp_path / "spool") as collector:
        exporter = OTLPSpanExporter(
            endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces", compression=compression
        )
        assert exporter.export(job_spans(3)).name == "SUCCESS"
        runs = rows(local_location, expect=3)
        updates = rows(local_location, "dataset_status", expect=3)
        status, metrics = get(collector.http_port, "/metrics")

    assert sorted(r["job_name"] for r in runs) == ["job_0", "job_1", "job_2"]
    assert {r["status"] for r in runs} == {"SUCCESS"} and {r["service_name"] for r in runs} == {"spark-etl"}
    assert [u["dataset"] for u in updates] == ["orders"] * 3
    assert status == 200
    samples = metric_samples(metrics)
    assert samples["otel_datasink_collector_job_spans_total"] == 3
    assert samples["otel_datasink_collector_non_job_spans_total"] == 1
    assert samples['otel_datasink_collector_rows_written_total{table="job_runs"}'] == 3


def test_requests_are_batched_across_requests_into_one_file_per_table(local_location, tmp_path):
    with start_collector(local_location, tmp_path / "spool", flush_age=60.0, flush_rows=20) as collector:
        for _ in range(5):  # 5 requests x 2 job spans x (1 run + 1 update) = 20 rows: it rolls on rows, not age
            assert post(collector.http_port, good_request(2))[0] == 200
        runs = rows(local_location, expect=10)

    assert len(runs) == 10
    assert len(job_runs_files(local_location)) == 1


def test_requests_decoded_and_converted_off_the_loop_keep_their_rows_order_in_one_file(
    local_location, tmp_path, monkeypatch
):
    # Every request on the decoding thread (offload_bytes=1), its 5 runs converted in chunks of 3 and 2 rows.
    monkeypatch.setattr(batcher, "_CONVERT_CHUNK_ROWS", 3)
    settings = {"flush_age": 60.0, "flush_rows": 40, "offload_bytes": 1}
    with start_collector(local_location, tmp_path / "spool", **settings) as collector:
        for _ in range(4):  # 4 requests x 5 job spans x (1 run + 1 update) = 40 rows: one batch
            assert post(collector.http_port, good_request(5))[0] == 200
        rows(local_location, expect=20)
        metrics = get(collector.http_port, "/metrics")[1]
        (file,) = job_runs_files(local_location)

    # In the order sent, request after request and chunk after chunk.
    assert pq.read_table(file[0]).column("job_name").to_pylist() == [f"job_{i}" for i in range(5)] * 4
    assert metric_samples(metrics)["otel_datasink_collector_job_spans_total"] == 20


def test_convert_splits_each_table_into_chunks_in_order(monkeypatch):
    monkeypatch.setattr(batcher, "_CONVERT_CHUNK_ROWS", 3)
    rows = Ingest(default_profile, Metrics()).decode(Format.OTLP_PROTOBUF, good_request(7)).rows

    parts = batcher.Batch.convert(rows)

    assert [(table, part.num_rows) for (table, _), part in parts] == [("job_runs", n) for n in (3, 3, 1)] + [
        ("dataset_status", n) for n in (3, 3, 1)
    ]
    names = [name for (table, _), part in parts if table == "job_runs" for name in part.column("job_name").to_pylist()]
    assert names == [f"job_{i}" for i in range(7)]


def test_release_empties_the_rows_a_chunk_at_a_time():
    rows = {"job_runs": [{"n": i} for i in range(12_001)], "dataset_status": []}
    server._release(rows)
    assert rows == {"job_runs": [], "dataset_status": []}


def test_a_batch_rolls_on_spooled_bytes_before_its_age(local_location, tmp_path):
    with start_collector(local_location, tmp_path / "spool", flush_age=60.0, flush_bytes=1) as collector:
        for _ in range(2):
            assert post(collector.http_port, good_request(1))[0] == 200
        runs = rows(local_location, expect=2)
        files = job_runs_files(local_location)

    assert len(runs) == 2
    assert len(files) == 2  # one batch per request: each request's bytes reached the limit


def test_spec_shaped_otlp_json_gzipped_gives_a_row_and_a_json_answer(collector, local_location):
    body = copy.deepcopy(SPEC_EXAMPLE)
    status, headers, answer = post(
        collector.http_port,
        gzip.compress(json.dumps(body).encode()),
        "application/json",
        **{"Content-Encoding": "gzip", "Authorization": f"Bearer {TOKEN}"},
    )
    (run,) = rows(local_location)

    assert (status, headers["Content-Type"].split(";")[0], json.loads(answer)) == (200, "application/json", {})
    assert (run["job_name"], run["status"], run["attempt"], run["error_message"]) == ("spark_job", "FAILED", 3, "boom")
    assert run["trace_id"] == "5b8efff798038103d269b633813fc60c"


def test_empty_request_is_answered_200_and_writes_nothing(collector, local_location):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert post(collector.http_port, b"", **auth)[0] == 200
    assert post(collector.http_port, b"{}", "application/json", **auth)[0] == 200
    assert rows(local_location, timeout=0.5) == []


def test_spans_with_invalid_ids_get_a_partial_success(collector, local_location):
    request = ExportTraceServiceRequest.FromString(good_request(2))
    request.resource_spans[0].scope_spans[0].spans[0].span_id = b""
    status, _, answer = post(collector.http_port, request.SerializeToString(), Authorization=f"Bearer {TOKEN}")
    json_body = copy.deepcopy(SPEC_EXAMPLE)
    json_body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "zz"
    json_status, _, json_answer = post(
        collector.http_port, json.dumps(json_body).encode(), "application/json", Authorization=f"Bearer {TOKEN}"
    )

    assert status == 200
    assert ExportTraceServiceResponse.FromString(answer).partial_success.rejected_spans == 1
    assert json_status == 200 and json.loads(json_answer)["partialSuccess"]["rejectedSpans"] == "1"
    assert len(rows(local_location, expect=1)) == 1


BAD_REQUESTS = {
    "garbage protobuf": (400, b"\xff\xff\xff\xff not protobuf", "application/x-protobuf", {}),
    "garbage json": (400, b"{not json", "application/json", {}),
    "truncated gzip": (400, gzip.compress(b"x" * 1000)[:-12], "application/x-protobuf", {"Content-Encoding": "gzip"}),
    "gzip bomb": (413, None, "application/x-protobuf", {"Content-Encoding": "gzip"}),
    "oversized body": (413, b"\0" * (300 * 1024), "application/x-protobuf", {}),
    "wrong content type": (415, b"hello", "text/plain", {}),
    "unknown encoding": (415, b"hello", "application/x-protobuf", {"Content-Encoding": "br"}),
    "missing token": (401, b"", "application/x-protobuf", {"Authorization": None}),
    "wrong token": (401, b"", "application/x-protobuf", {"Authorization": "Bearer nope"}),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_their_status_and_the_next_good_request_is_served(collector, local_location, case):
    status, body, content_type, headers = BAD_REQUESTS[case]
    headers = {k: v for k, v in {"Authorization": f"Bearer {TOKEN}", **headers}.items() if v is not None}
    body = gzip_bomb() if body is None else body  # made before the clock starts: compressing takes a while
    started = time.monotonic()
    got_status, got_headers, answer = post(collector.http_port, body, content_type, **headers)
    elapsed = time.monotonic() - started

    assert got_status == status
    if content_type == "application/json":
        assert json.loads(answer)["message"]
    elif got_headers.get("Content-Type", "").startswith("application/x-protobuf"):
        assert status_pb2.Status.FromString(answer).message
    assert elapsed < 2.0  # a bomb is cut off at the limit, not inflated whole
    assert post(collector.http_port, good_request(1), Authorization=f"Bearer {TOKEN}")[0] == 200
    assert len(rows(local_location, expect=1)) == 1


def test_a_backlogged_store_gets_503_with_retry_after_and_health_is_not_ready(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("the location is a file, so every write fails")
    running = start_collector(str(blocked), tmp_path / "spool", flush_rows=1, max_pending_batches=1)
    try:
        first = post(running.http_port, good_request(1))
        second = post(running.http_port, good_request(1))
        health_status, health = get(running.http_port, "/health")
    finally:
        assert running.stop(timeout=0.5) is False  # the row stays in the spool for the next start

    assert first[0] == 200
    assert second[0] == 503 and int(second[1]["Retry-After"]) > 0
    # Not ready (503): backlogged, or degraded once the writer thread has seen its write fail.
    assert health_status == 503 and json.loads(health)["status"] in ("backlogged", "degraded")
    assert list((tmp_path / "spool").glob("*.seg"))


def test_spans_sent_to_a_collector_on_s3_are_in_the_views_after_it_stops(s3_location, moto_server, tmp_path):
    options = Options.resolve(s3_location, s3_endpoint_url=moto_server.endpoint_url)
    settings = CollectorSettings(http=("127.0.0.1", 0), grpc=None, spool_dir=tmp_path / "spool", flush_age=60.0)
    with BackgroundCollector(options, settings) as collector:  # stopping flushes the open batch
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces")
        assert exporter.export(job_spans(2)).name == "SUCCESS"

    con = connect(s3_location, s3_endpoint_url=moto_server.endpoint_url)
    latest = con.sql("select job_name, status, service_name from job_runs_latest order by job_name").fetchall()
    assert latest == [("job_0", "SUCCESS", "spark-etl"), ("job_1", "SUCCESS", "spark-etl")]


def test_a_second_collector_on_the_same_spool_is_refused(local_location, tmp_path):
    with start_collector(local_location, tmp_path / "spool"):
        with pytest.raises(SpoolLockedError, match="in use"):
            start_collector(local_location, tmp_path / "spool")


def test_a_spool_whose_lock_file_a_collector_of_an_earlier_version_holds_is_refused(local_location, tmp_path):
    (tmp_path / "spool").mkdir()
    with open(tmp_path / "spool" / "lock", "a+") as earlier:  # all that collectors before the folder lock lock
        fcntl.flock(earlier, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SpoolLockedError, match="in use"):
            start_collector(local_location, tmp_path / "spool")


def test_a_request_spanning_two_days_is_written_to_two_dt_partitions(collector, local_location):
    body = copy.deepcopy(SPEC_EXAMPLE)
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    next_day = copy.deepcopy(spans[0])
    next_day.update(spanId="EEE19B7EC3C1B175", startTimeUnixNano="1544799060000000000")
    next_day.update(endTimeUnixNano="1544799061000000000", events=[])
    spans.append(next_day)

    status, _, _ = post(
        collector.http_port, json.dumps(body).encode(), "application/json", Authorization=f"Bearer {TOKEN}"
    )
    runs = rows(local_location, expect=2)

    assert status == 200
    assert sorted((str(r["dt"]), r["span_id"]) for r in runs) == [
        ("2018-12-13", "eee19b7ec3c1b174"),
        ("2018-12-14", "eee19b7ec3c1b175"),
    ]


def _spans_of_scopes(*scopes: str):
    """A contract job span, then two spans of each of ``scopes``, producers no profile recognises."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("etl").start_span("ingest", attributes={"job.name": "ingest"}).end()
    for scope in scopes:
        for name in ("flow", "task"):
            provider.get_tracer(scope).start_span(name, attributes={f"{scope}.run.type": name}).end()
    provider.shutdown()
    return encode_spans(memory.get_finished_spans())


@pytest.mark.parametrize("fmt", [Format.OTLP_PROTOBUF, Format.OTLP_JSON])
def test_spans_of_an_unknown_producer_are_counted_and_logged_once_per_instrumentation_scope(fmt, caplog):
    ingest = Ingest(load_profile(None), Metrics())
    request = _spans_of_scopes("luigi", "dagster")
    body = request.SerializeToString() if fmt == Format.OTLP_PROTOBUF else json.dumps(otlp_json(request)).encode()
    with caplog.at_level(logging.INFO, logger="otel_datasink.collector.ingest"):
        for _ in range(3):
            result = ingest(fmt, body)
            assert (result.spans, result.job_spans, dict(result.unrecognised)) == (5, 1, {"luigi": 2, "dagster": 2})
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2 and "scope 'luigi'" in lines[0] and "scope 'dagster'" in lines[1]
    assert all("--profile" in line for line in lines)
    assert (ingest.metrics.spans_received, ingest.metrics.job_spans, ingest.metrics.non_job_spans) == (15, 3, 12)
