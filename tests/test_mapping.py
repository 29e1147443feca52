"""The mapping on its own: span records in, rows out, as every front door (processor, exporter, OTLP) uses it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from otel_datasink.mapping import (
    MAX_STRING,
    STATUS_CODE_ERROR,
    STATUS_CODE_OK,
    STATUS_CODE_UNSET,
    SpanRecord,
    clean_str,
    clean_text,
    map_records,
    to_int,
    to_millis,
)
from otel_datasink.profiles import default_profile

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00F067AA0BA902B7
START_NS = 1_795_000_000_000_000_000
END_NS = START_NS + 2_500_000_000
INGESTED_MS = 1_795_000_100_000


def record(attributes=None, *, events=(), status_code=STATUS_CODE_UNSET, status_message="", end=END_NS, **fields):
    return SpanRecord(
        name=fields.pop("name", "job"),
        trace_id=fields.pop("trace_id", TRACE_ID),
        span_id=fields.pop("span_id", SPAN_ID),
        parent_span_id=fields.pop("parent_span_id", None),
        start_time_ns=START_NS,
        end_time_ns=end,
        status_code=status_code,
        status_message=status_message,
        attributes={"job.name": "ingest", **(attributes or {})},
        events=list(events),
        resource=fields.pop("resource", {"service.name": "etl"}),
    )


def rows(*records: SpanRecord) -> dict:
    return map_records(records, default_profile, ingested_at_ms=INGESTED_MS)


def one_run(*args, **kwargs) -> dict:
    [run] = rows(record(*args, **kwargs))["job_runs"]
    return run


def test_ended_span_maps_to_a_complete_success_row():
    run = one_run({"dataset.name": "orders", "job.records_processed": 5, "owner": "team-a"}, parent_span_id=7)
    assert run == {
        "run_id": "0af7651916cd43dd8448eb211c80319c00f067aa0ba902b7",
        "job_name": "ingest",
        "job_type": "batch",
        "status": "SUCCESS",
        "dataset": "orders",
        "event_time": END_NS // 1_000_000,
        "start_time": START_NS // 1_000_000,
        "end_time": END_NS // 1_000_000,
        "duration_ms": 2500,
        "records_processed": 5,
        "error_type": None,
        "error_message": None,
        "attempt": 1,
        "logical_date": None,
        "run_type": None,
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "00f067aa0ba902b7",
        "parent_span_id": "0000000000000007",
        "service_name": "etl",
        "attributes": {"owner": "team-a"},
        "ingested_at": INGESTED_MS,
        "parent_job_name": None,
        "parent_run_id": None,
        "owners": None,
        "inputs": None,
    }


def test_run_id_is_the_same_for_the_same_span_and_differs_between_spans():
    assert one_run()["run_id"] == one_run()["run_id"]
    assert one_run(span_id=SPAN_ID + 1)["run_id"] != one_run()["run_id"]
    assert one_run({"job.run.id": "manual-42"})["run_id"] == "manual-42"


def test_span_without_end_is_a_started_row_without_dataset_updates():
    mapped = rows(record({"dataset.name": "orders"}, end=None))
    [run] = mapped["job_runs"]
    assert (run["status"], run["event_time"], run["end_time"], run["duration_ms"]) == (
        "STARTED",
        START_NS // 1_000_000,
        None,
        None,
    )
    assert mapped["dataset_status"] == []


@pytest.mark.parametrize(
    ("status_code", "status_message", "attributes", "events", "expected"),
    [
        (STATUS_CODE_ERROR, "disk full", {"error.type": "OSError"}, [], ("FAILED", "OSError", "disk full")),
        (STATUS_CODE_ERROR, "", {}, [], ("FAILED", None, None)),
        (
            STATUS_CODE_UNSET,
            "",
            {},
            [
                (
                    "exception",
                    END_NS,
                    {"exception.type": "KeyError", "exception.message": "id", "exception.escaped": True},
                )
            ],
            ("FAILED", "KeyError", "id"),
        ),
        (
            STATUS_CODE_ERROR,
            "",
            {"error.type": "Timeout"},
            [("exception", END_NS, {"exception.type": "KeyError", "exception.message": "id"})],
            ("FAILED", "Timeout", "id"),
        ),
        (
            STATUS_CODE_UNSET,
            "",
            {},
            [("exception", END_NS, {"exception.type": "KeyError", "exception.escaped": False})],
            ("SUCCESS", None, None),
        ),
        (STATUS_CODE_OK, "", {"error.type": "ignored"}, [], ("SUCCESS", None, None)),
    ],
    ids=["status-and-error-type", "bare-error", "escaped-exception", "error-type-beats-exception", "handled", "ok"],
)
def test_status_and_error_columns_follow_span_status_and_exceptions(
    status_code, status_message, attributes, events, expected
):
    run = one_run(attributes, status_code=status_code, status_message=status_message, events=events)
    assert (run["status"], run["error_type"], run["error_message"]) == expected


def test_spans_the_profile_rejects_make_no_rows():
    not_a_job = record()
    not_a_job.attributes = {"http.method": "GET"}
    assert rows(not_a_job, record(span_id=2)) == {
        "job_runs": [rows(record(span_id=2))["job_runs"][0]],
        "dataset_status": [],
        "dataset_checks": [],
    }


def test_dataset_update_events_become_rows_and_replace_the_implied_update():
    events = [
        (
            "dataset.update",
            END_NS - 10**9,
            {"dataset.name": "a", "dataset.records_written": 3, "dataset.record_count": 9},
        ),
        ("dataset.update", END_NS, {"dataset.name": "b", "dataset.freshness_sla_minutes": "15"}),
        ("dataset.update", END_NS, {"dataset.records_written": 1}),  # no dataset.name: not an update
        ("log", END_NS, {"dataset.name": "c"}),
    ]
    updates = rows(record({"dataset.name": "primary"}, events=events))["dataset_status"]
    assert [(u["dataset"], u["updated_at"], u["records_written"], u["record_count"]) for u in updates] == [
        ("a", (END_NS - 10**9) // 1_000_000, 3, 9),
        ("b", END_NS // 1_000_000, None, None),
    ]
    assert updates[1]["freshness_sla_minutes"] == 15
    assert all(u["event_time"] == u["updated_at"] for u in updates)


def test_dataset_name_alone_implies_one_update_at_the_end_of_the_run():
    [update] = rows(record({"dataset.name": "orders", "job.records_processed": 12}))["dataset_status"]
    assert update == {
        "dataset": "orders",
        "status": "SUCCESS",
        "updated_at": END_NS // 1_000_000,
        "records_written": 12,
        "record_count": None,
        "watermark": None,
        "freshness_sla_minutes": None,
        "job_name": "ingest",
        "run_id": "0af7651916cd43dd8448eb211c80319c00f067aa0ba902b7",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "00f067aa0ba902b7",
        "service_name": "etl",
        "event_time": END_NS // 1_000_000,
        "ingested_at": INGESTED_MS,
        "owners": None,
    }


def test_logical_date_reads_iso_8601_and_epoch_ns_alike():
    iso = one_run({"job.run.logical_date": "2026-11-01T06:00:00+00:00"})["logical_date"]
    ns = one_run({"job.run.logical_date": 1_793_512_800_000_000_000})["logical_date"]
    assert iso == ns == 1_793_512_800_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-01T06:00:00Z", 1_793_512_800_000),
        ("2026-11-01T07:00:00+01:00", 1_793_512_800_000),
        ("2026-11-01T06:00:00", 1_793_512_800_000),  # naive: read as UTC
        ("2026-11-01", 1_793_491_200_000),
        ("2026-11-01T06:00:00.123456789Z", 1_793_512_800_123),  # nanoseconds, as Java's clients write them
        ("2038-05-27T15:37:30.226Z", 2_158_587_450_226),  # a float timestamp() * 1000 gave ...225
        (1_793_512_800_000_000_000, 1_793_512_800_000),  # ns, as the contract says
        (1_793_512_800_000_000, 1_793_512_800_000),  # us
        (1_793_512_800_000, 1_793_512_800_000),  # ms
        (1_793_512_800, 1_793_512_800_000),  # s
        ("1793512800000000000", 1_793_512_800_000),
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_to_millis_reads_the_instants_users_pass(value, expected):
    assert to_millis(value) == expected
    if expected is not None:
        assert datetime.fromtimestamp(expected / 1000, tz=timezone.utc).year in (2026, 2038)


def test_iso_times_keep_their_exact_millisecond():
    # 3000 instants from 1970 to 2093; float arithmetic got 18 of them a millisecond short.
    for step in range(3000):
        millis = step * 1_300_003_000 + step % 1000
        instant = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=millis)
        text = instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert to_millis(text) == millis, text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, 12),
        ("12", 12),
        (" 12 ", 12),
        ("12.0", 12),
        (3.0, 3),
        ("lots", None),
        (True, None),
        (2**70, None),
        # Beyond int64 whatever the type: Parquet could not hold it.
        (1e30, None),
        ("1e30", None),
        ("9" * 30, None),
        (float("nan"), None),
    ],
)
def test_to_int_coerces_numbers_and_refuses_the_rest(value, expected):
    assert to_int(value) == expected


def test_clean_str_makes_any_value_a_printable_capped_string():
    assert clean_str(["a", 1]) == '["a", 1]'
    assert clean_str(b"\x01\xff") == "01ff"
    assert clean_str("a\x00b\nc") == "abc"
    assert clean_str(7) == "7"
    assert len(clean_str("x" * (MAX_STRING + 10))) == MAX_STRING
    assert clean_str(None) is None


def test_clean_text_keeps_line_breaks_and_tabs_and_drops_other_controls():
    assert clean_text("one\r\n\ttwo\x00\x1b[0m three") == "one\n\ttwo[0m three"
    assert clean_text("no\u00a0break \U0001f469\u200d\U0001f4bb \ud800") == "no\u00a0break \U0001f469\u200d\U0001f4bb "
    assert len(clean_text("x\n" * MAX_STRING)) == MAX_STRING
    assert (clean_text(None), clean_text(7), clean_text("")) == (None, "7", "")


def _escaped(exception_type, message):
    return [
        (
            "exception",
            END_NS,
            {"exception.type": exception_type, "exception.message": message, "exception.escaped": "True"},
        )
    ]


@pytest.mark.parametrize(
    ("description", "events", "expected"),
    [
        # The SDK's own "ExceptionType: message" (short class name, even for a qualified exception.type).
        ("ValueError: bad\nrow", _escaped("ValueError", "bad\nrow"), ("ValueError", "bad\nrow")),
        (
            "LedgerError: x\n\ty",
            _escaped("ledger.errors.LedgerError", "x\n\ty"),
            ("ledger.errors.LedgerError", "x\n\ty"),
        ),
        ("ValueError: ", _escaped("ValueError", ""), ("ValueError", None)),
        # Anything else is the span's own description, kept whole.
        (
            "ValueError: retried 3 times",
            _escaped("ValueError", "bad row"),
            ("ValueError", "ValueError: retried 3 times"),
        ),
        ("load failed", _escaped("KeyError", "id"), ("KeyError", "load failed")),
        ("", _escaped("KeyError", "line 1\nline 2"), ("KeyError", "line 1\nline 2")),
    ],
    ids=["sdk-builtin", "sdk-qualified", "sdk-empty-message", "own-with-prefix", "own", "no-description"],
)
def test_error_message_drops_only_the_type_the_sdk_put_before_the_exception_message(description, events, expected):
    run = one_run(status_code=STATUS_CODE_ERROR, status_message=description, events=events)
    assert (run["error_type"], run["error_message"]) == expected


def check(at_ns=END_NS - 1_000_000, **attributes):
    return ("dataset.check", at_ns, attributes)


def test_dataset_check_events_become_check_rows_of_the_run():
    events = [
        check(
            **{
                "dataset.name": "orders",
                "check.name": "not_null_orders_id",
                "check.passed": True,
                "check.assertion": "not_null",
                "check.column": "id",
                "check.actual": 0,
                "check.expected": "0",
                "check.severity": "error",
            }
        ),
        check(**{"check.name": "row_count", "check.passed": False, "check.actual": 12, "check.expected": ">= 100"}),
    ]
    found = rows(record({"dataset.name": "orders_clean", "job.run.attempt": 2}, events=events))
    run = found["job_runs"][0]
    at = (END_NS - 1_000_000) // 1_000_000
    same = {
        "checked_at": at,
        "event_time": at,
        "job_name": "ingest",
        "run_id": run["run_id"],
        "attempt": 2,
        "trace_id": run["trace_id"],
        "span_id": run["span_id"],
        "ingested_at": INGESTED_MS,
    }
    assert found["dataset_checks"] == [
        {
            "dataset": "orders",
            "check_name": "not_null_orders_id",
            "status": "PASSED",
            "assertion": "not_null",
            "column_name": "id",
            "actual": "0",
            "expected": "0",
            "severity": "error",
            **same,
        },
        # Without dataset.name the check is of the run's dataset.
        {
            "dataset": "orders_clean",
            "check_name": "row_count",
            "status": "FAILED",
            "assertion": None,
            "column_name": None,
            "actual": "12",
            "expected": ">= 100",
            "severity": None,
            **same,
        },
    ]


@pytest.mark.parametrize(
    ("passed", "status"),
    [
        (True, "PASSED"),
        (False, "FAILED"),
        ("true", "PASSED"),
        ("False", "FAILED"),
        (1, "PASSED"),
        (0, "FAILED"),
        (" yes ", "PASSED"),
        ("no", "FAILED"),
    ],
)
def test_check_passed_is_read_from_bools_strings_and_ints(passed, status):
    [row] = rows(record(events=[check(**{"dataset.name": "d", "check.name": "c", "check.passed": passed})]))[
        "dataset_checks"
    ]
    assert row["status"] == status


@pytest.mark.parametrize(
    "attributes",
    [
        {"dataset.name": "d", "check.name": "c"},  # no result
        {"dataset.name": "d", "check.name": "c", "check.passed": "maybe"},
        {"dataset.name": "d", "check.name": "c", "check.passed": 2},
        {"dataset.name": "d", "check.passed": True},  # no name
        {"check.name": "c", "check.passed": True},  # no dataset, and the run names none
    ],
)
def test_a_check_event_without_a_name_dataset_or_readable_result_makes_no_check_row(attributes):
    found = rows(record(events=[check(**attributes)]))
    assert found["dataset_checks"] == []
    assert len(found["job_runs"]) == 1  # the run is recorded all the same


def test_a_started_row_makes_no_check_rows():
    found = rows(record(end=None, events=[check(**{"dataset.name": "d", "check.name": "c", "check.passed": True})]))
    assert [run["status"] for run in found["job_runs"]] == ["STARTED"]
    assert found["dataset_checks"] == []


def test_check_events_are_no_dataset_updates():
    found = rows(
        record(
            {"dataset.name": "out"}, events=[check(**{"dataset.name": "in", "check.name": "c", "check.passed": True})]
        )
    )
    # The span's one implied update of its dataset still happens: a check updates nothing.
    assert [update["dataset"] for update in found["dataset_status"]] == ["out"]
