"""What Athena, Glue and DuckDB see in the files: physical types, partition folders, compression, names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_datasink import DatasinkSpanExporter, DatasinkSpanProcessor
from otel_datasink.location import file_name
from otel_datasink.schema import SPAN_TABLES, TABLES


def ns(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1_000_000) * 1000


def write_spans(location: str, spans: list[tuple[int, int, dict]], *, processor: bool = False, **options) -> None:
    """Ends one job span per (start ns, end ns, attributes) with the given times."""
    provider = TracerProvider()
    if processor:
        provider.add_span_processor(DatasinkSpanProcessor(location, schedule_delay=0.1, **options))
    else:
        provider.add_span_processor(SimpleSpanProcessor(DatasinkSpanExporter(location, **options)))
    tracer = provider.get_tracer("tests")
    for start, end, attributes in spans:
        span = tracer.start_span("job", attributes={"job.name": "job", **attributes}, start_time=start)
        span.add_event("dataset.update", {"dataset.name": "d"}, timestamp=end)
        span.end(end_time=end)
    provider.shutdown()


def files(location: str, table: str) -> list[Path]:
    return sorted(Path(location, table).glob("dt=*/*.parquet"))


def test_timestamps_are_int64_utc_millis_never_int96(local_location):
    write_spans(local_location, [(ns(2026, 5, 1, 10), ns(2026, 5, 1, 11), {"job.run.logical_date": "2026-05-01"})])
    for table in SPAN_TABLES:  # the alerts table is tested with the alert rows (test_alert_incidents)
        schema = TABLES[table]
        [path] = files(local_location, table)
        parquet_schema = pq.ParquetFile(path).schema
        timestamp_columns = [field.name for field in schema if str(field.type).startswith("timestamp")]
        assert timestamp_columns, table
        for index in range(len(parquet_schema)):
            column = parquet_schema.column(index)
            assert column.physical_type != "INT96"
            if column.name in timestamp_columns:
                assert column.physical_type == "INT64"
                logical = json.loads(column.logical_type.to_json())
                assert (logical["Type"], logical["isAdjustedToUTC"], logical["timeUnit"]) == (
                    "Timestamp",
                    True,
                    "milliseconds",
                )


def test_files_hold_exactly_the_table_schema_without_the_dt_column(local_location):
    write_spans(local_location, [(ns(2026, 5, 1, 10), ns(2026, 5, 1, 11), {})])
    for table in SPAN_TABLES:  # the alerts table is tested with the alert rows (test_alert_incidents)
        schema = TABLES[table]
        [path] = files(local_location, table)
        assert pq.read_schema(path).remove_metadata() == schema


def test_partition_is_the_utc_date_of_event_time_not_of_the_upload(local_location):
    write_spans(
        local_location,
        [
            (ns(2026, 3, 9, 23, 59, 59), ns(2026, 3, 10, 0, 0, 0, 200_000), {"job.name": "midnight"}),
            (ns(2020, 2, 29, 12), ns(2020, 2, 29, 13), {"job.name": "old"}),
        ],
        processor=True,
    )
    folders = {path.parent.name: pq.read_table(path).to_pylist() for path in files(local_location, "job_runs")}
    # The run that started before midnight: STARTED on the 9th, ended on the 10th.
    assert {(row["job_name"], row["status"]) for row in folders["dt=2026-03-09"]} == {("midnight", "STARTED")}
    assert {(row["job_name"], row["status"]) for row in folders["dt=2026-03-10"]} == {("midnight", "SUCCESS")}
    assert {(row["job_name"], row["status"]) for row in folders["dt=2020-02-29"]} == {
        ("old", "STARTED"),
        ("old", "SUCCESS"),
    }
    assert sorted(path.parent.name for path in files(local_location, "dataset_status")) == [
        "dt=2020-02-29",
        "dt=2026-03-10",
    ]


@pytest.mark.parametrize(("option", "codec"), [(None, "ZSTD"), ("snappy", "SNAPPY")])
def test_compression_is_zstd_by_default_and_snappy_by_option(local_location, option, codec):
    write_spans(local_location, [(ns(2026, 5, 1, 10), ns(2026, 5, 1, 11), {})], compression=option)
    for table in SPAN_TABLES:
        [path] = files(local_location, table)
        row_group = pq.ParquetFile(path).metadata.row_group(0)
        assert {row_group.column(i).compression for i in range(row_group.num_columns)} == {codec}


def test_each_flush_adds_new_files_whose_names_sort_by_write_time(local_location):
    for hour in (10, 11, 12):
        write_spans(local_location, [(ns(2026, 5, 1, hour), ns(2026, 5, 1, hour, 30), {"job.name": f"h{hour}"})])
    paths = files(local_location, "job_runs")
    assert len(paths) == 3
    assert [pq.read_table(path)["job_name"][0].as_py() for path in paths] == ["h10", "h11", "h12"]


def test_file_names_never_collide_even_at_the_same_instant():
    names: list[str] = []

    def make() -> None:
        names.extend(file_name() for _ in range(500))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 2000
    assert len({file_name(1_795_000_000_000_000_000) for _ in range(100)}) == 100
    times = [1_795_000_000_000_000_000 + step for step in (0, 1, 999, 10**9, 10**12)]
    in_time_order = [file_name(t) for t in times]
    assert in_time_order == sorted(in_time_order)


def test_compression_from_the_environment_and_an_argument_wins_over_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COMPRESSION", "SNAPPY")
    write_spans(str(tmp_path / "env"), [(ns(2026, 5, 1, 10), ns(2026, 5, 1, 11), {})])
    write_spans(str(tmp_path / "arg"), [(ns(2026, 5, 1, 10), ns(2026, 5, 1, 11), {})], compression="zstd")
    codecs = {
        name: pq.ParquetFile(files(str(tmp_path / name), "job_runs")[0]).metadata.row_group(0).column(0).compression
        for name in ("env", "arg")
    }
    assert codecs == {"env": "SNAPPY", "arg": "ZSTD"}


def test_partitions_follow_utc_whatever_the_local_time_zone(local_location):
    # 23:30 UTC is already the next day in Kiribati (UTC+14): the folder must still be the UTC date.
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_parquet_format import ns, write_spans
        write_spans({local_location!r}, [(ns(2026, 3, 9, 23), ns(2026, 3, 9, 23, 30), {{}})])
        """
    )
    env = {**os.environ, "TZ": "Pacific/Kiritimati"}
    completed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert [path.parent.name for path in files(local_location, "job_runs")] == ["dt=2026-03-09"]


def test_unknown_compression_is_refused_as_an_argument_and_ignored_from_the_environment(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown compression"):
        DatasinkSpanExporter(str(tmp_path), compression="zstandard")
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COMPRESSION", "zstandard")
    write_spans(str(tmp_path / "env"), [(ns(2026, 5, 1, 10), ns(2026, 5, 1, 11), {})])
    [path] = files(str(tmp_path / "env"), "job_runs")
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
