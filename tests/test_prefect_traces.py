"""Prefect 3's real traces (``tests/fixtures/prefect/``, captured from Prefect 3.9.1 under
``opentelemetry-instrument``) replayed with no profile and read back with DuckDB: one row per try of each Prefect
run, matching what Prefect's own server recorded of it (the fixture's README) field by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel_datasink import DatasinkSpanProcessor, local
from otel_datasink.cli import main
from otel_datasink.collector.counters import Metrics
from otel_datasink.collector.ingest import Ingest
from otel_datasink.config import SpanLimits
from otel_datasink.formats import Format
from otel_datasink.mapping import Truncation, map_records
from otel_datasink.profiles import load_profile
from otel_datasink.sdk import from_readable_span
from otel_datasink.semconv import DROPPED_ATTRIBUTES_COUNT

FIXTURES = Path(__file__).parent / "fixtures" / "prefect"
FIXTURE = FIXTURES / "orders_etl_retries.jsonl"
ORDERS_ETL = "prefect-flow-f3e3adc5-ef95-46e1-960c-840a80ca895f"
BROKEN_REPORT = "prefect-flow-bf347a37-0ca0-42e5-8b01-82158c1616d6"

# Prefect's own records (flow_run / task_run: id, state, run_count, the Failed state's message).
PREFECTS_RUNS = [
    ("flaky_extract", "01a25314-e3ce-758e-8767-bb67baf5eb66", 2, "SUCCESS", None, None),
    ("load", "01a25314-e405-7a43-99c1-4a70d247a7d5", 1, "SUCCESS", None, None),
    ("load", "01a25314-e874-7be7-9035-ddabdc1c07c4", 1, "SUCCESS", None, None),
    (
        "publish",
        "01a25314-e87d-7ba5-874e-77ad5ab2ca11",
        2,
        "FAILED",
        "ValueError",
        "Task run encountered an exception ValueError: target bucket missing (2 rows)",
    ),
    (BROKEN_REPORT, "44d2eee2-5cd4-481e-af73-c6bf168256d7", 1, "FAILED", "RuntimeError", None),
    (ORDERS_ETL, "c8c67a59-4f45-4b45-aa83-b09c195e4881", 1, "SUCCESS", None, None),
]
BROKEN_REPORT_ERROR = "Flow run encountered an exception: RuntimeError: report target missing"
# The exception of each failed try that Prefect retried, as its log said: "Task run failed with exception: ...".
RETRIED_TRIES_ERRORS = {
    "flaky_extract": ("ValueError", "source not ready (try 1)"),
    "publish": ("ValueError", "target bucket missing (2 rows)"),
}


def _prefects_tries() -> list[tuple]:
    """(job_name, run_id, attempt, status, error_type, error_message) of each try Prefect made: its runs'
    ``run_count`` tries, the earlier ones failed with the exception Prefect retried them for."""
    tries = []
    for name, run_id, run_count, status, error_type, message in PREFECTS_RUNS:
        tries.extend((name, run_id, attempt, "FAILED", *RETRIED_TRIES_ERRORS[name]) for attempt in range(1, run_count))
        tries.append(
            (name, run_id, run_count, status, error_type, BROKEN_REPORT_ERROR if name == BROKEN_REPORT else message)
        )
    return sorted(tries)


def _prefect_spans(path: Path = FIXTURE) -> list[dict]:
    """The spans of scope ``prefect`` in a fixture, as OTLP JSON."""
    return [
        span
        for line in path.read_text().splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        if scope["scope"]["name"] == "prefect"
        for span in scope["spans"]
    ]


@pytest.fixture(scope="module")
def prefect_location(tmp_path_factory) -> str:
    """The captured payload replayed with no profile into a fresh location."""
    location = str(tmp_path_factory.mktemp("prefect") / "datasink")
    assert main(["replay", "--location", location, "--no-progress", str(FIXTURE)]) == 0
    return location


def _query(location: str, sql: str) -> list[tuple]:
    with local.connect(location) as con:
        return con.execute(sql).fetchall()


def test_every_try_of_a_prefect_run_is_one_row_with_prefects_own_id_state_and_error(prefect_location):
    found = _query(
        prefect_location,
        "SELECT job_name, run_id, attempt, status, error_type, error_message FROM job_runs "
        "ORDER BY job_name, run_id, attempt",
    )
    assert found == _prefects_tries()


def test_the_prefect_servers_own_spans_in_the_capture_are_never_runs(prefect_location):
    spans = sum(
        len(scope["spans"])
        for line in FIXTURE.read_text().splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
    )
    assert spans == len(PREFECTS_RUNS) + 107
    tries = sum(run_count for _, _, run_count, *_ in PREFECTS_RUNS)
    assert _query(prefect_location, "SELECT count(*), count(DISTINCT span_id) FROM job_runs") == [
        (tries, len(PREFECTS_RUNS))
    ]


def test_a_retried_tasks_tries_are_timed_by_its_retry_states_and_each_has_the_flow_run_as_parent(prefect_location):
    spans = {span["name"]: span for span in _prefect_spans()}
    expected = []
    for name, flow in (("flaky_extract-865", ORDERS_ETL), ("publish-4ab", BROKEN_REPORT)):
        span = spans[name]
        times = {event["name"]: int(event["timeUnixNano"]) // 1_000_000 for event in span["events"]}
        failed_try_end = times.get("AwaitingRetry", times["Retrying"])
        start, end = int(span["startTimeUnixNano"]) // 1_000_000, int(span["endTimeUnixNano"]) // 1_000_000
        flow_run = next(s for s in spans.values() if s["spanId"] == span["parentSpanId"])
        parent = (flow, next(a["value"]["stringValue"] for a in flow_run["attributes"] if a["key"] == "prefect.run.id"))
        expected += [(name[:-4], 1, start, failed_try_end, *parent), (name[:-4], 2, times["Retrying"], end, *parent)]
    found = _query(
        prefect_location,
        "SELECT job_name, attempt, epoch_ms(start_time), epoch_ms(end_time), parent_job_name, parent_run_id "
        "FROM job_runs WHERE job_name IN ('flaky_extract', 'publish') ORDER BY job_name, attempt",
    )
    assert found == expected


def test_a_retried_tasks_failed_try_counts_in_its_failures_and_its_flow_runs_tries(prefect_location):
    failures = _query(
        prefect_location,
        "SELECT job_name, current_streak, recent_failures, recent_runs, last_error_message FROM recurring_failures "
        "WHERE job_name IN ('flaky_extract', 'publish') ORDER BY job_name",
    )
    assert failures == [
        ("flaky_extract", 0, 1, 2, "source not ready (try 1)"),  # it failed once, then succeeded
        ("publish", 2, 2, 2, "Task run encountered an exception ValueError: target bucket missing (2 rows)"),
    ]
    pipelines = _query(
        prefect_location,
        "SELECT parent_job_name, child_runs, child_jobs, succeeded, failed FROM pipeline_runs ORDER BY parent_job_name",
    )
    assert pipelines == [
        (BROKEN_REPORT, 3, 2, 1, 2),  # load, and publish's two failed tries
        (ORDERS_ETL, 3, 2, 2, 1),  # flaky_extract's failed and successful tries, and load
    ]


def test_task_runs_of_one_task_in_two_flows_are_one_job_and_runs_of_a_flow_keep_its_job_name(prefect_location):
    found = _query(prefect_location, "SELECT job_name, count(*) FROM job_runs GROUP BY job_name ORDER BY job_name")
    assert dict(found)["load"] == 2
    assert not [name for name, _ in found if name.endswith(("-08f", "-b89", "-865", "-4ab"))]


def _prefect_span_tables(
    attributes: dict, events: tuple = (), error: str | None = None, profile: str | None = None, **mapping
) -> dict[str, list[dict]]:
    """The rows of one span of scope ``prefect`` made with the SDK: from 0 to 100 ms past :data:`T0`, with
    ``events`` (name, ms past T0, attributes) and ERROR ``error`` if given; ``mapping``: more of map_records'
    arguments (limits, counts)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("prefect", "3.9.1")
    span = tracer.start_span(str(attributes["prefect.run.name"]), attributes=attributes, start_time=T0)
    for name, ms, event_attributes in events:
        span.add_event(name, event_attributes, timestamp=T0 + ms * 1_000_000)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(T0 + 100 * 1_000_000)
    provider.shutdown()
    records = [from_readable_span(span) for span in memory.get_finished_spans()]
    return map_records(records, load_profile(profile), **mapping)


