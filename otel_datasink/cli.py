"""``otel-datasink``: one subcommand per module of :mod:`otel_datasink.commands`.

A command reports its own outcome through its exit status (``run(args)`` returns it); any exception it lets
escape is reported here, in one place, as one line ``otel-datasink <command>: <cause>`` (``-vv`` logs the
traceback too). Exit statuses (:mod:`otel_datasink.commands._errors`), the same for every command:

=====  ==========================================================================================
0      done
1      the check ran and found something (``status --fail-on-stale``: a dataset is stale)
2      the command could not do its job: bad command line or option, a location with no table, a store
       that cannot be read or written, bad SQL, an unknown profile
75     another process holds the location's lock for this job (a second ``compact``): try again once it is
       done (``EX_TEMPFAIL`` of sysexits.h)
130    interrupted (Ctrl-C); what was done is said first
141    stdout closed by its reader (``| head``): nothing more to show, nothing reported
=====  ==========================================================================================

The parser is built for the one command being run: a command's module (and what it imports: DuckDB, gRPC,
aiohttp, tqdm) is imported only when that command is dispatched, so ``otel-datasink --help`` stays quick. Nothing
imports this module back: what the commands share is in ``commands/_*.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from otel_datasink.commands._args import add_location_arguments
from otel_datasink.commands._errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_STDOUT_CLOSED,
    CommandError,
    describe,
    interrupted,
)
from otel_datasink.extras import MissingExtraError, needs

if TYPE_CHECKING:
    import socket


@dataclasses.dataclass(frozen=True)
class Command:
    """What ``otel-datasink --help`` says of a command, and which shared options it takes.

    Kept here, not in the command's module, so that listing the commands imports none of them.
    """

    help: str
    store: bool = True
    """Reads or writes the tables: takes ``--s3-endpoint-url``."""
    maps_spans: bool = False
    """Turns spans into rows: takes ``--profile``."""
    location_help: str = "local path or fsspec URL (s3://bucket/prefix) of the tables"
    extra: str | None = None
    """The extra (:mod:`otel_datasink.extras`) the command needs beyond the core: without it, one line says which."""


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "run a small instrumented example into --location and print both tables", maps_spans=True, extra="query"
    ),
    "query": Command("run a SQL query on the tables and views with DuckDB (table, json or csv output)", extra="query"),
    "status": Command("show dataset freshness; --fail-on-stale exits 1 when any dataset is stale", extra="query"),
    "ddl": Command(
        "print the Athena DDL (tables with partition projection) and views for an s3://bucket/prefix --location, "
        "or write them to a DuckDB file for BI tools (--duckdb FILE)",
        location_help="s3://bucket/prefix of the tables (Athena reads S3 only: a local path is refused); "
        "with --duckdb, a local path or fsspec URL",
        extra="query",
    ),
    "collector": Command(
        "receive OTLP (HTTP :4318, gRPC :4317) and write job spans to the tables", maps_spans=True, extra="collector"
    ),
    "replay": Command("write OTLP JSON Lines files (.jsonl, .jsonl.gz) to the tables", maps_spans=True, extra="replay"),
    "compact": Command("rewrite small Parquet files into files of about --target-size, partition by partition"),
    "alert": Command(
        "evaluate stale datasets, failing, hung and missing runs, volume anomalies; notify once per incident",
        extra="query",
    ),
    "report": Command(
        "write the dashboards (jobs, runs, datasets, failures) to one self-contained HTML file", extra="report"
    ),
    "serve": Command("serve the dashboards of report over HTTP, read-only, rebuilt on a timer", extra="report"),
}
"""Each names a module of otel_datasink.commands with ``add_arguments(parser)`` and ``run(args)``."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line ``otel-datasink <command>: error: <what>`` (exit status 2),
    like every other failure: the usage block argparse prints before it buried it (``--help`` shows it)."""

    def error(self, message: str) -> NoReturn:
        """Prints ``message`` on one line and exits with :data:`EXIT_FAILURE`."""
        self.exit(EXIT_FAILURE, f"{self.prog}: error: {message}\n")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The top-level parser; only the command named in ``argv`` gets its options (and its module imported)."""
    parser = _Parser(
        prog="otel-datasink",
        description="OpenTelemetry traces of data jobs as queryable job_runs and dataset_status tables.",
        epilog="exit status: 0 done, 1 a check found something (status --fail-on-stale), 2 the command failed "
        "(one line on stderr), 75 another process holds the location's lock (compact), 130 interrupted, "
        "141 stdout closed (| head)",
    )
    parser.add_argument("--version", action=_VersionAction)
    _add_verbose(parser, dest="verbose", default=0)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _command_in(argv)
    for name, command in COMMANDS.items():
        # "resolve": a command that still defines a shared option itself (collector) replaces the shared one.
        sub = subparsers.add_parser(name, help=command.help, conflict_handler="resolve")
        if name == chosen:
            _define(sub, name, command)
    return parser


