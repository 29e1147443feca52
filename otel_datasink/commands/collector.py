"""Receive OTLP traces (HTTP and gRPC) from any language, and OpenLineage run events (``POST /api/v1/lineage`` on
the HTTP port), and write their job runs to the tables.

Rows are batched across requests and rolled into files by rows, bytes and age. A request is acknowledged once
its rows are in a local write-ahead spool, replayed on restart. SIGTERM or SIGINT flushes and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from otel_datasink import environment_variables as env
from otel_datasink.collector.settings import CollectorSettings, flag_type
from otel_datasink.commands._args import store_options
from otel_datasink.commands._errors import CommandError

_logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``otel-datasink collector``; each falls back to its environment variable."""
    add = parser.add_argument
    add(
        "--http",
        metavar="HOST:PORT",
        help=f"OTLP/HTTP endpoint or 'none'; ':PORT' or 0.0.0.0:PORT listens on every interface "
        f"(env {_name('HTTP_ENDPOINT')}; default 127.0.0.1:4318)",
    )
    add(
        "--grpc",
        metavar="HOST:PORT",
        help=f"OTLP/gRPC endpoint or 'none'; ':PORT' listens on every interface "
        f"(env {_name('GRPC_ENDPOINT')}; default 127.0.0.1:4317)",
    )
    add(
        "--token",
        help=f"bearer token clients must send; shown by ps: prefer --token-file (env {_name('TOKEN')}; default none)",
    )
    add("--token-file", metavar="FILE", help=f"read the bearer token from FILE (env {_name('TOKEN_FILE')})")
    add(
        "--max-body-bytes",
        type=flag_type("max_body_bytes"),
        help=f"request size limit, before and after decompression (env {_name('MAX_BODY_BYTES')}; default 16 MiB)",
    )
    add(
        "--max-inflight-bytes",
        type=flag_type("max_inflight_bytes"),
        help=f"memory requests hold at once, HTTP and gRPC together: bodies and their estimated decoding "
        f"(~20x a body of small spans); past it 503/UNAVAILABLE (env {_name('MAX_INFLIGHT_BYTES')}; default 256 MiB)",
    )
    add(
        "--max-connections",
        type=flag_type("max_connections"),
        help=f"open OTLP/HTTP connections; more are refused (env {_name('MAX_CONNECTIONS')}; default 1000)",
    )
    add(
        "--header-timeout",
        type=flag_type("header_timeout"),
        help=f"seconds a request's headers may take (env {_name('HEADER_TIMEOUT')} in ms; default 10)",
    )
    add(
        "--body-timeout",
        type=flag_type("body_timeout"),
        help=f"seconds a request's body may take (env {_name('BODY_TIMEOUT')} in ms; default 30)",
    )
    add(
        "--idle-timeout",
        type=flag_type("idle_timeout"),
        help=f"seconds a connection may wait for its next request (env {_name('IDLE_TIMEOUT')} in ms; default 30)",
    )
    add("--spool-dir", help=f"write-ahead spool folder (env {_name('SPOOL_DIR')}; default under ~/.cache)")
    add(
        "--flush-rows",
        type=flag_type("flush_rows"),
        help=f"rows per batch of files (env {_name('FLUSH_ROWS')}; default 50000)",
    )
    add(
        "--flush-bytes",
        type=flag_type("flush_bytes"),
        help=f"spooled bytes per batch (env {_name('FLUSH_BYTES')}; default 64 MiB)",
    )
    add(
        "--flush-age",
        type=flag_type("flush_age"),
        help=f"seconds a batch may wait (env {_name('FLUSH_AGE')} in ms; default 30)",
    )
    add(
        "--max-pending-batches",
        type=flag_type("max_pending_batches"),
        help="rolled batches waiting for the store before 503 (default 4)",
    )
    add("--shutdown-timeout", type=flag_type("shutdown_timeout"), help="seconds SIGTERM may take to flush (default 10)")
    add(
        "--openlineage-namespace-prefix",
        action="store_true",
        default=None,
        help="name the jobs of OpenLineage events (POST /api/v1/lineage) <job namespace>/<job name> "
        f"(env {env.OTEL_EXPORTER_DATASINK_OPENLINEAGE_NAMESPACE_PREFIX})",
    )


def _name(suffix: str) -> str:
    name: str = getattr(env, f"OTEL_EXPORTER_DATASINK_COLLECTOR_{suffix}")
    return name


def run(args: argparse.Namespace) -> int:
    """Runs the collector until SIGTERM/SIGINT (0); 2 when it cannot start or its last flush left rows in the
    spool (they are written at the next start)."""
    # Imported here: aiohttp and grpcio load only when the collector runs, not for `collector --help`.
    from otel_datasink.collector.server import Collector, serve
    from otel_datasink.collector.spool import SpoolLockedError

    try:
        settings = CollectorSettings.resolve(
            http=args.http,
            grpc=args.grpc,
            token=args.token,
            token_file=args.token_file,
            max_body_bytes=args.max_body_bytes,
            max_inflight_bytes=args.max_inflight_bytes,
            max_connections=args.max_connections,
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            idle_timeout=args.idle_timeout,
            spool_dir=args.spool_dir,
            flush_rows=args.flush_rows,
            flush_bytes=args.flush_bytes,
            flush_age=args.flush_age,
            max_pending_batches=args.max_pending_batches,
            shutdown_timeout=args.shutdown_timeout,
        )
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
        flushed = asyncio.run(serve(collector)) == 0
    except (SpoolLockedError, OSError) as error:  # the spool is in use, a port is taken, a folder cannot be made
        raise CommandError(str(error)) from None
    if not flushed:
        raise CommandError("stopped with batches left in the spool; they are written at the next start")
    return 0
