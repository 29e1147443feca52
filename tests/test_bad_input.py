"""Jobs say odd things: wrong types, huge strings, hostile names. The row is still written, never an exception."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from job_spans import write_spans
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from otlp_payloads import otlp_json

from otel_datasink import DatasinkSpanProcessor
from otel_datasink.mapping import MAX_STRING, map_records
from otel_datasink.otlp import records_from_json, records_from_protobuf
from otel_datasink.profiles import DEFAULT_PROFILE
from otel_datasink.sdk import from_readable_span

MEGABYTE = 1024 * 1024


@pytest.fixture
def job(local_location):
    """``job(attributes, status=None, events=())`` ends one job span through the processor and flushes."""
    provider = TracerProvider()
    provider.add_span_processor(DatasinkSpanProcessor(local_location, schedule_delay=0.1))
    tracer = provider.get_tracer("tests")

    def run(attributes: dict, status: Status | None = None, events=()) -> None:
        with tracer.start_as_current_span("job", attributes=attributes) as span:
            for name, event_attributes in events:
                span.add_event(name, event_attributes)
            if status is not None:
                span.set_status(status)
        assert provider.force_flush(5000)

    yield run
    provider.shutdown()


def terminal(read_tables, location: str) -> list[dict]:
    return [row for row in read_tables(location).rows("job_runs") if row["status"] != "STARTED"]


def test_negative_numbers_in_the_environment_are_ignored_and_the_job_is_still_recorded(
    local_location, read_tables, monkeypatch
):
    for variable, raw in (("MAX_QUEUE_SIZE", "-1"), ("MAX_EXPORT_BATCH_SIZE", "-512"), ("SCHEDULE_DELAY", "-5000")):
        monkeypatch.setenv(f"OTEL_EXPORTER_DATASINK_{variable}", raw)
    provider = TracerProvider()
    processor = DatasinkSpanProcessor(local_location)
    provider.add_span_processor(processor)
    assert (processor.options.max_queue_size, processor.options.max_export_batch_size) == (2048, 512)
    assert processor.options.schedule_delay == 5.0
    with provider.get_tracer("tests").start_as_current_span("job", attributes={"job.name": "a"}):
        pass
    assert provider.force_flush(5000)
    provider.shutdown()
    assert [row["job_name"] for row in terminal(read_tables, local_location)] == ["a"]


def test_numeric_strings_are_coerced_and_nonsense_is_kept_in_attributes(job, local_location, read_tables):
    job({"job.name": "a", "job.records_processed": "12", "job.run.attempt": 2.0})
    job({"job.name": "b", "job.records_processed": "lots", "job.run.logical_date": "someday"})
    runs = {row["job_name"]: row for row in terminal(read_tables, local_location)}

    assert (runs["a"]["records_processed"], runs["a"]["attempt"], runs["a"]["attributes"]) == (12, 2, {})
    assert runs["b"]["records_processed"] is None
    assert runs["b"]["logical_date"] is None
    assert runs["b"]["attributes"] == {"job.records_processed": "lots", "job.run.logical_date": "someday"}


def test_job_type_is_read_case_insensitively_and_unknown_types_fall_back_to_batch(job, local_location, read_tables):
    job({"job.name": "a", "job.type": "STREAMING"})
    job({"job.name": "b", "job.type": "weird"})
    runs = {row["job_name"]: row for row in terminal(read_tables, local_location)}

    assert runs["a"]["job_type"] == "streaming"
    assert (runs["b"]["job_type"], runs["b"]["attributes"]) == ("batch", {"job.type": "weird"})


def test_job_name_of_another_type_becomes_its_string(job, local_location, read_tables):
    job({"job.name": 42})
    job({"job.name": ["extract", "load"]})
    assert {row["job_name"] for row in terminal(read_tables, local_location)} == {"42", '["extract", "load"]'}


def test_megabyte_strings_are_capped_and_the_row_is_still_written(job, local_location, read_tables):
    job(
        {"job.name": "big", "notes": "n" * MEGABYTE, "dataset.name": "d" * MEGABYTE},
        status=Status(StatusCode.ERROR, "e" * MEGABYTE),
    )
    [run] = terminal(read_tables, local_location)

    assert run["status"] == "FAILED"
    assert run["error_message"] == "e" * MAX_STRING
    assert run["attributes"]["notes"] == "n" * MAX_STRING
    assert run["dataset"] == "d" * MAX_STRING
    assert sum(path.stat().st_size for path in Path(local_location).rglob("*.parquet")) < MEGABYTE


def test_hostile_dataset_names_are_cleaned_and_never_become_paths(job, local_location, read_tables):
    hostile = ["../../escaped", "a/b/../../../c", "nul\x00byte", "/abs/path", "..", "dt=1999-01-01/x"]
    job(
        {"job.name": "hostile", "dataset.name": "../primary"},
        events=[("dataset.update", {"dataset.name": name, "dataset.records_written": "many"}) for name in hostile],
    )
    updates = read_tables(local_location).rows("dataset_status")

    assert sorted(row["dataset"] for row in updates) == sorted(name.replace("\x00", "") for name in hostile)
    assert {row["records_written"] for row in updates} == {None}
    [run] = terminal(read_tables, local_location)
    assert run["dataset"] == "../primary"
    # Every file the writer made is a Parquet file in a dt folder of one of the two tables.
    root = Path(local_location).parent
    written = [Path(folder, name) for folder, _, names in os.walk(root) for name in names]
    assert written
    for path in written:
        relative = path.relative_to(local_location)
        assert relative.parts[0] in ("job_runs", "dataset_status") and relative.parts[1].startswith("dt=20")
        assert len(relative.parts) == 3 and relative.suffix == ".parquet"


def test_unencodable_and_control_characters_are_dropped_and_the_row_is_written(job, local_location, read_tables):
    # Lone surrogates cannot be written as UTF-8: left in, they would fail the whole file.
    job(
        {"job.name": "a\ud800b", "k\x00ey": "v\ud83d", "dataset.name": "d\x07s", "ratio": float("nan")},
        status=Status(StatusCode.ERROR, "m\udfffsg"),
        events=[("dataset.update", {"dataset.name": "e\ud800", "dataset.records_written": float("nan")})],
    )
    [run] = terminal(read_tables, local_location)
    assert (run["job_name"], run["dataset"], run["error_message"]) == ("ab", "ds", "msg")
    assert run["attributes"] == {"key": "v", "ratio": "nan"}
    [update] = read_tables(local_location).rows("dataset_status")
    assert (update["dataset"], update["records_written"]) == ("e", None)


def test_numbers_beyond_int64_become_null_and_later_runs_are_still_written(job, local_location, read_tables):
    job(
        {"job.name": "huge", "job.records_processed": "1e30", "job.run.attempt": 1e300},
        events=[("dataset.update", {"dataset.name": "d", "dataset.record_count": "9" * 30})],
    )
    job({"job.name": "next", "job.records_processed": 5})
    runs = {row["job_name"]: row for row in terminal(read_tables, local_location)}

    assert set(runs) == {"huge", "next"}
    assert (runs["huge"]["records_processed"], runs["huge"]["attempt"]) == (None, 1)
    assert runs["huge"]["attributes"] == {"job.records_processed": "1e30", "job.run.attempt": "1e+300"}
    assert runs["next"]["records_processed"] == 5
    [update] = read_tables(local_location).rows("dataset_status")
    assert update["record_count"] is None


def test_boolean_and_map_attribute_values_are_stored_as_json_text():
    from otel_datasink.mapping import clean_str

    assert (clean_str(True), clean_str(False)) == ("true", "false")
    assert clean_str({"region": "eu", "shards": 3}) == '{"region": "eu", "shards": 3}'
    assert clean_str((True, 2)) == "[true, 2]"
    assert clean_str({"key": b"\x01\xff"}) == '{"key": "01ff"}'


def test_a_run_type_in_other_case_counts_as_the_contracts_value():
    from otel_datasink.mapping import SpanRecord, job_run_row

    def run_type(value):
        attributes = {"job.name": "job"} if value is None else {"job.name": "job", "job.run.type": value}
        return job_run_row(SpanRecord("job", 1, 1, None, 0, 10**9, 0, "", attributes), 0)["run_type"]

    assert [run_type(value) for value in ("Backfill", "SCHEDULED", "backfill")] == ["backfill", "scheduled", "backfill"]
    assert (run_type("nightly"), run_type(None)) == ("nightly", None)


# --- error messages keep their lines -------------------------------------------------------------------


class LedgerError(Exception):
    """An exception of a module of the user's: the SDK's exception.type names it with its module."""


MULTI_LINE = "posting 7 failed:\r\n\tdebit != credit\x00\n\tsee ledger.log"
KEPT = "posting 7 failed:\n\tdebit != credit\n\tsee ledger.log"


def _raise_in_job(tracer, error: Exception, **span_options) -> None:
    with pytest.raises(type(error)):
        with tracer.start_as_current_span("job", attributes={"job.name": "ledger"}, **span_options):
            raise error


def _ended_spans(emit) -> list:
    """The SDK spans ``emit(tracer)`` ends."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    emit(provider.get_tracer("tests"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def test_an_escaped_multi_line_exception_keeps_its_lines_and_tabs_without_the_type_again(local_location, read_tables):
    provider = TracerProvider()
    provider.add_span_processor(DatasinkSpanProcessor(local_location, schedule_delay=0.1))
    _raise_in_job(provider.get_tracer("tests"), LedgerError(MULTI_LINE))
    provider.shutdown()

    [run] = terminal(read_tables, local_location)
    # The SDK's description is "LedgerError: <message>": the type is error_type's, the message error_message's.
    assert (run["status"], run["error_type"], run["error_message"]) == ("FAILED", f"{__name__}.LedgerError", KEPT)