def _define(sub: argparse.ArgumentParser, name: str, command: Command) -> None:
    """Imports the command's module and adds the shared options, then its own."""
    with needs(command.extra):
        module = importlib.import_module(f"otel_datasink.commands.{name}")
    sub.description = module.__doc__
    sub.formatter_class = argparse.RawDescriptionHelpFormatter
    # -v after the command too (`otel-datasink query -v ...`); its own dest, as a subparser's value would replace
    # the one given before the command instead of adding to it.
    _add_verbose(sub, dest="verbose_after", default=argparse.SUPPRESS)
    add_location_arguments(sub, command.location_help, store=command.store, maps_spans=command.maps_spans)
    module.add_arguments(sub)
    sub.set_defaults(run=module.run)


def _add_verbose(parser: argparse.ArgumentParser, dest: str, default: Any) -> None:
    parser.add_argument("-v", "--verbose", action="count", dest=dest, default=default, help="log more (-vv for debug)")


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first word, since no option before it takes a value."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


class _VersionAction(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from otel_datasink.version import version

        print(f"{parser.prog} {version()}")  # on stdout, as argparse's own version action prints it
        parser.exit()


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The parsed command line; a usage error (exit 2) in the command's name for an option it does not know
    (``otel-datasink query --fromat json``), not the top level's."""
    parser = build_parser(argv)
    args, extras = parser.parse_known_args(argv)
    if extras:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
        command = subparsers.choices[args.command]
        command.error(_unrecognized(command, extras))
    args.verbose += getattr(args, "verbose_after", 0)
    return args


def _unrecognized(parser: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    """What ``parser`` did not take, said by its first unknown option and the closest one it knows.

    The words after that option are not named: its value may have been taken for another argument (in
    ``query --fromat json "SELECT 1"`` the SQL is ``json``), and the option is the mistake to fix.
    """
    option = next((word.split("=", 1)[0] for word in extras if word.startswith("-")), None)
    if option is None:
        return f"unrecognized arguments: {' '.join(extras)}"
    known = [
        name
        for action in parser._actions  # noqa: SLF001
        if action.help != argparse.SUPPRESS
        for name in action.option_strings
        if name.startswith("--")
    ]
    close = difflib.get_close_matches(option, known, n=1)
    return f"unknown option {option}" + (f" (did you mean {close[0]}?)" if close else "")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``otel-datasink`` console script: the command's exit status, or
    :data:`EXIT_FAILURE` with one line on stderr when it raised."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse(argv)
    except MissingExtraError as error:  # the command's module could not even be imported for its options
        return _report(_command_in(argv) or "", error)
    except KeyboardInterrupt:  # while the command's module imports (DuckDB, pyarrow, sqlglot: most of a second)
        return _report(_command_in(argv) or "", interrupted())
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        with _ctrl_c_noted() as ctrl_c:
            return _run(args, ctrl_c)
    except KeyboardInterrupt:
        # Also Ctrl-C's exception raised late, while the error of a query it interrupted is reported (Python runs
        # the handler at the main thread's next call after the query: see _duckdb_interrupted_on_ctrl_c), or
        # while the watching of Ctrl-C is set up or ended.
        return _report(args.command, interrupted())


def _run(args: argparse.Namespace, ctrl_c: Callable[[], bool]) -> int:
    """The command's exit status, or that of the one line its failure is reported as."""
    try:
        with needs(COMMANDS[args.command].extra):
            code = args.run(args) or EXIT_OK
        # Flushed here, not at exit: a closed pipe must raise where it is handled below.
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as error:  # noqa: BLE001 - the one place a command's failure becomes a message
        if ctrl_c() and not isinstance(error, CommandError):  # a command's own words stand
            return _report(args.command, interrupted())
        logging.getLogger(__name__).debug("otel-datasink %s failed", args.command, exc_info=True)
        return _report(args.command, error)
    return code


@contextlib.contextmanager
def _ctrl_c_noted() -> Iterator[Callable[[], bool]]:
    """Whether Ctrl-C came, noted before Python's own handler raises KeyboardInterrupt.

    A library may catch that exception and raise its own: DuckDB ends a query it runs with
    ``RuntimeError('Query interrupted')``, so that ``query``, ``status``, ``report`` or ``alert`` stopped mid-query
    would fail as any error (exit 2) instead of as interrupted (130). Ctrl-C also interrupts the command's DuckDB
    queries at once (:func:`_duckdb_interrupted_on_ctrl_c`). A SIGINT that is ignored (a background job's) stays
    ignored; Python's handler is back afterwards (unless :func:`interrupted` has set the default action).
    """
    seen = threading.Event()

    def note(signum: int, frame: Any) -> None:
        seen.set()
        signal.default_int_handler(signum, frame)

    watching = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if not watching:
        yield seen.is_set
        return
    with _duckdb_interrupted_on_ctrl_c(lambda: signal.getsignal(signal.SIGINT) is note, seen):
        signal.signal(signal.SIGINT, note)  # once the watcher is ready: no KeyboardInterrupt while it is set up
        try:
            yield seen.is_set
        finally:
            if signal.getsignal(signal.SIGINT) is note:
                signal.signal(signal.SIGINT, signal.default_int_handler)


_REINTERRUPT_SECONDS = 0.05
"""How often the DuckDB queries are interrupted again after Ctrl-C: DuckDB forgets an interrupt that comes
before its query starts, and a command may start another before the KeyboardInterrupt reaches it."""


@contextlib.contextmanager
def _duckdb_interrupted_on_ctrl_c(ours: Callable[[], bool], seen: threading.Event) -> Iterator[None]:
    """While inside, SIGINT interrupts the DuckDB queries of :func:`otel_datasink.local.connect`'s connections at
    once, those running and those started until the command returns, and notes itself in ``seen``.

    Python runs a signal's handler in the main thread between two bytecodes: not while DuckDB runs a query there
    (DuckDB looks for the signal between tasks, often only as the query ends), and a query in another thread
    (``report`` evaluates the views in a thread pool) never sees it. Python's C-level handler, though, writes the
    signal's number to the wakeup fd at once, and a thread reading it interrupts the queries. Only while
    ``ours()``: ``alert --watch`` and ``serve`` set their own SIGINT handler, which lets the current evaluation
    finish.
    """
    import socket  # not for --help: imported once a command runs

    reader, writer = socket.socketpair()
    writer.setblocking(False)  # set_wakeup_fd's condition: the C-level handler must never block
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    done = threading.Event()
    watcher = threading.Thread(
        target=_interrupt_on_ctrl_c, args=(reader, ours, seen, done), name="otel-datasink-ctrl-c", daemon=True
    )
    watcher.start()
    try:
        yield
    finally:
        current = signal.set_wakeup_fd(previous)
        if current != writer.fileno():  # the command set its own (asyncio's loop does): not ours to undo
            signal.set_wakeup_fd(current)
        done.set()
        writer.close()  # the watcher's wait for a signal ends: the socket's other end is closed
        watcher.join()
        reader.close()


def _interrupt_on_ctrl_c(
    wakeups: socket.socket, ours: Callable[[], bool], seen: threading.Event, done: threading.Event
) -> None:
    """The watcher thread: reads signal numbers from ``wakeups`` until a SIGINT while ``ours()`` (or until the
    writing end closes), then interrupts the DuckDB queries every :data:`_REINTERRUPT_SECONDS` until ``done``."""
    while True:
        received = wakeups.recv(64)
        if not received:
            return
        if signal.SIGINT in received and ours():
            break
    seen.set()  # before the queries fail: their errors, in whichever thread, find Ctrl-C noted
    while True:
        _interrupt_duckdb_queries()
        if done.wait(_REINTERRUPT_SECONDS):
            return


def _interrupt_duckdb_queries() -> None:
    # Looked up, not imported: a command that has not imported it opened no connection. Any failure is logged,
    # not raised: a traceback from this thread would break Ctrl-C's one line, and the KeyboardInterrupt still
    # stops the command as it did before.
    local = sys.modules.get("otel_datasink.local")
    interrupt_queries = getattr(local, "interrupt_queries", None)  # None while the module is still importing
    if interrupt_queries is None:
        return
    try:
        interrupt_queries()
    except Exception:  # noqa: BLE001 - see above
        logging.getLogger(__name__).debug("cannot interrupt the DuckDB queries", exc_info=True)


def _report(command: str, error: Exception) -> int:
    try:
        who = f"otel-datasink {command}".rstrip()  # no command: "otel-datasink: ..."
        print(f"{who}: {describe(error)}", file=sys.stderr)
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    return getattr(error, "exit_code", EXIT_FAILURE)


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
    # ``python -m otel_datasink.cli``. The commands import nothing from here: their CommandError is
    # commands/_errors.py's, the one this module's main reports, whichever name this file runs under.
    sys.exit(main())
