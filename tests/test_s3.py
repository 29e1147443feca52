"""The same round trip on S3: a moto server on 127.0.0.1, s3fs pointed at it by option or by environment."""

from __future__ import annotations

import re

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.util._importlib_metadata import entry_points

from otel_datasink import DatasinkSpanExporter, DatasinkSpanProcessor

KEY = re.compile(r"datasink/(job_runs|dataset_status)/dt=\d{4}-\d{2}-\d{2}/\d{8}T\d{15}Z-[0-9a-f]{12}\.parquet")


def run_jobs(provider: TracerProvider) -> None:
    """A successful batch run with two datasets, a failed run, and two streaming micro-batches."""
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("ingest", attributes={"job.name": "ingest", "dataset.name": "orders"}) as span:
        span.set_attribute("job.records_processed", 10)
        span.add_event("dataset.update", {"dataset.name": "orders", "dataset.records_written": 10})
        span.add_event("dataset.update", {"dataset.name": "order_lines", "dataset.records_written": 30})
    try:
        with tracer.start_as_current_span("load", attributes={"job.name": "load"}):
            raise ConnectionResetError("warehouse went away")
    except ConnectionResetError:
        pass
    for _ in range(2):
        with tracer.start_as_current_span("batch", attributes={"job.name": "clicks", "job.type": "streaming"}):
            pass
    provider.shutdown()


def keys(moto_server, location: str) -> list[str]:
    bucket = location.removeprefix("s3://").split("/")[0]
    listing = moto_server.client().list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def check_tables(read_tables, location: str, endpoint_url: str, *, started: bool) -> None:
    tables = read_tables(location, endpoint_url=endpoint_url)
    runs = tables.rows("job_runs")
    terminal = sorted((row["job_name"], row["job_type"], row["status"]) for row in runs if row["status"] != "STARTED")
    assert terminal == [
        ("clicks", "streaming", "SUCCESS"),
        ("clicks", "streaming", "SUCCESS"),
        ("ingest", "batch", "SUCCESS"),
        ("load", "batch", "FAILED"),
    ]
    assert sum(row["status"] == "STARTED" for row in runs) == (4 if started else 0)
    [failed] = [row for row in runs if row["status"] == "FAILED"]
    assert (failed["error_type"], failed["service_name"]) == ("ConnectionResetError", "s3-job")
    assert "warehouse went away" in failed["error_message"]
    updates = sorted((row["dataset"], row["records_written"]) for row in tables.rows("dataset_status"))
    assert updates == [("order_lines", 30), ("orders", 10)]


def test_processor_writes_both_tables_to_s3_with_an_endpoint_option(moto_server, s3_location, read_tables):
    provider = TracerProvider(resource=Resource.create({"service.name": "s3-job"}))
    provider.add_span_processor(
        DatasinkSpanProcessor(s3_location, s3_endpoint_url=moto_server.endpoint_url, schedule_delay=0.1, timeout=5)
    )
    run_jobs(provider)

    check_tables(read_tables, s3_location, moto_server.endpoint_url, started=True)
    written = keys(moto_server, s3_location)
    assert written and all(KEY.fullmatch(key) for key in written), written


def test_exporter_without_arguments_reads_location_and_endpoint_from_the_environment(
    moto_server, s3_location, read_tables, monkeypatch
):
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_LOCATION", s3_location)
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL", moto_server.endpoint_url)
    provider = TracerProvider(resource=Resource.create({"service.name": "s3-job"}))
    provider.add_span_processor(BatchSpanProcessor(DatasinkSpanExporter(), schedule_delay_millis=100))
    run_jobs(provider)

    check_tables(read_tables, s3_location, moto_server.endpoint_url, started=False)
    assert all(KEY.fullmatch(key) for key in keys(moto_server, s3_location))


def test_otel_traces_exporter_datasink_entry_point_builds_the_exporter_from_the_environment(
    moto_server, s3_location, read_tables, monkeypatch
):
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_LOCATION", s3_location)
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL", moto_server.endpoint_url)
    [entry_point] = entry_points(group="opentelemetry_traces_exporter", name="datasink")
    exporter = entry_point.load()()
    provider = TracerProvider(resource=Resource.create({"service.name": "s3-job"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
    run_jobs(provider)

    check_tables(read_tables, s3_location, moto_server.endpoint_url, started=False)