def _prefect_span_rows(attributes: dict, profile: str | None = None) -> list[dict]:
    return _prefect_span_tables(attributes, profile=profile)["job_runs"]


T0 = 1_796_690_000_000_000_000
TASK = {"prefect.run.type": "task", "prefect.run.name": "publish-4ab", "prefect.run.id": "01a25314"}


def _state(name: str, ms: int, message: str = "") -> tuple[str, int, dict]:
    """A Prefect state event as ``RunTelemetry.update_state`` adds it."""
    state_type = {"Running": "RUNNING", "Retrying": "RUNNING", "AwaitingRetry": "SCHEDULED"}.get(name, name.upper())
    return name, ms, {"prefect.state.message": message, "prefect.state.type": state_type, "prefect.state.name": name}


def _exception(ms: int, message: str) -> tuple[str, int, dict]:
    return "exception", ms, {"exception.type": "ValueError", "exception.message": message, "exception.escaped": "False"}


def test_a_task_that_fails_all_its_retries_is_one_failed_run_per_try_with_its_own_error_and_times():
    final = "Task run encountered an exception ValueError: no target (3)"
    events = (
        *(_state("Running", 1), _exception(2, "no target (1)"), _state("AwaitingRetry", 3)),
        *(_state("Retrying", 10), _exception(11, "no target (2)"), _state("AwaitingRetry", 12)),
        *(_state("Retrying", 20), _exception(21, "no target (3)"), _state("Failed", 22, final)),
    )
    runs = _prefect_span_tables(TASK, events, error=final)["job_runs"]
    found = [
        (r["job_name"], r["run_id"], r["attempt"], r["status"], r["start_time"] - T0 // 1_000_000,
         r["end_time"] - T0 // 1_000_000, r["error_type"], r["error_message"])
        for r in runs
    ]  # fmt: skip
    assert found == [
        ("publish", "01a25314", 1, "FAILED", 0, 3, "ValueError", "no target (1)"),
        ("publish", "01a25314", 2, "FAILED", 10, 12, "ValueError", "no target (2)"),
        ("publish", "01a25314", 3, "FAILED", 20, 100, "ValueError", final),
    ]


def test_a_retried_tasks_records_and_dataset_are_its_last_trys_and_its_checks_the_try_that_ran_them():
    attributes = {**TASK, "dataset.name": "orders", "job.records_processed": 5}
    check = {"check.name": "rows > 0", "dataset.name": "orders"}
    events = (
        *(_state("Running", 1), ("dataset.check", 2, {**check, "check.passed": False}), _exception(3, "empty")),
        *(_state("Retrying", 4), ("dataset.check", 5, {**check, "check.passed": True}), _state("Completed", 6)),
    )
    tables = _prefect_span_tables(attributes, events)
    assert [(r["attempt"], r["status"], r["dataset"], r["records_processed"]) for r in tables["job_runs"]] == [
        (1, "FAILED", None, None),
        (2, "SUCCESS", "orders", 5),
    ]
    assert [(r["dataset"], r["status"], r["records_written"]) for r in tables["dataset_status"]] == [
        ("orders", "SUCCESS", 5)
    ]
    assert [(r["attempt"], r["status"]) for r in tables["dataset_checks"]] == [(1, "FAILED"), (2, "PASSED")]


def test_what_the_span_limits_took_from_a_retried_tasks_span_is_counted_once_and_said_on_each_try():
    attributes = {**TASK, **{f"prefect.run.parameter.p{i}": "int" for i in range(5)}}
    events = (_state("Running", 1), _exception(2, "empty"), _state("Retrying", 4), _state("Completed", 6))
    counts = Truncation()
    runs = _prefect_span_tables(attributes, events, limits=SpanLimits(attributes=4), counts=counts)["job_runs"]
    dropped = len(attributes) - 4
    assert [(r["attempt"], r["attributes"][DROPPED_ATTRIBUTES_COUNT]) for r in runs] == [
        (1, str(dropped)),
        (2, str(dropped)),
    ]
    assert counts.dropped_attributes == dropped


@pytest.mark.parametrize(
    ("events", "error", "expected"),
    [
        ((), None, (1, "SUCCESS", None)),  # no state events at all
        ((_state("Running", 1), _state("Completed", 2)), None, (1, "SUCCESS", None)),
        (
            (_state("Running", 1), _exception(2, "no target"), _state("Failed", 3, "Task run encountered ...")),
            "Task run encountered ...",
            (1, "FAILED", "Task run encountered ..."),
        ),
    ],
)
def test_a_prefect_span_without_a_retry_stays_one_run_over_the_whole_span(events, error, expected):
    runs = _prefect_span_tables(TASK, events, error=error)["job_runs"]
    assert [(r["attempt"], r["status"], r["error_message"]) for r in runs] == [expected]
    assert [(r["start_time"], r["end_time"] - r["start_time"]) for r in runs] == [(T0 // 1_000_000, 100)]


def test_the_collector_counts_a_retried_tasks_span_once_as_a_job_span_and_writes_a_row_per_try():
    ingest = Ingest(load_profile(None), Metrics())
    results = [ingest(Format.OTLP_JSON, line.encode()) for line in FIXTURE.read_text().splitlines()]
    assert sum(result.runs for result in results) == len(_prefects_tries())
    assert (ingest.metrics.job_spans, ingest.metrics.non_job_spans) == (len(PREFECTS_RUNS), 107)


def test_a_job_name_tag_names_a_flows_job_and_leaves_its_tasks_their_names(tmp_path):
    location = str(tmp_path / "datasink")
    assert main(["replay", "--location", location, "--no-progress", str(FIXTURES / "tagged_flow.jsonl")]) == 0
    found = _query(location, "SELECT job_name, run_id, attempt, status FROM job_runs ORDER BY job_name")
    assert found == [
        ("load", "01a25318-0630-7d1a-a4a6-c5a8bcfcdfd8", 1, "SUCCESS"),
        ("orders-etl", "4c759e5e-d9bd-4eb8-bbb5-bfa1753389a0", 1, "SUCCESS"),
    ]


def test_a_flow_without_a_job_name_tag_is_named_after_its_flow_id():
    tagged = {
        "prefect.run.type": "flow",
        "prefect.run.name": "sparkling-woodlouse",
        "prefect.run.id": "0b1c",
        "prefect.flow.id": "f3e3adc5",
        "prefect.tags": ("nightly", "job.name:orders-etl"),
    }
    assert [r["job_name"] for r in _prefect_span_rows(tagged)] == ["orders-etl"]
    untagged = {**tagged, "prefect.tags": ("nightly", "job.name:")}
    assert [r["job_name"] for r in _prefect_span_rows(untagged, "prefect")] == ["prefect-flow-f3e3adc5"]


@pytest.mark.parametrize(
    ("run_name", "job_name"),
    [
        ("extract-3fa", "extract"),  # the engine's f"{task.name}-{key[:3]}"
        ("extract-12", "extract"),  # submit()'s counter
        ("extract-0b1c2d3e-aaaa-4bbb-8ccc-0123456789ab", "extract"),  # a task run on remote infrastructure
        ("extract orders", "extract orders"),  # a task_run_name of the user's
    ],
)
def test_a_task_runs_job_name_is_its_tasks_name(run_name, job_name):
    rows = _prefect_span_rows({"prefect.run.type": "task", "prefect.run.name": run_name, "prefect.run.id": "1"})
    assert [r["job_name"] for r in rows] == [job_name]


def test_a_prefect_span_without_its_identity_is_not_a_run():
    assert _prefect_span_rows({"prefect.run.type": "flow", "prefect.run.name": "sparkling-woodlouse"}) == []


def test_a_retried_flows_span_is_its_failed_first_try_for_prefect_sends_no_span_of_the_retry(tmp_path):
    location = str(tmp_path / "datasink")
    assert main(["replay", "--location", location, "--no-progress", str(FIXTURES / "retried_flow.jsonl")]) == 0
    found = _query(location, "SELECT job_name, run_id, attempt, status, error_type, error_message FROM job_runs")
    assert found == [
        (
            "prefect-flow-79a2ca05-87b7-4ab0-b75f-38bf677367dc",
            "3a5e8be4-8d03-4ccd-a861-5ed1bdd96138",
            1,
            "FAILED",
            "ValueError",
            "Flow run encountered an exception: ValueError: first try fails",
        )
    ]


def test_a_replay_with_a_run_type_marks_every_try_of_a_retried_task(tmp_path):
    location = str(tmp_path / "datasink")
    assert main(["replay", "--location", location, "--no-progress", "--run-type", "replay", str(FIXTURE)]) == 0
    found = _query(location, "SELECT job_name, attempt, run_type FROM job_runs WHERE job_name = 'publish'")
    assert sorted(found) == [("publish", 1, "replay"), ("publish", 2, "replay")]


def test_in_process_each_try_of_a_task_gets_its_open_flow_run_as_parent(tmp_path):
    """The processor maps the task's span while its flow's is still open (another batch): each try finds it. (It
    wrote a STARTED row of attempt 1 as the span started: the latest state of attempt 1 is its FAILED row.)"""
    location = str(tmp_path / "datasink")
    provider = TracerProvider()
    provider.add_span_processor(DatasinkSpanProcessor(location, schedule_delay=0.05))
    tracer = provider.get_tracer("prefect", "3.9.1")
    flow = {"prefect.run.type": "flow", "prefect.run.name": "tunneling-hornet", "prefect.run.id": "c8c6"}
    with tracer.start_as_current_span("tunneling-hornet", attributes={**flow, "prefect.flow.id": "f3e3"}):
        task = tracer.start_span("flaky_extract-865", attributes={**TASK, "prefect.run.name": "flaky_extract-865"})
        retried = (_state("Running", 1), _exception(2, "not ready"), _state("Retrying", 3), _state("Completed", 4))
        for name, _, attributes in retried:
            task.add_event(name, attributes)
        task.end()
        provider.force_flush()
    provider.shutdown()
    found = _query(
        location,
        "SELECT attempt, status, parent_job_name, parent_run_id FROM job_runs_latest WHERE job_name = 'flaky_extract'",
    )
    assert sorted(found) == [(1, "FAILED", "prefect-flow-f3e3", "c8c6"), (2, "SUCCESS", "prefect-flow-f3e3", "c8c6")]
