"""What the platform's structure costs ``report`` and ``alert``: the same runs with and without it (issue 19).

Builds two locations side by side from the same generated runs (``bench_report.py``'s generator: N jobs running
hourly for D days, retries, backfills, failures, hung runs, one dataset per job, Arrow tables of
``otel_datasink.schema`` written with ``Writer.write_files`` and compacted):

- **structured**: every job belongs to one of ``--pipelines`` pipelines (``parent_job_name`` = the pipeline,
  ``parent_run_id`` = the run's own run id, shared by the pipeline's tasks of that hour as Airflow's DAG run id
  is), has ``owners`` (its team's handle and its pipeline's on-call address, on its ``job_runs`` and
  ``dataset_status`` rows), and ``inputs`` (the datasets it reads: the previous task's dataset in its pipeline, a
  third of them also the one before that, the first task a raw source), so ``dataset_lineage`` has a chain of
  edges per pipeline;
- **plain**: the same rows with those columns NULL, as a store written before issue 18.

Then times, as whole processes (``otel-datasink`` as a subprocess; wall seconds, CPU seconds and peak RSS from
``wait4``), alternating the two stores ``--repeat`` times: ``report --days 30`` and one ``alert --dry-run`` with a
rules file (every job expected hourly-ish, its owners routed). Prints the medians and the ratio structured /
plain; issue 19's target is at most 1.20 at a year of 500 hourly jobs in 20 pipelines::

    python benchmarks/bench_structure.py                              # 100 jobs x 30 days: a few minutes
    python benchmarks/bench_structure.py --jobs 500 --days 365        # the issue's figure (long to generate)
    python benchmarks/bench_structure.py --data /tmp/bench_structure  # keep the stores and reuse them (< 24 h)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_report as base  # noqa: E402  (the generator of the runs, beside this file)

MARKER = "_bench_structure.json"
VERSION = 1
"""Part of the cache key: stores made by another version of this script are made again."""
RULES = """\
# Every job expected at least every 2 h; the orders' pipelines routed to their owners.
[[rule]]
job = "payments.*"
owners = ["@payments", "payments-oncall@example.com"]
notify = ["json://localhost:9/payments"]
severity = "critical"
expected_every = "2h"

