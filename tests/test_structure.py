"""The platform's structure in the tables (issue 18): the run a run belongs to (``parent_job_name``,
``parent_run_id``), its job's ``owners`` and its ``inputs``, from span attributes, from the enclosing job span,
and from OpenLineage's ``parent``, ``ownership`` and ``inputs``; read back with DuckDB, old files included."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import ownership_job, parent_run
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.uuid import generate_new_uuid
from openlineage_events import FIXTURES, PRODUCER, WAREHOUSE, iso, now
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_datasink import DatasinkSpanExporter, DatasinkSpanProcessor, local
from otel_datasink.cli import main
from otel_datasink.compact import compact
from otel_datasink.config import Options
from otel_datasink.location import file_name
from otel_datasink.mapping import MAX_OPEN_SPANS
from otel_datasink.schema import DATASET_STATUS, JOB_RUNS
from otel_datasink.writer import Writer

STRUCTURE = "parent_job_name, parent_run_id, owners, inputs"


@pytest.fixture(params=["processor", "exporter_batch"])
def provider(request, local_location) -> Iterator[TracerProvider]:
    """A TracerProvider writing to ``local_location`` through the processor or the exporter under the SDK's
    BatchSpanProcessor (whose batch holds a trace's spans when the provider shuts down)."""
    provider = TracerProvider()
    if request.param == "processor":
        provider.add_span_processor(DatasinkSpanProcessor(local_location, schedule_delay=0.1))
    else:
        provider.add_span_processor(BatchSpanProcessor(DatasinkSpanExporter(local_location)))
    yield provider
    provider.shutdown()


def latest(location: str, job: str) -> tuple:
    """The structure columns of ``job``'s one run in ``job_runs_latest``."""
    with local.connect(location) as con:
        [row] = con.execute(f"SELECT {STRUCTURE} FROM job_runs_latest WHERE job_name = ?", [job]).fetchall()
    return row


def test_owners_inputs_and_parent_attributes_fill_the_columns_and_the_dataset_owners(provider, local_location):
    tracer = provider.get_tracer("tests")
    attributes = {
        "job.name": "load_orders",
        "dataset.name": "warehouse.orders",
        "job.owners": "team-payments",  # a single string is one owner
        "job.inputs": ["raw.orders", "", "raw.customers"],  # an empty name is left out
        "job.parent.name": "nightly",
        "job.parent.run.id": "run-42",
    }
    with tracer.start_as_current_span("load", attributes=attributes):
        pass
    provider.shutdown()

    assert latest(local_location, "load_orders") == (
        "nightly",
        "run-42",
        ["team-payments"],
        ["raw.orders", "raw.customers"],
    )
    with local.connect(local_location) as con:
        assert con.execute("SELECT owners FROM dataset_status").fetchall() == [(["team-payments"],)]


def test_a_run_without_parent_attributes_belongs_to_its_enclosing_job_span(provider, local_location):
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("dag", attributes={"job.name": "nightly", "job.run.id": "dag-run-1"}):
        with tracer.start_as_current_span("task", attributes={"job.name": "extract"}):
            pass
        with tracer.start_as_current_span("task", attributes={"job.name": "load", "job.parent.name": "other"}):
            pass
    provider.shutdown()

    assert latest(local_location, "extract") == ("nightly", "dag-run-1", None, None)
    # A parent the span names is its own word: never replaced by the enclosing span.
    assert latest(local_location, "load")[:2] == ("other", None)
    assert latest(local_location, "nightly")[:2] == (None, None)  # the trace's root has none


def test_the_enclosing_job_span_is_found_through_spans_that_are_not_runs(provider, local_location):
    """The processor never queues the spans between (they are not job spans): it notes them as they start."""
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("dag", attributes={"job.name": "nightly", "job.run.id": "dag-run-1"}):
        with tracer.start_as_current_span("a step"), tracer.start_as_current_span("a query"):
            with tracer.start_as_current_span("task", attributes={"job.name": "extract"}):
                pass
    provider.shutdown()
    assert latest(local_location, "extract")[:2] == ("nightly", "dag-run-1")


def test_openlineage_parent_ownership_and_inputs_from_the_real_client(tmp_path):
    location, events = str(tmp_path / "datasink"), tmp_path / "events.jsonl"
    client = OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(events), append=True)))
    run_id, dag_run = str(generate_new_uuid()), str(generate_new_uuid())
    job = Job(
        namespace="etl",
        name="load_orders",
        facets={
            "ownership": ownership_job.OwnershipJobFacet(
                owners=[ownership_job.Owner(name="team:payments"), ownership_job.Owner(name="user:alice")]
            )
        },
    )
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=dag_run), job=parent_run.Job(namespace="etl", name="nightly")
    )
    start = Run(runId=run_id, facets={"parent": parent})
    client.emit(RunEvent(eventType=RunState.START, eventTime=iso(now()), run=start, job=job, producer=PRODUCER))
    client.emit(
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=iso(now() + dt.timedelta(seconds=5)),
            run=Run(runId=run_id),  # the end event without the facets: the run's START row has them
            job=Job(namespace="etl", name="load_orders"),
            producer=PRODUCER,
            inputs=[InputDataset(namespace=WAREHOUSE, name="shop.raw.orders")],
        )
    )
    assert main(["replay", "--location", location, "--no-progress", str(events)]) == 0

    assert latest(location, "load_orders") == (
        "nightly",
        dag_run,
        ["team:payments", "user:alice"],
        [f"{WAREHOUSE}/shop.raw.orders"],
    )


