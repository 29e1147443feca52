"""How a command fails: its exit statuses, :class:`CommandError` for a failure it words itself, and
:func:`describe`, which words any other error on one line.

The statuses are the same for every command (the table is in :mod:`otel_datasink.cli`, which reports every
failure).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys

EXIT_OK = 0
EXIT_FOUND = 1
"""A check that ran and found something (``status --fail-on-stale``), as ``grep`` exits 1 when it finds nothing:
the one status a cron job or CI step acts on without it being a failure of the tool."""
EXIT_FAILURE = 2
"""The exit status of a command that could not do its job (as argparse's for a bad command line)."""
EXIT_BUSY = 75
"""Another process holds the location's lock for the command's job (a second ``compact``): nothing is wrong, try
again later; sysexits.h's ``EX_TEMPFAIL``, which cron wrappers and schedulers know as "retry"."""
EXIT_INTERRUPTED = 130
"""Ctrl-C: 128 + SIGINT, what a shell reports for any other tool stopped that way."""
EXIT_STDOUT_CLOSED = 141
"""The exit status when stdout's reader went away (``otel-datasink query ... | head``): 128 + SIGPIPE, what a
shell reports for any other tool stopped that way."""


class CommandError(Exception):
    """A failure a command words itself; :func:`otel_datasink.cli.main` prints it as
    ``otel-datasink <command>: <message>`` and exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def interrupted(what_was_done: str | None = None) -> CommandError:
    """The error a command raises on Ctrl-C, with what it did: exit status 130.

    A second Ctrl-C from now on ends the process at once, silently, as SIGINT does to any tool: no traceback
    from the middle of the report or of the exit hooks.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return CommandError(f"interrupted; {what_was_done}" if what_was_done else "interrupted", EXIT_INTERRUPTED)


def cannot_listen(address: str, option: str, error: BaseException) -> CommandError:
    """The error of a server that cannot bind ``address``, naming the ``option`` that gave it and the system's
    reason: ``cannot listen on 127.0.0.1:4318 (--http): address already in use``."""
    code = getattr(error, "errno", None)
    if isinstance(code, int) and code in errno.errorcode:
        reason = os.strerror(code)  # asyncio's message repeats the address, as a tuple
    else:  # a host name that does not resolve, or gRPC's bare "Failed to bind to address ..."
        reason = getattr(error, "strerror", None) or str(error)
    return CommandError(f"cannot listen on {address} ({option}): {reason[:1].lower()}{reason[1:]}")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
"""Terminal escapes (sqlglot underlines the error's place with them): noise in a log or a cron mail."""

_SELF_EXPLAINING = (CommandError, ValueError, OSError, ImportError)
"""Errors whose message says it all (an ImportError: "duckdb is not installed: pip install ...")."""


def describe(error: BaseException) -> str:
    """The cause of ``error`` on one line.

    Errors that speak for themselves (ours, DuckDB's, bad values, I/O) are their message; any other is prefixed
    with its type, which is then often the only hint (``EndpointConnectionError: ...``). DuckDB's messages span
    lines: the text before the first blank line is kept (the query excerpt and caret after it are dropped), and
    when DuckDB wraps a Python error raised in a filesystem (s3fs) it is that error's last line. An error's
    ``repr`` quoted in its message (``cannot write x: OSError(30, 'Read-only file system')``) becomes its words.
    """
    message = _ANSI.sub("", str(error)).strip()
    paragraph = message.split("\n\n", 1)[0].strip()
    lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        lines = lines[-1:]
    text = _unrepr(" ".join(lines), error)
    if _refused_by_s3(error):
        text += f"; {_CREDENTIALS_HINT}"
    if _speaks_for_itself(error) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_CREDENTIALS_HINT = (
    "S3 refused the credentials of the AWS chain: AWS_ACCESS_KEY_ID, AWS_PROFILE or ~/.aws, instance role"
)


def _refused_by_s3(error: BaseException) -> bool:
    """Whether S3 answered 403: its bare "Forbidden" (a HEAD has no body to say more) names no credentials."""
    cause: BaseException | None = error
    for _ in range(5):
        if cause is None:
            return False
        if isinstance(cause, PermissionError) and type(cause.__cause__).__module__.startswith("botocore"):
            return "credential" not in str(cause).lower() and "access key" not in str(cause).lower()
        cause = cause.__cause__ or cause.__context__
    return False


def _speaks_for_itself(error: BaseException) -> bool:
    # Looked up, not imported: a module not imported yet raised none of these errors.
    duckdb, writer = sys.modules.get("duckdb"), sys.modules.get("otel_datasink.writer")
    return (
        isinstance(error, _SELF_EXPLAINING)
        or (duckdb is not None and isinstance(error, duckdb.Error))
        or (writer is not None and isinstance(error, writer.WriteError))
    )


def _unrepr(text: str, error: BaseException) -> str:
    """``text`` with the ``repr`` of each error it was caused by replaced by that error's own words."""
    cause = error.__cause__ or error.__context__
    for _ in range(5):
        if cause is None:
            break
        if repr(cause) in text:
            words = cause.strerror if isinstance(cause, OSError) and cause.strerror else describe(cause)
            text = text.replace(repr(cause), words)
        cause = cause.__cause__ or cause.__context__
    return text
