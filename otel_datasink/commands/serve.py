"""Serve the dashboards of ``otel-datasink report`` over HTTP, live from ``--location``: the same page, rebuilt
every ``--refresh`` seconds while someone reads it (and reloaded as often by the browser), read-only (GET and
HEAD only). Under ``/api`` it answers the views as JSON, read when asked, for programs: ``/api/views`` lists them,
``/api/views/NAME?limit=N`` gives a view's rows (see :mod:`otel_datasink.report.jsonapi`).

Bound to loopback by default (``--listen 127.0.0.1:8080``). Any other address (``--listen 0.0.0.0:8080``)
requires a bearer token (``--token``, ``--token-file`` or their environment variables), as the collector's:
every request must then carry ``Authorization: Bearer <token>``, or a browser's login (any user name, the token
as password). Only requests whose ``Host`` names the listen address (on loopback also ``localhost``,
``127.0.0.1`` and ``::1``; on every interface those and any IP address) or an ``--allowed-host`` are answered, so
that a web page elsewhere cannot read the dashboards by making its own name resolve to this server. A location
that does not exist is an error (exit status 2) before anything is bound; a rebuild that fails later keeps the
last page and says why on stderr. SIGTERM stops it (exit 0); Ctrl-C too, then exits 130 saying so.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from otel_datasink import environment_variables as env
from otel_datasink.commands._args import add_page_arguments, check_trace_url, store_options
from otel_datasink.commands._errors import EXIT_OK, CommandError, cannot_listen, describe
from otel_datasink.commands._signals import StopSignals, raise_if_interrupted
from otel_datasink.tokens import given_token

if TYPE_CHECKING:
    from otel_datasink.report.pageserver import HostAllowList, PageServer

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_REFRESH = 60.0
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
TOKEN_VARIABLE = env.OTEL_EXPORTER_DATASINK_SERVE_TOKEN
TOKEN_FILE_VARIABLE = env.OTEL_EXPORTER_DATASINK_SERVE_TOKEN_FILE


def _refresh_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be at least 1 second, not {text}")
    return value


def _allowed_host(text: str) -> str:
    from otel_datasink.report.pageserver import host_name

    name = host_name(text)
    if name is None:
        raise argparse.ArgumentTypeError(f"not a host name or IP address (no scheme, port or path): {text!r}")
    return name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink serve``."""
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"address to serve on (default {DEFAULT_LISTEN}); a non-loopback address requires a token",
    )
    parser.add_argument(
        "--token",
        help=f"token readers must send (as a bearer token, or a browser login's password); shown by ps: prefer "
        f"--token-file (env {TOKEN_VARIABLE})",
    )
    parser.add_argument(
        "--token-file", metavar="FILE", help=f"read the bearer token from FILE (env {TOKEN_FILE_VARIABLE})"
    )
    parser.add_argument(
        "--allowed-host",
        metavar="NAME",
        type=_allowed_host,
        action="append",
        default=[],
        help="a host name readers use besides the listen address, such as a proxy's or a DNS name of this machine "
        "(repeatable; any port); other Host headers are refused (403)",
    )
    parser.add_argument(
        "--refresh",
        metavar="SECONDS",
        type=_refresh_seconds,
        default=DEFAULT_REFRESH,
        help=f"rebuild the page this often (default {DEFAULT_REFRESH:g})",
    )
    add_page_arguments(parser)


def listen_address(value: str) -> tuple[str, int]:
    """``--listen`` as (host, port); ValueError naming the flag when it is no ``HOST:PORT``."""
    from otel_datasink.collector.settings import parse_endpoint

    try:
        address = parse_endpoint(value)
    except ValueError:
        address = None
    if address is None:
        raise ValueError(f"--listen: not a HOST:PORT address: {value!r}")
    return address


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def allowed_hosts(host: str, extra: Sequence[str]) -> HostAllowList:
    """The hosts served when listening on ``host``: itself and ``extra`` (``--allowed-host``), the loopback names
    when it is loopback or every interface (``0.0.0.0``, ``::``), then any IP address too."""
    from otel_datasink.report.pageserver import HostAllowList

    every = host in ("", "0.0.0.0", "::")
    loopback = LOOPBACK_HOSTS if every or is_loopback(host) else ()
    return HostAllowList.of([host, *loopback, *extra], any_address=every)


def token(args: argparse.Namespace) -> str | None:
    """The token of ``--token``, ``--token-file`` or their variables (flags first); ValueError when both of one
    kind are given, or the file is empty or unreadable."""
    given = given_token(args.token, args.token_file, TOKEN_VARIABLE, TOKEN_FILE_VARIABLE)
    if given is not None and not given.strip():
        raise ValueError("--token is empty")
    return given


def run(args: argparse.Namespace) -> int:
    """Builds the page, serves it and rebuilds it every ``--refresh`` seconds until SIGTERM (0) or Ctrl-C (130)."""
    from otel_datasink.report import LocationMissingError, build
    from otel_datasink.report.jsonapi import ViewsApi
    from otel_datasink.report.pageserver import PageServer

    check_trace_url(args.trace_url, args.run_url)
    host, port = listen_address(args.listen)
    hosts = allowed_hosts(host, args.allowed_host)
    secret = token(args)
    if secret is None and not is_loopback(host):
        raise CommandError(
            f"--listen {args.listen} is not a loopback address: give --token or --token-file (env {TOKEN_VARIABLE}) "
            "so that only those who hold it read the dashboards"
        )
    options = store_options(args)
    refresh = max(1, round(args.refresh))

    def page() -> str:
        return build(
            options,
            days=args.days,
            now=args.now,
            trace_url=args.trace_url,
            run_url=args.run_url,
            refresh_seconds=refresh,
        ).html

    try:
        first = page()
    except LocationMissingError as error:
        raise CommandError(str(error)) from error
    try:
        server = PageServer((host, port), first, hosts, secret, ViewsApi(options).answer)
    except OSError as error:
        raise cannot_listen(args.listen, "--listen", error) from error
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve-http")
    with server, StopSignals(finishing="the page being rebuilt") as stop:
        thread.start()
        protected = ", bearer token required" if secret else ""
        print(f"serving {server.url} ({options.location}, rebuilt every {args.refresh:g}s{protected})", flush=True)
        try:
            _refresh_until(stop.event, args.refresh, page, server)
        finally:
            server.shutdown()
            thread.join()
    print("stopped", flush=True)
    raise_if_interrupted(stop.received, f"stopped serving {server.url}")
    return EXIT_OK


def _refresh_until(stop: threading.Event, every: float, page: Callable[[], str], server: PageServer) -> None:
    """Rebuilds and publishes the page every ``every`` seconds while it is read, until ``stop``: a page nobody
    asked for since it was built is not built again (a year of history costs seconds of CPU each time). A failed
    rebuild keeps the last page."""
    while not stop.wait(every):
        if not server.read_since_published():
            continue
        try:
            server.publish(page())
        except Exception as error:  # noqa: BLE001 - the next rebuild may succeed; the server must outlive this one
            print(f"otel-datasink serve: rebuild failed, serving the last page: {describe(error)}", file=sys.stderr)