def test_airflow_provider_tries_belong_to_their_dag_run_and_carry_its_owners(tmp_path):
    location = str(tmp_path / "datasink")
    assert (
        main(["replay", "--location", location, "--no-progress", str(FIXTURES / "airflow" / "etl_orders_retry.jsonl")])
        == 0
    )
    with local.connect(location) as con:
        rows = con.execute(
            f"SELECT DISTINCT job_name, {STRUCTURE} FROM job_runs WHERE status <> 'STARTED' ORDER BY job_name"
        ).fetchall()
    dag_run = "scheduled__2026-11-27T00:00:00+00:00"  # Airflow's run id, as the try's trace names its parent
    assert [row[:4] for row in rows] == [
        ("etl_orders", None, None, ["data-eng"]),
        ("etl_orders.extract_orders", "etl_orders", dag_run, ["data-eng"]),
        ("etl_orders.load_orders", "etl_orders", dag_run, ["data-eng"]),
    ]


def _old_schema(schema: pa.Schema, *added: str) -> pa.Schema:
    return pa.schema([field for field in schema if field.name not in added])


def _write_old_files(location: str) -> None:
    """A run of ``old_job`` and its update, in files of the schema before the structure columns."""
    moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)  # today's partition, as new spans' rows
    ms = int(moment.timestamp() * 1000)
    old_runs = _old_schema(JOB_RUNS, "parent_job_name", "parent_run_id", "owners", "inputs")
    run = {"run_id": "r1", "job_name": "old_job", "job_type": "batch", "status": "SUCCESS", "dataset": "d"}
    run |= {"event_time": ms, "start_time": ms - 1000, "end_time": ms, "attempt": 1, "ingested_at": ms}
    update = {"dataset": "d", "status": "SUCCESS", "updated_at": ms, "job_name": "old_job", "run_id": "r1"}
    update |= {"event_time": ms, "ingested_at": ms}
    for table, schema, row in (
        ("job_runs", old_runs, run),
        ("dataset_status", _old_schema(DATASET_STATUS, "owners"), update),
    ):
        folder = f"{location}/{table}/dt={moment.strftime('%Y-%m-%d')}"
        os.makedirs(folder)
        pq.write_table(pa.Table.from_pylist([row], schema=schema), f"{folder}/{file_name()}")


def test_files_written_before_the_new_columns_read_them_as_null(local_location):
    """Every file of the location written by the old schema: DuckDB's tables and views still have the columns."""
    _write_old_files(local_location)

    assert latest(local_location, "old_job") == (None, None, None, None)
    with local.connect(local_location) as con:
        assert con.execute("SELECT dataset, owners FROM dataset_status").fetchall() == [("d", None)]
        assert con.execute("SELECT count(*) FROM dataset_status_latest").fetchone() == (1,)


