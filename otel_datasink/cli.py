"""``otel-datasink``: one subcommand per module of :mod:`otel_datasink.commands`.

A command reports its own outcome through its exit status (``run(args)`` returns it); any exception it lets
escape is reported here, in one place, as one line ``otel-datasink <command>: <cause>`` with exit status
:data:`EXIT_FAILURE` (``-vv`` logs the traceback too).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from otel_datasink import environment_variables as env
from otel_datasink.config import DEFAULT_LOCATION

EXIT_FAILURE = 2
"""The exit status of a command that could not do its job (as argparse's for a bad command line): distinct from
1, which ``status --fail-on-stale`` uses for a check that ran and found stale datasets."""

EXIT_STDOUT_CLOSED = 141
"""The exit status when stdout's reader went away (``otel-datasink query ... | head``): 128 + SIGPIPE, what a
shell reports for any other tool stopped that way."""

COMMANDS = ("demo", "query", "status", "ddl", "collector", "replay", "compact")
"""Each names a module of otel_datasink.commands with ``HELP``, ``add_arguments(parser)`` and ``run(args)``."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, each with ``--location``."""
    parser = argparse.ArgumentParser(
        prog="otel-datasink",
        description="OpenTelemetry traces of data jobs as queryable job_runs and dataset_status tables.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"otel_datasink.commands.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.__doc__)
        sub.add_argument(
            "--location",
            default=os.environ.get(env.OTEL_EXPORTER_DATASINK_LOCATION) or DEFAULT_LOCATION,
            help=f"local path or fsspec URL of the tables (env {env.OTEL_EXPORTER_DATASINK_LOCATION}; "
            f"default {DEFAULT_LOCATION})",
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


class CommandError(Exception):
    """A failure a command words itself; :func:`main` prints it as ``otel-datasink <command>: <message>``."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``otel-datasink`` console script: the command's exit status, or
    :data:`EXIT_FAILURE` with one line on stderr when it raised."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code = args.run(args) or 0
        # Flushed here, not at exit: a closed pipe must raise where it is handled below.
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as error:  # noqa: BLE001 - the one place a command's failure becomes a message
        logging.getLogger(__name__).debug("otel-datasink %s failed", args.command, exc_info=True)
        print(f"otel-datasink {args.command}: {describe(error)}", file=sys.stderr)
        return EXIT_FAILURE
    return code


def describe(error: BaseException) -> str:
    """The cause of ``error`` on one line.

    Errors that speak for themselves (ours, DuckDB's, bad values, I/O) are their message; any other is prefixed
    with its type, which is then often the only hint (``EndpointConnectionError: ...``). DuckDB's messages span
    lines: the text before the first blank line is kept (the query excerpt and caret after it are dropped), and
    when DuckDB wraps a Python error raised in a filesystem (s3fs) it is that error's last line.
    """
    import duckdb  # here, not at the top: only a failure needs it, and every command (collector) imports this

    message = str(error).strip()
    paragraph = message.split("\n\n", 1)[0].strip()
    lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        lines = lines[-1:]
    text = " ".join(lines)
    if isinstance(error, (CommandError, duckdb.Error, ValueError, OSError)) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _stdout_closed() -> int:
    # The reader of stdout is gone (`| head`): nothing more can be shown, and it is no failure to report.
    # stdout is pointed at /dev/null so that the interpreter's last flush, at exit, does not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind stdout (captured in a test): nothing to flush
        pass
    return EXIT_STDOUT_CLOSED


if __name__ == "__main__":
    sys.exit(main())
