"""Replay of OTLP JSON Lines files: the rows of the live path, bad lines skipped by number, idempotent.

The files are built to the OTLP JSON spec (one ``TracesData`` per line, lowerCamelCase names, hex ids, integer
enums, 64-bit integers as strings) from real SDK spans encoded by opentelemetry-python's OTLP encoder; the
opentelemetry-exporter-otlp-json-file package cannot be installed beside the OTLP exporters of the same SDK
release (it pins an older opentelemetry-exporter-otlp-common).
"""

from __future__ import annotations

import gzip
import json

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from otlp_payloads import nightly_spans, otlp_json_line

from otel_datasink import local
from otel_datasink.catalog import VIEWS
from otel_datasink.cli import main
from otel_datasink.exporter import DatasinkSpanExporter


def write_jsonl(path, batches: list[list], corrupt_at: dict[int, str]) -> None:
    """One line per batch, with the given bad lines inserted at their (1-based) line numbers."""
    lines = [otlp_json_line(spans) for spans in batches]
    for number in sorted(corrupt_at):
        lines.insert(number - 1, corrupt_at[number])
    text = "\n".join(lines) + "\n"
    if str(path).endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def view_answers(location: str) -> dict[str, list[tuple]]:
    """Every view's rows but ingested_at (when the rows were written, the one thing a replay changes), sorted."""
    con = local.connect(location)
    answers = {}
    for view in VIEWS:
        relation = con.sql(f"SELECT * FROM {view}")
        if "ingested_at" in relation.columns:
            relation = con.sql(f"SELECT * EXCLUDE (ingested_at) FROM {view}")
        answers[view] = sorted(relation.fetchall(), key=repr)
    con.close()
    return answers


def assert_same_views(first: str, second: str) -> None:
    # The views read the clock (freshness minutes): ask both side by side, once more across a minute boundary.
    for attempt in range(2):
        a, b = view_answers(first), view_answers(second)
        if a == b or attempt == 1:
            break
    assert a["job_runs_latest"] and a["dataset_status_latest"]
    for view in VIEWS:
        assert b[view] == a[view], view


@pytest.mark.parametrize("name", ["traces.jsonl", "traces.jsonl.gz"])
def test_replay_twice_with_corrupt_lines_gives_the_live_paths_views(tmp_path, capsys, name):
    batches = [nightly_spans(i) for i in range(4)]
    path = tmp_path / name
    write_jsonl(path, batches, {3: '{"resourceSpans": [{"scopeSpans": [', 5: '{"resourceSpans": "no"}'})
    replayed = str(tmp_path / "replayed")
    live = str(tmp_path / "live")

    assert main(["replay", "--location", replayed, "--no-progress", str(path)]) == 0
    summary = capsys.readouterr().out
    # 4 batches of 3 spans (2 job spans, 1 dataset update each); lines 3 and 5 are bad.
    assert "read 12 span(s) from 6 line(s) of 1 file(s); wrote 12 row(s) (8 job_runs, 4 dataset_status)" in summary
    assert "2 bad line(s) skipped" in summary
    assert f"{path}:3: not JSON" in summary
    assert f"{path}:5: not OTLP trace data" in summary

    # The same spans through the live exporter path.
    exporter = DatasinkSpanExporter(live)
    for spans in batches:
        exporter.export(spans)
    assert_same_views(live, replayed)

    assert main(["replay", "--location", replayed, "--no-progress", str(path)]) == 0
    assert "(8 job_runs," in capsys.readouterr().out
    assert_same_views(live, replayed)


def test_replay_rows_equal_the_exporters_rows_but_for_ingested_at(tmp_path, capsys, read_tables):
    batches = [nightly_spans(0)]
    path = tmp_path / "one.jsonl"
    write_jsonl(path, batches, {})
    main(["replay", "--location", str(tmp_path / "replayed"), "--no-progress", str(path)])
    DatasinkSpanExporter(str(tmp_path / "live")).export(batches[0])

    def rows(location, table):
        found = read_tables(location).rows(table)
        return sorted(json.dumps({**row, "ingested_at": None}, default=str, sort_keys=True) for row in found)

    for table in ("job_runs", "dataset_status"):
        assert rows(str(tmp_path / "replayed"), table) == rows(str(tmp_path / "live"), table), table


