"""Writing what processors and exporters hold when the process exits without calling ``shutdown()``."""

from __future__ import annotations

import atexit

# Imported before the exit hook is registered, so that its own threading exit hook runs after ours: see below.
import concurrent.futures.thread  # noqa: F401
import logging
import os
import threading
import time
import weakref
from typing import Any, Protocol

from opentelemetry import trace

from otel_datasink import sdk

_logger = logging.getLogger(__name__)

# --- process exit ----------------------------------------------------------------------------------------
#
# A job that ends without calling shutdown() relies on an exit hook to write the rows still held. The SDK's
# TracerProvider shuts its processors down from ``atexit``, which is too late for S3: at interpreter exit
# ``threading._shutdown()`` first runs the ``threading._register_atexit`` hooks (newest first), and one of them,
# registered when ``concurrent.futures.thread`` is imported, makes every ThreadPoolExecutor.submit raise from
# then on. aiohttp and aiobotocore (under s3fs) need the event loop's default executor (getaddrinfo, file
# reads), so every write fails ("cannot schedule new futures after interpreter shutdown"), is retried as a
# transient error and the job's exit stalls for the whole write timeout with its rows lost.
#
# So the hook below is registered with ``threading._register_atexit`` after concurrent.futures.thread is
# imported (at the top of this module): it runs before concurrent.futures' own, while executors still work.
# (Where that private function is absent, ``atexit`` is used: registered after the provider's, it runs first.)
# It asks every live processor to write what it holds and, when an exporter exists, flushes the span processors
# of the global TracerProvider around it, so that the SDK's BatchSpanProcessor hands its spans to our exporter now
# rather than from atexit. It waits ``exit_timeout`` at most; rows still not written then are counted in one log
# line and given up (later writes at exit are bounded by ``exit_timeout`` too, and fail fast once executors are
# gone). It never raises. A child of ``multiprocessing`` runs threading's exit hooks too (not atexit) before its
# ``os._exit``; a child of ``os.fork`` that ends with ``os._exit`` runs no hook at all: it must flush first.
#
# Processors and exporters are held weakly: one that is collected is simply not flushed.


class _ExitParticipant(Protocol):
    def _begin_exit(self) -> Any: ...

    def _end_exit(self, started: Any) -> None: ...


_PARTICIPANTS: weakref.WeakSet[_ExitParticipant] = weakref.WeakSet()
_EXPORTERS: weakref.WeakSet[Any] = weakref.WeakSet()
_REGISTRATION_LOCK = threading.Lock()
_registered = False
_exited_pid: int | None = None


_GRACE = 1.0
"""Seconds the exit hook waits, past ``exit_timeout``, for exports it has stopped to count their spans."""


def track_for_exit(participant: _ExitParticipant, *, exporter: bool = False) -> None:
    """Writes what ``participant`` (a processor or exporter) still holds when the process exits normally.

    ``exporter``: the participant is a SpanExporter, whose spans a BatchSpanProcessor of the global provider
    holds until flushed.
    """
    (_EXPORTERS if exporter else _PARTICIPANTS).add(participant)
    global _registered
    with _REGISTRATION_LOCK:
        if _registered:
            return
        _registered = True
    _register_exit_hook()


def _register_exit_hook() -> None:
    register = getattr(threading, "_register_atexit", None)  # private, in CPython since 3.9
    if register is not None:
        try:
            register(_flush_at_exit)
            return
        except RuntimeError:  # created while threading is already shutting down
            pass
    atexit.register(_flush_at_exit)


def _flush_at_exit() -> None:
    """The exit hook: write what every live processor and exporter holds, within their ``exit_timeout``."""
    global _exited_pid
    if _exited_pid == os.getpid():
        return
    _exited_pid = os.getpid()
    try:
        participants = list(_PARTICIPANTS)
        exporters = list(_EXPORTERS)
        started = [(participant, participant._begin_exit()) for participant in participants]
        exporting = [(exporter, exporter._begin_exit()) for exporter in exporters]
        flusher = _flush_global_provider(exporters) if exporters else None
        for participant, begun in started:
            participant._end_exit(begun)
        flushed = True
        if flusher is not None:
            flusher.join(max(0.0, max(deadline for _, deadline in exporting) - time.monotonic()))
            flushed = not flusher.is_alive()
            if not flushed:
                for exporter in exporters:
                    exporter._give_up()
                flusher.join(_GRACE)  # the export in flight ends within a poll; the rest fail at once
        for exporter in exporters:
            exporter._end_exit(flushed)
    except BaseException:  # noqa: BLE001 - nothing may raise into interpreter shutdown, not even Ctrl-C here
        _logger.debug("exit flush failed", exc_info=True)


def _flush_global_provider(exporters: list[Any]) -> threading.Thread | None:
    """Flushes, in a daemon thread, the span processors of the global TracerProvider that hold spans for
    ``exporters``; None when there is nothing to flush. The SDK's BatchSpanProcessor exports in the caller's thread
    and ignores its timeout: the thread lets the hook stop waiting at ``exit_timeout``."""
    flushes = _exporter_flushes(trace.get_tracer_provider(), exporters)
    if not flushes:
        return None
    timeout_millis = int(1000 * max(exporter.options.exit_timeout for exporter in exporters))
    thread = threading.Thread(target=_quietly, args=(flushes, timeout_millis), name="DatasinkExitFlush", daemon=True)
    thread.start()
    return thread


def _exporter_flushes(provider: Any, exporters: list[Any]) -> list[Any]:
    """The ``force_flush`` of each span processor of ``provider`` wrapping one of ``exporters``, else the provider's.

    Only ours: the provider flushes its processors one after the other, and an exporter to a store that is away
    (OTLP to a dead collector, say) before ours would spend our ``exit_timeout``. The processors are found through
    :func:`otel_datasink.sdk.span_processors` and BatchSpanProcessor's ``span_exporter``; where they cannot be,
    the whole provider is flushed.
    """
    ours = {id(exporter) for exporter in exporters}
    processors = sdk.span_processors(provider)
    if processors is not None:
        wrapping = [p for p in processors if id(getattr(p, "span_exporter", None)) in ours]
        if wrapping:
            return [processor.force_flush for processor in wrapping]
    flush = getattr(provider, "force_flush", None)
    return [flush] if flush is not None else []


def _quietly(flushes: list[Any], timeout_millis: int) -> None:
    for flush in flushes:
        try:
            flush(timeout_millis)
        except Exception:  # noqa: BLE001 - another processor's failure is not ours to raise at exit
            _logger.debug("flush failed at exit", exc_info=True)
