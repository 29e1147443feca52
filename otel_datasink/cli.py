"""``otel-datasink``: one subcommand per module of :mod:`otel_datasink.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from otel_datasink import environment_variables as env
from otel_datasink.config import DEFAULT_LOCATION

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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``otel-datasink`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