def test_replay_with_a_profile_and_run_type(tmp_path, capsys, read_tables):
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = provider.get_tracer("t").start_span(
        "dag_run.nightly", attributes={"airflow.dag_id": "nightly", "airflow.dag_run.run_id": "manual__x"}
    )
    span.set_status(Status(StatusCode.OK))
    span.end()
    path = tmp_path / "airflow.jsonl"
    write_jsonl(path, [list(memory.get_finished_spans())], {})
    location = str(tmp_path / "tables")

    assert main(["replay", "--location", location, "--no-progress", "--profile", "contract", str(path)]) == 0
    assert "(0 job_runs," in capsys.readouterr().out  # narrowed to the contract's spans: Airflow's are not runs

    assert main(["replay", "--location", location, "--no-progress", str(path)]) == 0  # the default knows Airflow
    [run] = read_tables(location).rows("job_runs")
    assert (run["job_name"], run["run_type"]) == ("nightly", "manual")

    other = str(tmp_path / "typed")
    assert (
        main(
            ["replay", "--location", other, "--no-progress", "--profile", "airflow", "--run-type", "replay", str(path)]
        )
        == 0
    )
    [run] = read_tables(other).rows("job_runs")
    assert run["run_type"] == "manual"  # the span's own run type wins


def test_replay_run_type_marks_spans_without_one(tmp_path, capsys, read_tables):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [nightly_spans(0)], {})
    location = str(tmp_path / "tables")
    assert main(["replay", "--location", location, "--no-progress", "--run-type", "replay", str(path)]) == 0
    assert {row["run_type"] for row in read_tables(location).rows("job_runs")} == {"replay"}


def test_replay_of_a_missing_file_or_bad_profile_fails_with_a_message(tmp_path, capsys):
    # Both are the command failing (exit status 2), as in every other command.
    assert main(["replay", "--location", str(tmp_path / "t"), str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"otel-datasink replay: cannot read {tmp_path / 'missing.jsonl'}: No such file or directory"
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("")
    assert main(["replay", "--location", str(tmp_path / "t"), "--profile", "nope", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("otel-datasink replay: ") and "unknown mapping profile 'nope'" in line


def test_a_gzip_file_cut_short_keeps_its_lines_before_the_cut_and_the_next_file_is_read(tmp_path, capsys, read_tables):
    cut = tmp_path / "cut.jsonl.gz"
    write_jsonl(cut, [nightly_spans(i) for i in range(40)], {})
    whole = cut.read_bytes()
    cut.write_bytes(whole[: len(whole) * 3 // 4])  # a writer that crashed mid-file
    after = tmp_path / "after.jsonl"
    write_jsonl(after, [nightly_spans(100)], {})
    location = str(tmp_path / "tables")

    assert main(["replay", "--location", location, "--no-progress", "--batch-spans", "1", str(cut), str(after)]) == 0
    out = capsys.readouterr().out
    (damage,) = [line for line in out.splitlines() if "gzip data cut short or corrupt" in line]
    number = int(damage.split(":")[1])
    assert damage.startswith(f"  {cut}:") and 1 < number <= 40
    # Every line before the damage was written, and so was the next file.
    assert len(read_tables(location).rows("job_runs")) == 2 * (number - 1) + 2


def test_replay_reads_many_files_in_batches(tmp_path, capsys, read_tables):
    paths = []
    for i in range(3):
        path = tmp_path / f"part-{i}.jsonl"
        write_jsonl(path, [nightly_spans(10 * i + j) for j in range(3)], {})
        paths.append(str(path))
    location = str(tmp_path / "tables")
    assert main(["replay", "--location", location, "--no-progress", "--batch-spans", "5", *paths]) == 0
    out = capsys.readouterr().out
    assert "read 27 span(s) from 9 line(s) of 3 file(s); wrote 27 row(s) (18 job_runs," in out
    assert len(read_tables(location).rows("job_runs")) == 18


def test_the_example_file_replays_as_its_readme_says(tmp_path, capsys, read_tables):
    from pathlib import Path

    sample = Path(__file__).resolve().parent.parent / "examples" / "replay_jsonl" / "traces.jsonl"
    location = str(tmp_path / "tables")
    assert main(["replay", "--location", location, "--no-progress", str(sample)]) == 0
    out = capsys.readouterr().out
    assert "read 6 span(s) from 4 line(s) of 1 file(s); wrote 6 row(s) (3 job_runs," in out
    assert f"{sample}:3: not JSON" in out
    runs = sorted(read_tables(location).rows("job_runs"), key=lambda row: row["start_time"])
    assert [(r["status"], r["error_type"]) for r in runs] == [
        ("SUCCESS", None),
        ("FAILED", "ConnectionError"),
        ("SUCCESS", None),
    ]
