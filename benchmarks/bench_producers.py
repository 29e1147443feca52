"""Every producer recognised at once vs the contract's spans alone: what the default profile's dispatch costs.

Run by hand (not a test), e.g. ``python benchmarks/bench_producers.py --jobs 5000``. It builds, with a real SDK
``TracerProvider``, ``--jobs`` contract job spans (a ``dataset.update`` event, every 10th FAILED) each with three
non-job child spans (read, transform, write: what a job's own instrumentation adds); then the same with Airflow 3
task-try spans and CI/CD task-run spans beside them (a tenth as many each). It times, on each input's spans, the
profile ``contract`` (the contract's spans only: the default before every producer was recognised) against
``default`` (every built-in producer), profiles alternating, best of ``--repeat``:

1. ``map_records`` over the decoded records (every span shown to the profile, as replay and the exporter do);
2. the collector's decoding of the OTLP protobuf request with the profile's job keys (spans carrying none are
   skipped before a record is built) then ``map_records``;
3. ``otel-datasink replay`` of the spans as OTLP JSON Lines into a temporary location (decode, map, write).

and prints spans per second and the ratio of times default / contract (target: at most 1.10x on the first input,
where both write the same rows). On the second the default writes more rows (the Airflow and CI/CD runs, which
``contract`` skips): the last column says how many job_runs rows (or Parquet files, for replay).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel_datasink.cli import main
from otel_datasink.mapping import SpanRecord, map_records
from otel_datasink.otlp import records_from_protobuf
from otel_datasink.profiles import Profile, job_keys_of, load_profile
from otel_datasink.sdk import from_readable_span

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from otlp_payloads import otlp_json_line  # noqa: E402 - the tests' OTLP JSON encoding, as an exporter's file

PROFILES = ("contract", "default")


def platform_spans(jobs: int, other_producers: bool) -> list[ReadableSpan]:
    """The spans of ``jobs`` contract job runs with their children, and (``other_producers``) of Airflow and CI/CD
    runs beside them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "platform"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    etl, airflow, ci = (provider.get_tracer(name) for name in ("etl", "airflow", "github-actions"))
    for i in range(jobs):
        with etl.start_as_current_span(
            "ingest_orders",
            attributes={"job.name": f"ingest_{i % 20}", "dataset.name": f"warehouse.orders_{i % 7}"},
        ) as job:
            for step in ("read", "transform", "write"):
                etl.start_span(step, attributes={"db.system": "postgresql", "rows": i}).end()
            job.add_event("dataset.update", {"dataset.name": f"warehouse.orders_{i % 7}", "dataset.records_written": i})
            if i % 10 == 0:
                job.set_status(Status(StatusCode.ERROR, f"bad row {i}"))
        if other_producers and i % 10 == 0:
            airflow.start_span(
                "task_run.load",
                attributes={
                    "airflow.dag_id": "etl_orders",
                    "airflow.task_id": "load",
                    "airflow.dag_run.run_id": f"scheduled__2026-11-{i % 28 + 1:02d}T00:00:00+00:00",
                    "airflow.task_instance.try_number": 1,
                    "airflow.task_instance.state": "success",
                },
            ).end()
            ci.start_span(
                "test",
                attributes={"cicd.pipeline.task.name": "test", "cicd.pipeline.task.run.result": "success"},
            ).end()
    provider.shutdown()
    return list(memory.get_finished_spans())


def _best(repeat: int, runs: dict[str, Callable[[], int]]) -> dict[str, tuple[float, int]]:
    """Each run's best seconds of ``repeat`` (the runs alternating, so a busy moment spoils one sample of each at
    most), after one untimed run each, and the rows its last call made."""
    best = dict.fromkeys(runs, float("inf"))
    made = {name: run() for name, run in runs.items()}  # warm-up: caches, lazy imports, first files
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            start = time.perf_counter()
            made[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: (best[name], made[name]) for name in runs}


def _replay(lines: Path, profile: str) -> int:
    with tempfile.TemporaryDirectory() as location:
        arguments = ["replay", "--location", location, "--no-progress", "--profile", profile, str(lines)]
        with contextlib.redirect_stdout(io.StringIO()):  # its summary line, once per run
            assert main(arguments) == 0
        return sum(1 for _ in Path(location).rglob("*.parquet"))


def measures(spans: list[ReadableSpan], lines: Path) -> dict[str, dict[str, Callable[[], int]]]:
    """Measure -> profile name -> one run of it on ``spans`` (``lines``: the same spans as OTLP JSON Lines)."""
    body = encode_spans(spans).SerializeToString()
    records = [from_readable_span(span) for span in spans]
    profiles = {name: load_profile(name) for name in PROFILES}
    lines.write_text(otlp_json_line(spans) + "\n")

    def decoded(profile: Profile) -> list[SpanRecord]:
        return records_from_protobuf(body, job_keys=job_keys_of(profile))[0]

    return {
        "map_records (every span)": {
            name: (lambda p=profile: len(map_records(records, p)["job_runs"])) for name, profile in profiles.items()
        },
        "collector: decode with job keys + map_records": {
            name: (lambda p=profile: len(map_records(decoded(p), p)["job_runs"])) for name, profile in profiles.items()
        },
        "replay (OTLP JSON Lines -> Parquet)": {name: (lambda n=name: _replay(lines, n)) for name in PROFILES},
    }


def main_(argv: list[str] | None = None) -> None:
    """Parses the options, runs the measures on both inputs and prints them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help="contract job runs (default 5000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each measure, the best kept (default 5)")
    args = parser.parse_args(argv)
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores")
    for title, other_producers in (
        ("contract job spans and their children only (both profiles write the same rows)", False),
        ("the same with Airflow and CI/CD runs beside them (default also writes their rows)", True),
    ):
        spans = platform_spans(args.jobs, other_producers)
        print(f"\n{title}: {len(spans)} spans")
        print(f"{'measure':48} {'contract spans/s':>17} {'default spans/s':>16} {'time ratio':>11}  rows or files")
        with tempfile.TemporaryDirectory() as folder:
            for measure, runs in measures(spans, Path(folder) / "spans.jsonl").items():
                result = _best(args.repeat, runs)
                (contract, contract_made), (default, default_made) = result["contract"], result["default"]
                print(
                    f"{measure:48} {len(spans) / contract:17,.0f} {len(spans) / default:16,.0f} "
                    f"{default / contract:10.3f}x  {contract_made} / {default_made}"
                )


if __name__ == "__main__":
    main_()