def test_compaction_of_old_and_new_files_keeps_the_new_columns_null_for_old_rows(local_location):
    _write_old_files(local_location)
    provider = TracerProvider()
    provider.add_span_processor(DatasinkSpanProcessor(local_location))
    attributes = {"job.name": "new_job", "dataset.name": "d", "job.owners": ["team-a"], "job.inputs": "raw.d"}
    with provider.get_tracer("tests").start_as_current_span("new", attributes=attributes):
        pass
    provider.shutdown()

    result = compact(Writer(Options.resolve(local_location)))
    assert result.files_written == 2  # one file per table, from the old file and the new one
    assert latest(local_location, "old_job") == (None, None, None, None)
    assert latest(local_location, "new_job") == (None, None, ["team-a"], ["raw.d"])
    with local.connect(local_location) as con:
        owners = con.execute("SELECT job_name, owners FROM dataset_status ORDER BY job_name").fetchall()
    assert owners == [("new_job", ["team-a"]), ("old_job", None)]


def test_pipeline_runs_count_a_parent_runs_children_by_state(local_location):
    provider = TracerProvider()
    processor = DatasinkSpanProcessor(local_location, schedule_delay=0.1)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("dag", attributes={"job.name": "nightly", "job.run.id": "dag-run-1"}):
        with tracer.start_as_current_span("task", attributes={"job.name": "extract"}):
            pass
        with pytest.raises(ValueError), tracer.start_as_current_span("task", attributes={"job.name": "load"}):
            raise ValueError("bad row")
        running = tracer.start_span("task", attributes={"job.name": "publish"})  # still running
        assert processor.force_flush()
        with local.connect(local_location) as con:
            rows = con.execute(
                "SELECT parent_job_name, parent_run_id, child_runs, child_jobs, running, succeeded, failed "
                "FROM pipeline_runs"
            ).fetchall()
        running.end()
    provider.shutdown()
    assert rows == [("nightly", "dag-run-1", 3, 3, 1, 1, 1)]


def test_spans_that_never_end_do_not_turn_the_enclosing_runs_off(local_location):
    """More open spans than the processor keeps notes of (a long job's spans it never ends): the oldest make room."""
    provider = TracerProvider()
    processor = DatasinkSpanProcessor(local_location, schedule_delay=0.1)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("stream", attributes={"job.name": "stream"}):
        for _ in range(MAX_OPEN_SPANS + 1):
            tracer.start_span("leaked")  # never ended
    with tracer.start_as_current_span("dag", attributes={"job.name": "nightly", "job.run.id": "dag-run-1"}):
        assert processor.force_flush()  # the DAG run's STARTED row in one batch, the task's in another
        with tracer.start_as_current_span("a step"):
            with tracer.start_as_current_span("task", attributes={"job.name": "extract"}):
                pass
    provider.shutdown()
    assert latest(local_location, "extract")[:2] == ("nightly", "dag-run-1")


def test_dataset_lineage_links_what_a_run_read_to_what_it_wrote(local_location):
    provider = TracerProvider()
    provider.add_span_processor(DatasinkSpanProcessor(local_location))
    tracer = provider.get_tracer("tests")
    jobs = [
        ("load_raw", None, "raw.orders"),
        ("build_orders", ["raw.orders", "raw.customers"], "mart.orders"),
        ("export", ["mart.orders"], None),
    ]
    for name, inputs, dataset in jobs:
        attributes = {"job.name": name}
        if inputs:
            attributes["job.inputs"] = inputs
        if dataset:
            attributes["dataset.name"] = dataset
        with tracer.start_as_current_span(name, attributes=attributes):
            pass
    provider.shutdown()

    with local.connect(local_location) as con:
        edges = con.execute(
            "SELECT upstream_dataset, job_name, downstream_dataset, last_seen IS NOT NULL FROM dataset_lineage "
            "ORDER BY job_name, upstream_dataset NULLS FIRST"
        ).fetchall()
    assert edges == [
        ("raw.customers", "build_orders", "mart.orders", True),
        ("raw.orders", "build_orders", "mart.orders", True),
        ("mart.orders", "export", None, True),
        (None, "load_raw", "raw.orders", True),
    ]
