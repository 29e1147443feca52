"""Airflow's real traces under the ``airflow`` profile and the default one, through every front door, read back
from Parquet.

The spans are made with the real OTel SDK in exactly the shapes Airflow sends them (captured from Airflow
3.1.8 and 3.3.2 with SQLite and the LocalExecutor, and read in Airflow's source):

- 3.3: ``dag_run.<dag_id>`` (``airflow-core/src/airflow/models/dagrun.py``) and ``task_run.<task_id>`` spans,
  the latter emitted by the API server when a try ends
  (``airflow-core/src/airflow/api_fastapi/execution_api/routes/task_instances.py``, ``_emit_task_span``): status
  OK for ``success``, ERROR for any other state (``skipped`` too), the task instance's span id for every try
  (``override_ids``), and, for a try that goes up for retry, the *next* try's ``airflow.task_instance.id``.
  ``worker.<task_id>`` spans repeat the task's identity.
- 3.1 with ``[traces] otel_debug_traces_on``, and 2.10 always: the scheduler's own spans
  (``airflow/jobs/scheduler_job_runner.py``: ``_update_state`` with ``dag_id``, ``run_id``, ``state="running"``,
  ``type``; ``_schedule_dag_run`` with ``dag_id``, ``run_id``, ``run_type``; ``scheduler_job_loop``; ...).

Each front door (processor, exporter, OTLP protobuf and JSON decode, the collector over OTLP/HTTP, replay of
OTLP JSON Lines) must give the same rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from collectors import CollectorProcess, rows
from job_spans import write_spans
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from otlp_payloads import otlp_json

from otel_datasink import DatasinkSpanExporter, DatasinkSpanProcessor, local
from otel_datasink.cli import main
from otel_datasink.collector.server import BackgroundCollector
from otel_datasink.collector.settings import CollectorSettings
from otel_datasink.config import Options
from otel_datasink.mapping import map_records
from otel_datasink.otlp import records_from_json, records_from_protobuf
from otel_datasink.profiles import airflow_task_run_id, job_keys_of, load_profile

SECOND = 1_000_000_000
DAG = "etl_orders"
SCHEDULED = "scheduled__2026-11-27T00:00:00+00:00"
MANUAL = "manual__2026-11-28T09:30:00.123456+00:00"
LOGICAL_DATE = datetime(2026, 11, 27, tzinfo=timezone.utc)
PATHS = ("processor", "exporter", "otlp_protobuf", "otlp_json", "collector", "replay")

Emit = Callable[[trace.Tracer, "AirflowIds"], None]


class AirflowIds(IdGenerator):
    """Ids as Airflow 3's ``override_ids`` hands them out: the ids it chose for the next span, else random ones."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._trace_id: int | None = None
        self._span_id: int | None = None

    @contextlib.contextmanager
    def override(self, trace_id: int, span_id: int) -> Iterator[None]:
        """The spans started in the block get these ids (a child span takes its parent's trace id anyway)."""
        self._trace_id, self._span_id = trace_id, span_id
        try:
            yield
        finally:
            self._trace_id = self._span_id = None

    def generate_trace_id(self) -> int:
        return self._trace_id or self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        return self._span_id or self._random.generate_span_id()


# --- Airflow 3.3 -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Try:
    """One try of a task instance, as the API server's task_run span reports it."""

    task_id: str
    try_number: int
    state: str
    ti_id: str
    map_index: int = -1


@dataclasses.dataclass
class DagRun:
    """One DAG run and the tries of its task instances, in the order they ended."""

    run_id: str
    run_type: str
    logical_date: str | None
    failed: bool
    tries: list[Try]
    trace_id: int
    span_id: int


def _carrier_context(trace_id: int, span_id: int) -> trace.Context:
    # Airflow keeps a DAG run's and a task instance's span context in a carrier and starts spans under it.
    return trace.set_span_in_context(
        NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    )


