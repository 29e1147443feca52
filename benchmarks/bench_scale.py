"""Issue 20's table: what each command costs at a year of hourly jobs, this tree beside an earlier revision.

Builds (or reuses, with ``--data``) the stores of ``bench_structure.py`` (``bench_report.py``'s generator: N jobs
running hourly for D days, retries, backfills, failures, hung runs, one dataset per job, compacted to one file per
table and day) and times, as whole processes (wall seconds, CPU seconds and peak RSS from ``wait4``), each row of
the issue's table:

- ``report --days 30`` and ``report --days 365`` (``--no-progress``, the page written to a temp folder),
- ``alert --dry-run`` with a simple rules file (every job expected at least every 2 h; ``--rules`` replaces it),
- ``status``.

With ``--against REF`` the same commands also run on a git revision (checked out with ``git worktree add`` into a
temp folder, imported through ``PYTHONPATH``), alternating with this tree ``--repeat`` times, so the machine's
other load falls on both; it prints the medians and the ratio this tree / REF::

    python benchmarks/bench_scale.py                                       # 100 jobs x 30 days: a few minutes
    python benchmarks/bench_scale.py --against HEAD~3                      # beside an earlier revision
    python benchmarks/bench_scale.py --jobs 500 --days 365 --data /tmp/bench_structure_500x365   # the issue's size
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_report as base  # noqa: E402  (beside this file)
import bench_structure as stores  # noqa: E402  (the stores: generated once, reused with --data)

RULES = """\
# Every job expected at least every 2 h.
[[rule]]
job = "*"
expected_every = "2h"
"""
"""The default rules file (``--rules`` replaces it)."""
REPO = Path(__file__).resolve().parent.parent
Sample = tuple[float, float, float]
"""Wall seconds, CPU seconds and peak RSS (MiB) of one process."""


def commands(location: Path, rules: Path, out: Path) -> dict[str, list[str]]:
    """The rows of issue 20's table: each command line, on ``location``."""
    program = str(Path(sys.executable).with_name("otel-datasink"))
    where = ["--location", str(location)]
    report = [program, "report", *where, "--out", str(out), "--no-progress", "--days"]
    return {
        "report --days 30": [*report, "30"],
        "report --days 365": [*report, "365"],
        "alert --dry-run": [program, "alert", *where, "--rules", str(rules), "--dry-run"],
        "status": [program, "status", *where, "--format", "csv"],
    }


def run(command: list[str], tree: Path) -> Sample:
    """One process with ``tree`` first on its import path (:func:`bench_structure.run`)."""
    return stores.run(command, os.environ | {"PYTHONPATH": str(tree)})


def checkout(ref: str, into: Path) -> str:
    """``ref`` checked out (detached) into ``into``; its short commit id."""
    subprocess.run(["git", "worktree", "add", "--detach", str(into), ref], cwd=REPO, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=into, check=True, capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100, help="jobs, each running hourly (default 100)")
    parser.add_argument("--days", type=int, default=30, help="days of history (default 30)")
    parser.add_argument("--pipelines", type=int, default=20, help="pipelines the jobs belong to (default 20)")
    parser.add_argument("--store", choices=("structured", "plain"), default="structured", help="which store")
    parser.add_argument("--against", metavar="REF", help="also time this git revision, alternating with this tree")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command on each tree (default 3)")
    parser.add_argument("--rules", type=Path, help="rules file of the alert evaluation (default: a built-in one)")
    parser.add_argument("--only", nargs="+", help="time only these rows (e.g. status 'alert --dry-run')")
    parser.add_argument("--seed", type=int, default=19, help="random seed of the generated runs (default 19)")
    parser.add_argument("--data", type=Path, help="keep the stores here and reuse them (bench_structure.py's)")
    args = parser.parse_args()

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpu(s); {base.code_state()}")
    root = args.data or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    scratch = Path(tempfile.mkdtemp(prefix="bench_scale_out_"))
    trees = {"this tree": REPO}
    try:
        info = stores.ensure_stores(root, args)
        location = root / args.store
        files, size = base.store_size(location)
        print(f"  {args.store}: {info['runs']:,} runs, {files:,} files, {size / 1e6:.1f} MB")
        if args.against:
            commit = checkout(args.against, scratch / "against")
            label = args.against if commit.startswith(args.against) else f"{args.against} ({commit})"
            trees[label] = scratch / "against"
        rules = args.rules or scratch / "rules.toml"
        if args.rules is None:
            rules.write_text(RULES)
        lines = commands(location, rules, scratch / "report.html")
        names = [name for name in lines if not args.only or name in args.only]
        timings: dict[tuple[str, str], list[Sample]] = {}
        for attempt in range(args.repeat):
            for name in names:
                for label, tree in trees.items():  # alternated, so the machine's other load falls on both
                    timings.setdefault((name, label), []).append(run(lines[name], tree))
            print(f"  round {attempt + 1}/{args.repeat} done", flush=True)
        print(f"\n{args.jobs} jobs x {args.days} days hourly ({args.store} store); median of {args.repeat}\n")
        print_table(timings, names, list(trees))
    finally:
        if args.against:
            subprocess.run(["git", "worktree", "remove", "--force", str(scratch / "against")], cwd=REPO)
        shutil.rmtree(scratch, ignore_errors=True)
        if args.data is None:
            shutil.rmtree(root, ignore_errors=True)


def print_table(timings: dict[tuple[str, str], list[Sample]], names: list[str], trees: list[str]) -> None:
    """Medians per command and tree (peak RSS: the largest), and the ratios this tree / the other one."""
    print("| command | code | wall s (min-max) | CPU s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    medians: dict[tuple[str, str], Sample] = {}
    for name in names:
        for tree in trees:
            samples = timings[name, tree]
            walls = [s[0] for s in samples]
            median = (statistics.median(walls), statistics.median(s[1] for s in samples), max(s[2] for s in samples))
            medians[name, tree] = median
            print(
                f"| `{name}` | {tree} | {median[0]:.2f} ({min(walls):.2f}-{max(walls):.2f}) | {median[1]:.2f} "
                f"| {median[2]:.0f} |"
            )
        if len(trees) == 2:
            ours, theirs = medians[name, trees[0]], medians[name, trees[1]]
            ratios = " | ".join(f"{ours[i] / theirs[i]:.2f}x" for i in range(3))
            print(f"| `{name}` | **ratio** | {ratios} |")


if __name__ == "__main__":
    main()
