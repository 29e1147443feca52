"""Receive OTLP traces (HTTP and gRPC) from any language, and OpenLineage run events (``POST /api/v1/lineage`` on
the HTTP port), and write their job runs to the tables.

Rows are batched across requests and rolled into files by rows, bytes and age. A request is acknowledged once
its rows are in a local write-ahead spool, replayed on restart. SIGTERM flushes and exits (0); Ctrl-C flushes the
same, then exits 130 saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from typing import Any

from otel_datasink import environment_variables as env
from otel_datasink.collector.settings import SETTINGS, CollectorSetting, CollectorSettings, flag_name
from otel_datasink.commands._args import store_options
from otel_datasink.commands._errors import EXIT_OK, CommandError, cannot_listen
from otel_datasink.commands._signals import raise_if_interrupted

_logger = logging.getLogger(__name__)

FLAGS = {name: setting for name, setting in SETTINGS.items() if setting.flag}
"""The collector settings that have a flag, each named as its setting (``--max-body-bytes``: ``max_body_bytes``)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``otel-datasink collector``: one per collector setting, made from its description (help, variable,
    default); each falls back to its environment variable."""
    for name, setting in FLAGS.items():
        parser.add_argument(
            f"--{flag_name(name)}", type=_argument_type(setting), metavar=setting.kind.metavar, help=_help(setting)
        )
        if name == "token":  # the token's other form, beside it
            parser.add_argument(
                "--token-file",
                metavar="FILE",
                help=f"read the bearer token from FILE (env {env.OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE})",
            )
    parser.add_argument(
        "--openlineage-namespace-prefix",
        action="store_true",
        default=None,
        help="name the jobs of OpenLineage events (POST /api/v1/lineage) <job namespace>/<job name> "
        f"(env {env.OTEL_EXPORTER_DATASINK_OPENLINEAGE_NAMESPACE_PREFIX})",
    )


def _help(setting: CollectorSetting) -> str:
    """The setting's help sentence, then its variable (and its unit, when not the flag's) and its default."""
    unit = f" in {setting.kind.variable_unit}" if setting.kind.variable_unit else ""
    variable = f"env {setting.variable}{unit}; " if setting.variable else ""
    return f"{setting.help} ({variable}default {setting.describe_default()})"


def _argument_type(setting: CollectorSetting) -> Callable[[str], Any]:
    """An argparse ``type`` reading a flag as its setting does (:meth:`CollectorSetting.read_flag`): a bad value is
    a usage error naming the flag, before anything runs."""

    def convert(raw: str) -> Any:
        try:
            return setting.read_flag(raw)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags give (None: not given), and the token's file."""
    return {"token_file": args.token_file, **{name: getattr(args, name) for name in FLAGS}}


LEFT_IN_SPOOL = "stopped with batches left in the spool; they are written at the next start"


def run(args: argparse.Namespace) -> int:
    """Runs the collector until SIGTERM (0) or Ctrl-C (130); 2 when it cannot start or, on SIGTERM, its last flush
    left rows in the spool (they are written at the next start)."""
    # Imported here: aiohttp and grpcio load only when the collector runs, not for `collector --help`.
    from otel_datasink.collector.server import Collector, ListenError, serve
    from otel_datasink.collector.spool import SpoolLockedError

    try:
        settings = CollectorSettings.resolve(**_given(args))
    except ValueError as error:
        raise CommandError(str(error)) from None
    if settings.http is None and settings.grpc is None:
        raise CommandError("both receivers are disabled")
    try:
        options = store_options(args, openlineage_namespace_prefix=args.openlineage_namespace_prefix)
        collector = Collector(options, settings)
    except ValueError as error:  # an unknown profile or a broken mapping file
        raise CommandError(str(error)) from None
    if not logging.getLogger().isEnabledFor(logging.INFO):
        # A service says what it does: at least INFO for the collector's own loggers.
        logging.getLogger("otel_datasink.collector").setLevel(logging.INFO)
    try:
        stopped = asyncio.run(serve(collector))
    except ListenError as error:
        raise cannot_listen(error.address, f"--{flag_name(error.setting)}", error) from None
    except (SpoolLockedError, OSError) as error:  # the spool is in use, a folder cannot be made
        raise CommandError(str(error)) from None
    done = "every batch written" if stopped.flushed else LEFT_IN_SPOOL
    raise_if_interrupted(stopped.by, done)
    if not stopped.flushed:
        raise CommandError(done)
    return EXIT_OK