def _task_span_id(run: DagRun, task: Try) -> int:
    # One span id per task instance, reused by every try, as its context carrier holds it.
    digest = hashlib.sha256(f"{run.run_id}/{task.task_id}/{task.map_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def emit_dag_run_332(tracer: trace.Tracer, ids: AirflowIds, run: DagRun, start_ns: int) -> None:
    """The spans Airflow 3.3.2 sends for one DAG run: a worker span and a task_run span per try, then the run's."""
    dr_context = _carrier_context(run.trace_id, run.span_id)
    at = start_ns
    for task in run.tries:
        ti_span_id = _task_span_id(run, task)
        identity = {
            "airflow.dag_id": DAG,
            "airflow.task_id": task.task_id,
            "airflow.dag_run.run_id": run.run_id,
            "airflow.task_instance.try_number": task.try_number,
            "airflow.task_instance.map_index": task.map_index,
        }
        worker = tracer.start_span(
            f"worker.{task.task_id}", context=_carrier_context(run.trace_id, ti_span_id), start_time=at + SECOND
        )
        worker.set_attributes(identity)
        if task.state != "success":
            worker.set_status(Status(StatusCode.ERROR))
        worker.end(end_time=at + 4 * SECOND)
        name = f"task_run.{task.task_id}" + (f"[{task.map_index}]" if task.map_index >= 0 else "")
        with ids.override(run.trace_id, ti_span_id):
            span = tracer.start_span(name, context=dr_context, start_time=at)
        span.set_attributes(
            {**identity, "airflow.task_instance.state": task.state, "airflow.task_instance.id": task.ti_id}
        )
        span.set_status(StatusCode.OK if task.state == "success" else StatusCode.ERROR)
        span.end(end_time=at + 5 * SECOND)
        at += 10 * SECOND
    attributes = {"airflow.dag_id": DAG, "airflow.dag_run.run_id": run.run_id, "airflow.dag_run.run_type": run.run_type}
    if run.logical_date is not None:
        attributes["airflow.dag_run.logical_date"] = run.logical_date
    with ids.override(run.trace_id, run.span_id):
        span = tracer.start_span(f"dag_run.{DAG}", start_time=start_ns - SECOND, attributes=attributes)
    span.set_status(StatusCode.ERROR if run.failed else StatusCode.OK)
    span.end(end_time=at)


def airflow_332_runs() -> list[DagRun]:
    """The captured DAG: ``always_fails`` (retries=1), ``flaky`` (fails once), ``skip_me``, ``publish_orders``
    (an asset outlet) and a mapped ``load``; a scheduled run that fails and a manual run without logical date."""
    scheduled = DagRun(
        run_id=SCHEDULED,
        run_type="scheduled",
        logical_date="2026-11-27 00:00:00+00:00",
        failed=True,
        tries=[
            # A try that goes up for retry carries the id its next try will have.
            Try("always_fails", 1, "up_for_retry", "0197c0de-0000-7000-8000-00000000a002"),
            Try("flaky", 1, "up_for_retry", "0197c0de-0000-7000-8000-00000000b002"),
            Try("skip_me", 1, "skipped", "0197c0de-0000-7000-8000-00000000c001"),
            Try("always_fails", 2, "failed", "0197c0de-0000-7000-8000-00000000a002"),
            Try("flaky", 2, "success", "0197c0de-0000-7000-8000-00000000b002"),
            Try("publish_orders", 1, "success", "0197c0de-0000-7000-8000-00000000d001"),
            Try("load", 1, "success", "0197c0de-0000-7000-8000-00000000e000", map_index=0),
            Try("load", 1, "success", "0197c0de-0000-7000-8000-00000000e001", map_index=1),
        ],
        trace_id=0x5CE1_0000_0000_0000_0000_0000_0000_0001,
        span_id=0xD0_0001,
    )
    manual = DagRun(
        run_id=MANUAL,
        run_type="manual",
        logical_date=None,
        failed=False,
        tries=[Try("flaky", 1, "success", "0197c0de-0000-7000-8000-00000000f001")],
        trace_id=0x5CE1_0000_0000_0000_0000_0000_0000_0002,
        span_id=0xD0_0002,
    )
    return [scheduled, manual]


def emit_airflow_332(tracer: trace.Tracer, ids: AirflowIds) -> None:
    """Both DAG runs of the captured DAG, a minute apart, ending in the last minutes."""
    start = time.time_ns() - 10 * 60 * SECOND
    for offset, run in enumerate(airflow_332_runs()):
        emit_dag_run_332(tracer, ids, run, start + offset * 2 * 60 * SECOND)


# --- the front doors ---------------------------------------------------------------------------------------


def _provider(ids: AirflowIds) -> TracerProvider:
    return TracerProvider(resource=Resource.create({"service.name": "airflow"}), id_generator=ids)


def _sdk_spans(emit: Emit) -> list[ReadableSpan]:
    ids = AirflowIds()
    memory = InMemorySpanExporter()
    provider = _provider(ids)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    emit(provider.get_tracer("airflow"), ids)
    provider.shutdown()
    return list(memory.get_finished_spans())


def _through_provider(location: str, emit: Emit, processor) -> None:
    ids = AirflowIds()
    provider = _provider(ids)
    provider.add_span_processor(processor)
    emit(provider.get_tracer("airflow"), ids)
    provider.shutdown()


def send(path: str, location: str, emit: Emit, tmp_path: Path, profile: str | None = "airflow") -> None:
    """Sends the spans of ``emit`` to ``location`` through one front door, with ``profile`` (None: none named, the
    default that recognises every producer)."""
    named = {} if profile is None else {"profile": profile}
    flag = [] if profile is None else ["--profile", profile]
    if path == "processor":
        _through_provider(location, emit, DatasinkSpanProcessor(location, schedule_delay=0.1, **named))
    elif path == "exporter":
        _through_provider(location, emit, SimpleSpanProcessor(DatasinkSpanExporter(location, **named)))
    elif path == "otlp_protobuf":
        loaded = load_profile(profile)
        body = encode_spans(_sdk_spans(emit)).SerializeToString()
        records, rejected, _ = records_from_protobuf(body, job_keys=job_keys_of(loaded))
        assert rejected == 0
        write_spans(location, records, loaded)
    elif path == "otlp_json":
        records, rejected = records_from_json(otlp_json(encode_spans(_sdk_spans(emit))))
        assert rejected == 0
        write_spans(location, records, load_profile(profile))
    elif path == "collector":
        settings = CollectorSettings(http=("127.0.0.1", 0), grpc=None, spool_dir=tmp_path / "spool", flush_age=0.2)
        with BackgroundCollector(Options.resolve(location, **named), settings) as collector:
            exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces")
            assert exporter.export(_sdk_spans(emit)).name == "SUCCESS"
    else:
        lines = tmp_path / "airflow.jsonl"
        lines.write_text(json.dumps(otlp_json(encode_spans(_sdk_spans(emit)))) + "\n")
        assert main(["replay", "--location", location, "--no-progress", *flag, str(lines)]) == 0


def terminal_runs(read_tables, location: str) -> list[dict]:
    """The job_runs rows of ended runs (the processor also writes STARTED rows), read with pyarrow and DuckDB."""
    return [row for row in read_tables(location).rows("job_runs") if row["status"] != "STARTED"]


@pytest.fixture(params=[(path, profile) for profile in ("airflow", None) for path in PATHS], ids=str)
def airflow_332(request, local_location, tmp_path, read_tables) -> list[dict]:
    """The rows of the captured Airflow 3.3.2 DAG runs, sent through one front door with the airflow profile, and
    with none named: the default recognises Airflow's spans among every producer's."""
    path, profile = request.param
    send(path, local_location, emit_airflow_332, tmp_path, profile)
    return terminal_runs(read_tables, local_location)


def _task_rows(rows: list[dict], task_id: str) -> list[tuple]:
    found = [row for row in rows if row["job_name"] == f"{DAG}.{task_id}"]
    return sorted(
        (r["run_id"], r["attempt"], r["status"], r["error_type"], r["run_type"], r["logical_date"]) for r in found
    )


# --- tries that share a task instance id ---------------------------------------------------------------


def test_tries_sharing_a_task_instance_id_and_span_id_are_separate_runs_with_their_try_number(airflow_332):
    assert _task_rows(airflow_332, "always_fails") == [
        (f"{DAG}/{SCHEDULED}/always_fails/1", 1, "FAILED", "up_for_retry", "scheduled", LOGICAL_DATE),
        (f"{DAG}/{SCHEDULED}/always_fails/2", 2, "FAILED", "failed", "scheduled", LOGICAL_DATE),
    ]
    assert _task_rows(airflow_332, "flaky") == [
        (f"{DAG}/{MANUAL}/flaky/1", 1, "SUCCESS", None, "manual", None),
        (f"{DAG}/{SCHEDULED}/flaky/1", 1, "FAILED", "up_for_retry", "scheduled", LOGICAL_DATE),
        (f"{DAG}/{SCHEDULED}/flaky/2", 2, "SUCCESS", None, "scheduled", LOGICAL_DATE),
    ]


def test_a_skipped_task_is_not_a_failure_though_airflow_marks_its_span_error(airflow_332):
    assert _task_rows(airflow_332, "skip_me") == [
        (f"{DAG}/{SCHEDULED}/skip_me/1", 1, "SUCCESS", None, "scheduled", LOGICAL_DATE)
    ]


def test_mapped_task_instances_are_runs_of_their_own_named_with_their_map_index(airflow_332):
    assert [row[0] for row in _task_rows(airflow_332, "load")] == [
        f"{DAG}/{SCHEDULED}/load[0]/1",
        f"{DAG}/{SCHEDULED}/load[1]/1",
    ]


def test_worker_spans_are_not_a_second_run_of_their_task(airflow_332):
    per_job = sorted(row["job_name"] for row in airflow_332)
    assert per_job == sorted(
        [DAG] * 2
        + [f"{DAG}.always_fails"] * 2
        + [f"{DAG}.flaky"] * 3
        + [f"{DAG}.skip_me", f"{DAG}.publish_orders", f"{DAG}.load", f"{DAG}.load"]
    )


def test_the_task_run_id_scheme_is_the_documented_one():
    assert airflow_task_run_id("etl", "manual__x", "load", -1, 2) == "etl/manual__x/load/2"
    assert airflow_task_run_id("etl", "manual__x", "load", "3", "1") == "etl/manual__x/load[3]/1"
    assert airflow_task_run_id("etl", "manual__x", "load", None, None) == "etl/manual__x/load/1"


# --- DAG runs -----------------------------------------------------------------------------------------------


def _dag_rows(rows: list[dict]) -> list[tuple]:
    return sorted(
        (r["run_id"], r["attempt"], r["status"], r["error_type"], r["run_type"], r["logical_date"])
        for r in rows
        if r["job_name"] == DAG
    )


def test_a_failed_dag_run_without_state_gets_error_type_failed_and_airflows_run_id(airflow_332):
    assert _dag_rows(airflow_332) == [
        (MANUAL, 1, "SUCCESS", None, "manual", None),
        (SCHEDULED, 1, "FAILED", "failed", "scheduled", LOGICAL_DATE),
    ]


def test_no_airflow_3_span_carries_the_exception_text(airflow_332):
    # Documented: the error text stays in Airflow's task logs; error_message is NULL.
    assert {row["error_message"] for row in airflow_332} == {None}


def test_recurring_failures_names_the_last_error_type_of_a_dag(local_location, tmp_path):
    send("exporter", local_location, emit_airflow_332, tmp_path)
    with local.connect(local_location) as con:
        found = con.execute(
            "SELECT job_name, last_error_type FROM recurring_failures WHERE job_name IN (?, ?) ORDER BY job_name",
            [DAG, f"{DAG}.always_fails"],
        ).fetchall()
    assert found == [(DAG, "failed"), (f"{DAG}.always_fails", "failed")]


# --- looking a DAG run up by Airflow's run id ------------------------------------------------------------

# The README's query: a DAG run is (job_name = dag id, run_id = Airflow's run id); its task tries' run ids
# start with '<dag id>/<Airflow run id>/'.
LOOKUP = """
SELECT job_name, run_id, attempt, status
FROM job_runs_latest
WHERE (job_name = $dag AND run_id = $run) OR starts_with(run_id, $dag || '/' || $run || '/')
ORDER BY job_name, run_id
"""


@pytest.mark.parametrize("path", ["exporter", "collector"])
def test_airflows_run_id_finds_the_dag_run_and_its_task_runs_without_reading_attributes(path, local_location, tmp_path):
    send(path, local_location, emit_airflow_332, tmp_path)
    with local.connect(local_location) as con:
        by_run_id = con.execute("SELECT job_name FROM job_runs WHERE run_id = ?", [MANUAL]).fetchall()
        manual = con.execute(LOOKUP, {"dag": DAG, "run": MANUAL}).fetchall()
        scheduled = con.execute(LOOKUP, {"dag": DAG, "run": SCHEDULED}).fetchall()

    assert by_run_id == [(DAG,)]
    assert manual == [(DAG, MANUAL, 1, "SUCCESS"), (f"{DAG}.flaky", f"{DAG}/{MANUAL}/flaky/1", 1, "SUCCESS")]
    assert [(job, attempt, status) for job, _, attempt, status in scheduled] == [
        (DAG, 1, "FAILED"),
        (f"{DAG}.always_fails", 1, "FAILED"),
        (f"{DAG}.always_fails", 2, "FAILED"),
        (f"{DAG}.flaky", 1, "FAILED"),
        (f"{DAG}.flaky", 2, "SUCCESS"),
        (f"{DAG}.load", 1, "SUCCESS"),
        (f"{DAG}.load", 1, "SUCCESS"),
        (f"{DAG}.publish_orders", 1, "SUCCESS"),
        (f"{DAG}.skip_me", 1, "SUCCESS"),
    ]


# --- scheduler-internal spans --------------------------------------------------------------------------------


def _scheduler_loop(tracer: trace.Tracer, run_id: str, run_type: str) -> None:
    """One scheduler loop that starts a queued DAG run and schedules it, with the spans Airflow's scheduler makes."""
    with tracer.start_as_current_span("scheduler_job_loop") as loop:
        loop.set_attributes({"category": "scheduler", "loop_count": 7})
        with tracer.start_as_current_span("_start_queued_dagruns"):
            with tracer.start_as_current_span("_update_state") as span:
                span.set_attributes({"state": "running", "run_id": run_id, "type": run_type, "dag_id": DAG})
        with tracer.start_as_current_span("_schedule_dag_run") as span:
            span.set_attributes({"dag_id": DAG, "run_id": run_id, "run_type": run_type})
        with tracer.start_as_current_span("_schedule_dag_run") as span:
            # A DAG run that timed out.
            span.set_attributes({"dag_id": DAG, "run_id": run_id, "run_type": run_type, "error": True})
        with tracer.start_as_current_span("emit_pool_metrics") as span:
            span.set_attributes({"category": "scheduler", "pool.open_slots.default_pool": 128})


def emit_airflow_318_debug(tracer: trace.Tracer, ids: AirflowIds) -> None:
    """Airflow 3.1.8 with ``otel_debug_traces_on``: the scheduler's internal spans around a DAG run's spans."""
    _scheduler_loop(tracer, MANUAL, "manual")
    start = time.time_ns() - 60 * SECOND
    task = tracer.start_span("flaky", start_time=start)  # as SchedulerJobRunner.set_ti_span_attrs sets them
    task.set_attributes(
        {
            "airflow.category": "scheduler",
            "airflow.task.task_id": "flaky",
            "airflow.task.dag_id": DAG,
            "airflow.task.state": "success",
            "airflow.task.error": False,
            "airflow.task.try_number": 1,
            "airflow.task.logical_date": "None",
        }
    )
    task.end(end_time=start + 5 * SECOND)
    dag_run = tracer.start_span(DAG, start_time=start - SECOND)  # as DagRun.set_dagrun_span_attrs sets them
    dag_run.set_attributes(
        {
            "airflow.category": "DAG runs",
            "airflow.dag_run.dag_id": DAG,
            "airflow.dag_run.logical_date": "None",
            "airflow.dag_run.run_id": MANUAL,
            "airflow.dag_run.state": "success",
            "airflow.dag_run.run_type": "manual",
        }
    )
    dag_run.end(end_time=start + 10 * SECOND)


def emit_airflow_210_scheduler(tracer: trace.Tracer, ids: AirflowIds) -> None:
    """Airflow 2.10, whose scheduler emits these spans whenever traces are on, around one DAG run's span."""
    _scheduler_loop(tracer, SCHEDULED, "scheduled")
    start = time.time_ns() - 60 * SECOND
    dag_run = tracer.start_span(DAG, start_time=start)  # as DagRun.update_state sets it, named after the DAG
    dag_run.set_attributes(
        {
            "category": "DAG runs",
            "dag_id": DAG,
            "execution_date": "2026-11-27 00:00:00+00:00",
            "run_id": SCHEDULED,
            "state": "success",
            "run_type": "scheduled",
        }
    )
    dag_run.end(end_time=start + 10 * SECOND)


@pytest.mark.parametrize("path", PATHS)
def test_airflow_31_debug_spans_are_never_runs(path, local_location, tmp_path, read_tables):
    send(path, local_location, emit_airflow_318_debug, tmp_path)
    rows = terminal_runs(read_tables, local_location)
    # Before: _update_state was a SUCCESS run of the DAG lasting a millisecond.
    assert sorted((r["job_name"], r["run_id"], r["status"]) for r in rows if r["job_name"] == DAG) == [
        (DAG, MANUAL, "SUCCESS")
    ]
    assert sorted(r["job_name"] for r in rows) == [DAG, f"{DAG}.flaky"]
    assert all(r["duration_ms"] >= 5000 for r in rows)


@pytest.mark.parametrize("profile", ["airflow", None])
@pytest.mark.parametrize("path", ["exporter", "otlp_protobuf"])
def test_airflow_210_scheduler_spans_are_never_runs(path, profile, local_location, tmp_path, read_tables):
    send(path, local_location, emit_airflow_210_scheduler, tmp_path, profile)
    [run] = terminal_runs(read_tables, local_location)
    assert (run["job_name"], run["run_id"], run["status"], run["run_type"], run["logical_date"]) == (
        DAG,
        SCHEDULED,
        "SUCCESS",
        "scheduled",
        LOGICAL_DATE,
    )


# --- one collector for every producer --------------------------------------------------------------------


def _other_producers_spans() -> list[ReadableSpan]:
    """A CI/CD pipeline run and its task run, a contract job span, and two spans of a producer no profile knows
    (scope ``dagster``), each producer under its own instrumentation scope."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "platform"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    ci = provider.get_tracer("github-actions")
    with ci.start_as_current_span(
        "Build", attributes={"cicd.pipeline.name": "Build", "cicd.pipeline.result": "success"}
    ):
        ci.start_span(
            "test", attributes={"cicd.pipeline.task.name": "test", "cicd.pipeline.task.run.result": "failure"}
        ).end()
    provider.get_tracer("etl").start_span("ingest", attributes={"job.name": "ingest_orders"}).end()
    dagster = provider.get_tracer("dagster")
    dagster.start_span("sparkling-woodlouse", attributes={"dagster.run.type": "run"}).end()
    dagster.start_span("extract-3fa", attributes={"dagster.run.type": "step", "dagster.step.key": "extract-3fa"}).end()
    provider.shutdown()
    return list(memory.get_finished_spans())


def _run_keys(rows) -> list[tuple]:
    return sorted((r["job_name"], r["run_id"], r["attempt"], r["status"]) for r in rows)


def _expected_runs(airflow: list[ReadableSpan], others: list[ReadableSpan], profile: str | None) -> list[dict]:
    """What each producer's own profile makes of the same spans: the runs a front door must write, and no other."""
    expected = []
    for spans, own in ((airflow, "airflow"), (others, "contract,cicd" if profile is None else "contract")):
        records, _, _ = records_from_protobuf(encode_spans(spans).SerializeToString())
        expected += map_records(records, load_profile(own))["job_runs"]
    assert {r["job_name"] for r in expected} >= {f"{DAG}.always_fails", DAG, "ingest_orders"}
    return expected


@pytest.mark.parametrize("profile", [None, "airflow"])
def test_one_collector_with_no_profile_records_every_known_producer_and_logs_an_unknown_one_once(profile, tmp_path):
    airflow, others = _sdk_spans(emit_airflow_332), _other_producers_spans()
    expected = _expected_runs(airflow, others, profile)

    flags = () if profile is None else ("--profile", profile)
    with CollectorProcess.in_folder(tmp_path, *flags) as collector:
        exporter = OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces", timeout=10)
        for spans in (airflow, others, others):  # the unknown producer's spans twice: still one log line
            assert exporter.export(spans).name == "SUCCESS"
        exporter.shutdown()
        assert collector.metric("non_job_spans_total") >= 4
    written = rows(str(tmp_path / "tables"), expect=len(expected) + 1)  # the others' runs are sent twice

    assert sorted(set(_run_keys(written))) == _run_keys(expected)
    assert not [r for r in written if r["job_name"].startswith(("sparkling", "extract"))]
    log = (tmp_path / "collector.log").read_text()
    assert log.count("instrumentation scope 'dagster'") == 1, log
    assert "--profile" in log


def test_replay_with_no_profile_records_every_known_producer_and_no_unknown_one(local_location, tmp_path, read_tables):
    airflow, others = _sdk_spans(emit_airflow_332), _other_producers_spans()
    lines = tmp_path / "platform.jsonl"
    lines.write_text("".join(json.dumps(otlp_json(encode_spans(spans))) + "\n" for spans in (airflow, others)))

    assert main(["replay", "--location", local_location, "--no-progress", str(lines)]) == 0

    assert _run_keys(read_tables(local_location).rows("job_runs")) == _run_keys(_expected_runs(airflow, others, None))


def test_replay_with_a_mapping_file_maps_its_producer_beside_every_builtin_one(local_location, tmp_path, read_tables):
    airflow, others = _sdk_spans(emit_airflow_332), _other_producers_spans()
    lines = tmp_path / "platform.jsonl"
    lines.write_text("".join(json.dumps(otlp_json(encode_spans(spans))) + "\n" for spans in (airflow, others)))
    mapping = tmp_path / "dagster.toml"
    mapping.write_text(
        '[[rule]]\nselect.has_attributes = ["dagster.step.key"]\n'
        'columns.job_name = { attribute = "dagster.step.key" }\n'
    )

    assert main(["replay", "--location", local_location, "--no-progress", "--profile", str(mapping), str(lines)]) == 0

    names = {row["job_name"] for row in read_tables(local_location).rows("job_runs")}
    builtin = {row["job_name"] for row in _expected_runs(airflow, others, None)}
    assert names == builtin | {"extract-3fa"}
