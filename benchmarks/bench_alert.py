"""What one ``otel-datasink alert`` evaluation costs over a long history: time and peak memory, local disk.

Generates N jobs running hourly for D days (one dataset each, SLA 2 h; 2 % of runs fail) with the real pipeline
(``map_records`` then ``Writer.write``, one write per day, as a collector's flushes), compacts it with
``otel_datasink.compact``, then times evaluations as ``alert --dry-run`` runs them
(:meth:`otel_datasink.alerts.engine.Evaluator.evaluate`), each in a fresh process (so its peak RSS is the
evaluation's): connect, views pinned to the evaluation's instant, the five conditions (every job with
``expected_every = "2h"``) and the incidents' plan (nothing is sent or written).

The views read bounded windows of ``dt`` partitions (30 days of job_runs, 400 of dataset_status): the cost should
follow the windows, not the history. Compare::

    python benchmarks/bench_alert.py                         # modest: 100 jobs, 30 and 60 days
    python benchmarks/bench_alert.py --jobs 500 --days 30 90 # the full size: 500 jobs, 30 vs 90 days
    python benchmarks/bench_alert.py --jobs 500 --days 30 90 --dataset-window-days 400 30
    python benchmarks/bench_alert.py --jobs 500 --days 365 --deadlines  # + an SLA rule per job (deadline 07:00
                                                                        #   Europe/Berlin, max_duration 5m)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time

HOUR_NS = 3600 * 1_000_000_000
MINUTE_NS = 60 * 1_000_000_000


def generate(location: str, jobs: int, days: int, now_ns: int) -> int:
    """Writes ``days`` of hourly runs of ``jobs`` jobs ending before ``now_ns``; returns the runs written."""
    from otel_datasink import semconv
    from otel_datasink.config import Options
    from otel_datasink.mapping import STATUS_CODE_ERROR, STATUS_CODE_UNSET, SpanRecord, map_records
    from otel_datasink.profiles import DEFAULT_PROFILE
    from otel_datasink.writer import Writer

    writer = Writer(Options.resolve(location))
    rng = random.Random(7)
    ids = iter(range(1, 1 << 62))
    runs = 0
    for day in range(days, 0, -1):
        spans = []
        for hour in range(24):
            start = now_ns - day * 24 * HOUR_NS + hour * HOUR_NS
            for job in range(jobs):
                failed = rng.random() < 0.02
                end = start + rng.randint(2, 8) * MINUTE_NS
                attributes = {
                    semconv.JOB_NAME: f"job_{job:04d}",
                    semconv.JOB_RECORDS_PROCESSED: int(rng.gauss(10_000, 300)),
                }
                events = (
                    []
                    if failed
                    else [
                        (
                            semconv.DATASET_UPDATE_EVENT,
                            end,
                            {"dataset.name": f"dataset_{job:04d}", "dataset.freshness_sla_minutes": 120},
                        )
                    ]
                )
                if failed:
                    events.append(
                        (
                            semconv.EXCEPTION_EVENT,
                            end,
                            {"exception.type": "IOError", "exception.message": "disk full", "exception.escaped": True},
                        )
                    )
                spans.append(SpanRecord(
                    name="run", trace_id=next(ids), span_id=next(ids), parent_span_id=None,
                    start_time_ns=start, end_time_ns=end,
                    status_code=STATUS_CODE_ERROR if failed else STATUS_CODE_UNSET, status_message="",
                    attributes=attributes, events=events, resource={"service.name": "bench"},
                ))  # fmt: skip
        writer.write(map_records(spans, DEFAULT_PROFILE))
        runs += len(spans)
    return runs


def evaluate(location: str, now: str, dataset_window_days: int, deadlines: int = 0) -> dict:
    """One evaluation as ``alert --dry-run`` does it (:meth:`Evaluator.evaluate`); runs in the child process.
    ``deadlines``: that many SLA rules first, one per job (the SLA verdicts of a week are judged, not written)."""
    from otel_datasink.alerts.deadlines import parse_deadline
    from otel_datasink.alerts.engine import Evaluator
    from otel_datasink.alerts.rules import Rule, Rules
    from otel_datasink.catalog import ViewParameters
    from otel_datasink.config import Options

    instant = datetime.datetime.fromisoformat(now)
    deadline = dataclasses.replace(parse_deadline("07:00"), timezone="Europe/Berlin")
    slas = [
        Rule(job=f"job_{job:04d}", deadline=deadline, max_duration=datetime.timedelta(minutes=5))
        for job in range(deadlines)
    ]
    rules = Rules((*slas, Rule(job="*", expected_every=datetime.timedelta(hours=2))), ("json://example/",))
    parameters = ViewParameters(dataset_window_days=dataset_window_days)
    evaluator = Evaluator(Options.resolve(location), rules, parameters, dry_run=True)
    started = time.perf_counter()
    evaluation = evaluator.evaluate(instant)
    done = time.perf_counter()
    kinds: dict[str, int] = {}
    for condition in evaluation.conditions:
        kinds[condition.kind] = kinds.get(condition.kind, 0) + 1
    return {"total_s": done - started, "conditions": kinds, "sends": len(evaluation.sends)}


def measure(
    location: str, now: datetime.datetime, repeat: int, dataset_window_days: int, deadlines: int = 0
) -> list[dict]:
    """``repeat`` evaluations, each in a fresh process; its peak RSS from wait4."""
    results = []
    for _ in range(repeat):
        process = subprocess.Popen(
            [sys.executable, __file__, "--evaluate", location, "--now", now.isoformat()]
            + ["--dataset-window-days", str(dataset_window_days), "--deadline-rules", str(deadlines)],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            raise SystemExit(f"evaluation failed ({status})")
        result = json.loads(out)
        result["peak_rss_mib"] = usage.ru_maxrss / 1024  # kilobytes on Linux
        results.append(result)
    return results


def size_of(folder: str) -> tuple[int, int]:
    files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
    return len(files), sum(os.path.getsize(f) for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--days", type=int, nargs="+", default=[30, 60], help="histories to compare")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    parser.add_argument(
        "--dataset-window-days",
        type=int,
        nargs="+",
        default=[400],
        help="the views' dataset_status window(s) to evaluate with (default 400, the views' default)",
    )
    parser.add_argument("--deadlines", action="store_true", help="with an SLA rule per job (deadline, max_duration)")
    parser.add_argument("--deadline-rules", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--evaluate", metavar="LOCATION", help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate:
        print(json.dumps(evaluate(args.evaluate, args.now, args.dataset_window_days[0], args.deadline_rules)))
        return

    from otel_datasink.compact import compact
    from otel_datasink.config import Options
    from otel_datasink.writer import Writer

    print(f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpu(s)")
    now_ns = time.time_ns() // 1_000_000 * 1_000_000
    now = datetime.datetime.fromtimestamp(now_ns / 1e9, tz=datetime.timezone.utc)
    root = tempfile.mkdtemp(prefix="bench_alert_")
    try:
        for days in args.days:
            location = os.path.join(root, f"{days}d")
            started = time.perf_counter()
            runs = generate(location, args.jobs, days, now_ns)
            generated = time.perf_counter()
            compact(Writer(Options.resolve(location)))
            files, size = size_of(location)
            print(
                f"\n{args.jobs} jobs x {days} days hourly: {runs} runs, generated in {generated - started:.1f}s, "
                f"compacted in {time.perf_counter() - generated:.1f}s: {files} files, {size / 2**20:.1f} MiB"
            )
            for window in args.dataset_window_days:
                report(measure(location, now, args.repeat, window), window)
                if args.deadlines:
                    print(f"  with {args.jobs} SLA rules (deadline 07:00 Europe/Berlin, max_duration 5m):")
                    report(measure(location, now, args.repeat, window, args.jobs), window)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


def report(results: list[dict], window: int) -> None:
    """The best and median time of an evaluation, and the highest peak RSS."""
    best = min(results, key=lambda r: r["total_s"])
    print(
        f"  evaluation (dataset_window_days={window}): best {best['total_s']:.2f}s, "
        f"median {sorted(r['total_s'] for r in results)[len(results) // 2]:.2f}s, "
        f"peak RSS {max(r['peak_rss_mib'] for r in results):.0f} MiB; "
        f"conditions {best['conditions']}, sends {best['sends']}"
    )


if __name__ == "__main__":
    main()