def test_a_description_the_span_set_itself_is_kept_whole_with_its_lines(job, local_location, read_tables):
    job(
        {"job.name": "ledger", "error.type": "ValueError"},
        status=Status(StatusCode.ERROR, "ValueError: the job's own words\n\tline two"),
    )
    [run] = terminal(read_tables, local_location)
    assert (run["error_type"], run["error_message"]) == ("ValueError", "ValueError: the job's own words\n\tline two")


def test_without_a_recorded_exception_the_sdk_description_is_the_whole_message(local_location, read_tables):
    provider = TracerProvider()
    provider.add_span_processor(DatasinkSpanProcessor(local_location, schedule_delay=0.1))
    _raise_in_job(provider.get_tracer("tests"), LedgerError(MULTI_LINE), record_exception=False)
    provider.shutdown()

    [run] = terminal(read_tables, local_location)
    # error_type is unknown, so the type stays where the span put it.
    assert (run["error_type"], run["error_message"]) == (None, f"LedgerError: {KEPT}")


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_otlp_keeps_an_error_messages_lines_as_the_sdk_path_does(encoding, local_location, read_tables):
    spans = _ended_spans(lambda tracer: _raise_in_job(tracer, LedgerError(MULTI_LINE)))
    request = encode_spans(spans)
    if encoding == "protobuf":
        records, _, _ = records_from_protobuf(request.SerializeToString())
    else:
        records, _ = records_from_json(otlp_json(request))
    write_spans(local_location, records)

    [run] = terminal(read_tables, local_location)
    assert (run["error_type"], run["error_message"]) == (f"{__name__}.LedgerError", KEPT)
    assert (
        run["error_message"]
        == map_records([from_readable_span(spans[0])], DEFAULT_PROFILE)["job_runs"][0]["error_message"]
    )


def test_names_and_attribute_values_still_lose_their_line_breaks(job, local_location, read_tables):
    job({"job.name": "two\nlines", "note": "a\nb"}, status=Status(StatusCode.ERROR, "a\nb"))
    [run] = terminal(read_tables, local_location)
    assert (run["job_name"], run["attributes"], run["error_message"]) == ("twolines", {"note": "ab"}, "a\nb")
