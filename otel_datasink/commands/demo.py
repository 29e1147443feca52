"""Run a small instrumented example (batch runs, one failing, a streaming job, two datasets) and print the tables."""

from __future__ import annotations

import argparse
import random
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_datasink.api import job_run
from otel_datasink.processor import DatasinkSpanProcessor

HELP = "run a small instrumented example into --location and print both tables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--micro-batches", type=int, default=3, help="micro-batches of the streaming job")


def run(args: argparse.Namespace) -> int:
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-datasink-demo"}))
    processor = DatasinkSpanProcessor(args.location)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("otel_datasink.demo")
    _run_jobs(tracer, args.micro_batches)
    provider.shutdown()
    print(f"wrote to {args.location}\n")
    _print_tables(args.location)
    return 0


def _run_jobs(tracer: trace.Tracer, micro_batches: int) -> None:
    rng = random.Random(7)
    for attempt in (1, 2):
        try:
            with job_run("ingest_orders", dataset="orders", attempt=attempt, tracer=tracer) as run:
                rows = rng.randint(900, 1100)
                run.add_records(rows)
                if attempt == 1:
                    raise ConnectionError("source database timed out")
                run.dataset_updated(
                    "orders", records_written=rows, record_count=50_000 + rows, freshness_sla_minutes=60
                )
        except ConnectionError:
            pass
    with job_run("build_customers", dataset="customers", tracer=tracer) as run:
        run.add_records(250)
    for _ in range(micro_batches):
        with job_run("stream_clicks", job_type="streaming", tracer=tracer) as run:
            run.add_records(rng.randint(40, 60))
            run.dataset_updated("clicks", records_written=run.records_processed, freshness_sla_minutes=5)
        time.sleep(0.01)


def _print_tables(location: str) -> None:
    from otel_datasink.local import connect

    con = connect(location)
    for title, query in _QUERIES:
        print(title)
        con.sql(query).show(max_width=160)
    print(f'Query them yourself: otel-datasink query --location {location} "SELECT * FROM job_runs_latest"')


_QUERIES = (
    (
        "job_runs (every state of every run; the demo appends on each call)",
        "SELECT job_name, job_type, status, dataset, start_time, duration_ms, records_processed, error_type "
        "FROM job_runs ORDER BY event_time, status",
    ),
    (
        "dataset_status",
        "SELECT dataset, status, updated_at, records_written, record_count, job_name "
        "FROM dataset_status ORDER BY event_time",
    ),
    (
        "dataset_status_latest (one row per dataset)",
        "SELECT dataset, last_status, last_success_at, record_count, freshness_minutes, freshness_sla_minutes, "
        "is_stale FROM dataset_status_latest ORDER BY dataset",
    ),
)