[[rule]]
job = "*"
expected_every = "2h"
"""
"""The default rules file (``--rules`` replaces it)."""
COMMANDS = ("report", "alert")


class Structure:
    """Each job's pipeline, owners and inputs (one value per job, the job's number its index)."""

    def __init__(self, fleet: base.Fleet, pipelines: int) -> None:
        jobs = len(fleet.names)
        teams = fleet.teams.to_pylist()
        datasets = fleet.datasets.to_pylist()
        pipeline = [f"pipeline_{j % pipelines:02d}" for j in range(jobs)]
        inputs: list[list[str]] = []
        for j in range(jobs):
            # Tasks of pipeline p are p, p + P, p + 2P, ...: each reads its predecessor's dataset.
            if j < pipelines:
                inputs.append([f"raw.source_{j:02d}"])
            else:
                upstream = [datasets[j - pipelines]]
                if j >= 2 * pipelines and j % 3 == 0:
                    upstream.append(datasets[j - 2 * pipelines])
                inputs.append(upstream)
        self.parents = pa.array(pipeline)
        self.owners = pa.array([[f"@{teams[j]}", f"{pipeline[j]}-oncall@example.com"] for j in range(jobs)])
        self.inputs = pa.array(inputs)
        self.names = fleet.names


def with_structure(job_runs: pa.Table, updates: pa.Table, structure: Structure) -> tuple[pa.Table, pa.Table]:
    """The same rows with parents, owners and inputs set (``job_runs``) and owners (``dataset_status``)."""
    job = pc.index_in(job_runs["job_name"], structure.names)
    columns = {
        "parent_job_name": pc.take(structure.parents, job),
        "parent_run_id": job_runs["run_id"],
        "owners": pc.take(structure.owners, job),
        "inputs": pc.take(structure.inputs, job),
    }
    for name, values in columns.items():
        field = job_runs.schema.field(name)
        job_runs = job_runs.set_column(job_runs.schema.get_field_index(name), field, pc.cast(values, field.type))
    index = updates.schema.get_field_index("owners")
    owners = pc.take(structure.owners, pc.index_in(updates["job_name"], structure.names))
    updates = updates.set_column(index, updates.schema.field(index), owners)
    return job_runs, updates


def generate(root: Path, jobs: int, days: int, pipelines: int, seed: int) -> dict:
    """Writes both stores (``root/plain``, ``root/structured``) from the same runs, then compacts them."""
    from otel_datasink import schema
    from otel_datasink.compact import compact
    from otel_datasink.config import Options
    from otel_datasink.writer import Writer

    shutil.rmtree(root, ignore_errors=True)
    writers = {name: Writer(Options.resolve(str(root / name))) for name in ("plain", "structured")}
    rng = random.Random(seed)
    fleet = base.Fleet.draw(jobs, rng)
    structure = Structure(fleet, pipelines)
    failing_at_end = rng.sample(range(jobs), min(3, jobs))
    now_ms = time.time_ns() // 1_000_000
    history_start_ms = now_ms // base.HOUR_MS * base.HOUR_MS - days * base.DAY_MS
    started = time.perf_counter()
    runs_written = 0
    for day in range(days):
        slots = [history_start_ms + (day * 24 + hour + 1) * base.HOUR_MS for hour in range(24)]
        first = base.first_attempts(fleet, slots, rng, failing_at_end if day == days - 1 else [])
        runs = pa.concat_tables([first, base.retries(fleet, first, rng, failing_at_end)])
        job_runs, terminal, with_rows = base.job_runs_rows(fleet, runs, now_ms, rng)
        updates = base.dataset_status_rows(fleet, terminal, history_start_ms, rng)
        stores = {"plain": (job_runs, updates), "structured": with_structure(job_runs, updates, structure)}
        for name, (runs_rows, update_rows) in stores.items():
            files = base.flush_files(schema.JOB_RUNS_TABLE, runs_rows, 24)
            files += base.flush_files(schema.DATASET_STATUS_TABLE, update_rows, 24)
            writers[name].write_files(files)
        runs_written += with_rows
        if (day + 1) % 30 == 0 or day == days - 1:
            print(f"  generated {day + 1}/{days} days ({time.perf_counter() - started:.0f}s)", flush=True)
    for writer in writers.values():
        compact(writer)
    info = {"version": VERSION, "jobs": jobs, "days": days, "pipelines": pipelines, "seed": seed}
    info |= {"generated_at_ms": now_ms, "runs": runs_written, "seconds": round(time.perf_counter() - started, 1)}
    (root / MARKER).write_text(json.dumps(info))
    return info


def ensure_stores(root: Path, args: argparse.Namespace) -> dict:
    """The two stores under ``root``, reused when made by this version with these options less than 24 h ago."""
    wanted = {"version": VERSION, "jobs": args.jobs, "days": args.days, "pipelines": args.pipelines}
    wanted["seed"] = args.seed
    marker = root / MARKER
    if marker.exists():
        info = json.loads(marker.read_text())
        age_h = (time.time() * 1000 - info["generated_at_ms"]) / base.HOUR_MS
        if all(info.get(key) == value for key, value in wanted.items()) and age_h < 24:
            print(f"{root}: reused, made {age_h:.1f} h ago")
            return info
    print(f"{root}: generating {args.jobs} jobs x {args.days} days hourly in {args.pipelines} pipelines, twice")
    return generate(root, args.jobs, args.days, args.pipelines, args.seed)


def run(command: list[str], environment: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one process (in ``environment``, default
    this one's); exits on a failure (``alert --dry-run``'s status 1, incidents open, is its normal answer here)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1) or (code == 1 and command[1] != "alert"):
        path = f" with PYTHONPATH={environment['PYTHONPATH']}" if environment and "PYTHONPATH" in environment else ""
        raise SystemExit(f"{' '.join(command)} failed ({code}){path}:\n{errors}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def commands(location: Path, rules: Path, out: Path, report_days: int) -> dict[str, list[str]]:
    """The two commands timed, on ``location``."""
    program = str(Path(sys.executable).with_name("otel-datasink"))
    where = ["--location", str(location)]
    return {
        "report": [program, "report", *where, "--out", str(out), "--days", str(report_days), "--no-progress"],
        "alert": [program, "alert", *where, "--rules", str(rules), "--dry-run"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100, help="jobs, each running hourly (default 100)")
    parser.add_argument("--days", type=int, default=30, help="days of history (default 30)")
    parser.add_argument("--pipelines", type=int, default=20, help="pipelines the jobs belong to (default 20)")
    parser.add_argument("--report-days", type=int, default=30, help="report --days (default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command on each store (default 3)")
    parser.add_argument("--rules", type=Path, help="rules file of the alert evaluation (default: a built-in one)")
    parser.add_argument("--seed", type=int, default=19, help="random seed of the generated runs (default 19)")
    parser.add_argument("--data", type=Path, help="keep the stores here and reuse them (default: a temp folder)")
    args = parser.parse_args()

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpu(s); {base.code_state()}")
    root = args.data or Path(tempfile.mkdtemp(prefix="bench_structure_"))
    scratch = Path(tempfile.mkdtemp(prefix="bench_structure_out_"))
    try:
        info = ensure_stores(root, args)
        rules = args.rules or scratch / "rules.toml"
        if args.rules is None:
            rules.write_text(RULES)
        for name in ("plain", "structured"):
            files, size = base.store_size(root / name)
            print(f"  {name}: {info['runs']:,} runs, {files:,} files, {size / 1e6:.1f} MB")
        timings: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for attempt in range(args.repeat):
            for name in ("plain", "structured"):  # alternated, so the machine's other load falls on both
                out = scratch / f"{name}.html"
                for command, line in commands(root / name, rules, out, args.report_days).items():
                    timings.setdefault((command, name), []).append(run(line))
            print(f"  round {attempt + 1}/{args.repeat} done", flush=True)
        print_table(timings, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if args.data is None:
            shutil.rmtree(root, ignore_errors=True)


def print_table(timings: dict[tuple[str, str], list[tuple[float, float, float]]], args: argparse.Namespace) -> None:
    """Medians per command and store, and the ratios structured / plain (target <= 1.20)."""
    print(
        f"\n{args.jobs} jobs x {args.days} days hourly, {args.pipelines} pipelines; "
        f"report --days {args.report_days}; median of {args.repeat}\n"
    )
    print("| command | store | wall s (min-max) | CPU s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    medians: dict[tuple[str, str], tuple[float, float, float]] = {}
    for (command, name), samples in timings.items():
        walls = [s[0] for s in samples]
        medians[command, name] = (
            statistics.median(walls),
            statistics.median(s[1] for s in samples),
            max(s[2] for s in samples),
        )
        wall, cpu, rss = medians[command, name]
        label = f"`{command}`" if command == "report" else "`alert --dry-run`"
        print(f"| {label} | {name} | {wall:.2f} ({min(walls):.2f}-{max(walls):.2f}) | {cpu:.2f} | {rss:.0f} |")
    print()
    for command in COMMANDS:
        plain, structured = medians[command, "plain"], medians[command, "structured"]
        ratios = [structured[i] / plain[i] for i in range(3)]
        verdict = "PASS" if ratios[0] <= 1.2 else "FAIL"
        print(
            f"{command}: structured / plain = {ratios[0]:.2f}x wall, {ratios[1]:.2f}x CPU, {ratios[2]:.2f}x peak RSS "
            f"(target <= 1.20x wall: {verdict})"
        )


if __name__ == "__main__":
    main()
