"""What the read commands cost over a long history, this tree's code beside a previous commit's, in one run.

Generates (or reuses) the location of ``bench_report.py`` (N jobs running hourly for D days, written with the
project's writer and compacted with this tree's ``otel_datasink.compact``, which also writes the rollups of the
closed days), exports the package of ``--before`` (a commit, default ``HEAD~1``) with ``git archive`` into a temporary
folder, then runs each command as a whole process with each code (``PYTHONPATH``), alternating, and prints its wall
seconds, CPU seconds (user + system, every thread: steadier than the wall on a shared machine) and peak memory
(``ru_maxrss``), median of ``--repeat``. The older code ignores the rollup tables it does not know: it answers from
the rows alone, as it did.

Run::

    python benchmarks/bench_commands.py                        # 500 jobs x 365 days, before = HEAD~1
    python benchmarks/bench_commands.py --before e432b1b --repeat 3
    python benchmarks/bench_commands.py --jobs 100 --days-of-history 60
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_report

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {
    "report --days 30": ["report", "--out", "{out}", "--days", "30"],
    "report --days 365": ["report", "--out", "{out}", "--days", "365"],
    "alert --dry-run": ["alert", "--dry-run"],
    "status": ["status"],
}


def export(commit: str, folder: Path) -> Path:
    """The package of ``commit``, written under ``folder`` (``git archive``: no checkout, no worktree)."""
    archive = subprocess.run(["git", "archive", commit, "otel_datasink"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def run(code: Path, arguments: list[str], location: Path) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, peak MiB and exit status of one command run with the package under ``code``."""
    environment = dict(os.environ, PYTHONPATH=str(code))
    command = [sys.executable, "-m", "otel_datasink.cli", *arguments, "--location", str(location)]
    started = time.perf_counter()
    # Run in the code's folder: "python -m" puts the working folder first on sys.path, before PYTHONPATH.
    process = subprocess.Popen(command, cwd=code, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--days-of-history", type=int, default=bench_report.YEAR_DAYS)
    parser.add_argument("--before", default="HEAD~1", help="the commit to compare with (default HEAD~1)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "bench_report")
    args = parser.parse_args()
    # The location of bench_report.py, with its defaults for what this script does not set.
    options = argparse.Namespace(flushes_per_day=24, seed=12, max_age_hours=24.0, regenerate=False)
    location, _ = bench_report.ensure_location(args.data, args.jobs, args.days_of_history, options)
    print(f"Python {platform.python_version()}, {os.cpu_count()} cpu(s); {bench_report.code_state()}")
    print(f"{args.jobs} jobs x {args.days_of_history} days at {location}; before = {args.before}\n")
    print(f"{'command':20} {'code':7} {'wall s':>7} {'cpu s':>7} {'peak MiB':>9}")
    with tempfile.TemporaryDirectory(prefix="bench_commands_") as folder:
        codes = {"before": export(args.before, Path(folder)), "after": REPO}
        out = str(Path(folder) / "report.html")
        for label, command in COMMANDS.items():
            arguments = [part.format(out=out) for part in command]
            results: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in codes}
            for _ in range(args.repeat):
                for name, code in codes.items():
                    results[name].append(run(code, arguments, location))
            for name, runs in results.items():
                wall = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                peak = max(r[2] for r in runs)
                statuses = sorted({r[3] for r in runs})
                print(f"{label:20} {name:7} {wall:7.2f} {cpu:7.2f} {peak:9.0f}  exit {statuses}", flush=True)


if __name__ == "__main__":
    main()
