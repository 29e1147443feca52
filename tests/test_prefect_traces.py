"""Prefect 3's real traces (``tests/fixtures/prefect/``, captured from Prefect 3.9.1 under
``opentelemetry-instrument``) replayed with no profile and read back with DuckDB: one row per Prefect run, matching
what Prefect's own server recorded of it (the fixture's README) field by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_datasink import local
from otel_datasink.cli import main
from otel_datasink.mapping import map_records
from otel_datasink.profiles import load_profile
from otel_datasink.sdk import from_readable_span

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


@pytest.fixture(scope="module")
def prefect_location(tmp_path_factory) -> str:
    """The captured payload replayed with no profile into a fresh location."""
    location = str(tmp_path_factory.mktemp("prefect") / "datasink")
    assert main(["replay", "--location", location, "--no-progress", str(FIXTURE)]) == 0
    return location


def _query(location: str, sql: str) -> list[tuple]:
    with local.connect(location) as con:
        return con.execute(sql).fetchall()


def test_every_prefect_run_is_one_row_with_prefects_own_id_tries_state_and_error(prefect_location):
    found = _query(
        prefect_location,
        "SELECT job_name, run_id, attempt, status, error_type, error_message FROM job_runs ORDER BY job_name, run_id",
    )
    expected = sorted(
        (name, run_id, attempt, status, error_type, BROKEN_REPORT_ERROR if name == BROKEN_REPORT else message)
        for name, run_id, attempt, status, error_type, message in PREFECTS_RUNS
    )
    assert found == expected


def test_the_prefect_servers_own_spans_in_the_capture_are_never_runs(prefect_location):
    spans = sum(
        len(scope["spans"])
        for line in FIXTURE.read_text().splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
    )
    assert spans == len(PREFECTS_RUNS) + 107
    assert _query(prefect_location, "SELECT count(*) FROM job_runs") == [(len(PREFECTS_RUNS),)]


def test_a_retried_tasks_earlier_failed_tries_are_kept_in_its_attributes(prefect_location):
    found = _query(
        prefect_location,
        "SELECT job_name, attributes['prefect.failed_tries'], attributes['prefect.failed_tries.errors'] "
        "FROM job_runs WHERE attributes['prefect.failed_tries'] IS NOT NULL ORDER BY job_name",
    )
    assert [(name, count, json.loads(errors)) for name, count, errors in found] == [
        ("flaky_extract", "1", ["ValueError: source not ready (try 1)"]),
        ("publish", "1", ["ValueError: target bucket missing (2 rows)"]),
    ]


def test_task_runs_of_one_task_in_two_flows_are_one_job_and_runs_of_a_flow_keep_its_job_name(prefect_location):
    found = _query(prefect_location, "SELECT job_name, count(*) FROM job_runs GROUP BY job_name ORDER BY job_name")
    assert dict(found)["load"] == 2
    assert not [name for name, _ in found if name.endswith(("-08f", "-b89", "-865", "-4ab"))]


def _prefect_span_rows(attributes: dict, profile: str | None = None) -> list[dict]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("prefect", "3.9.1").start_span(str(attributes["prefect.run.name"]), attributes=attributes).end()
    provider.shutdown()
    records = [from_readable_span(span) for span in memory.get_finished_spans()]
    return map_records(records, load_profile(profile))["job_runs"]


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
