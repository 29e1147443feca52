"""The collector process: spool replay, receivers, batching, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import gc
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

from aiohttp import web

from otel_datasink.collector import grpc as grpc_receiver
from otel_datasink.collector import http as http_receiver
from otel_datasink.collector.batcher import Batch, Batcher, Parts
from otel_datasink.collector.counters import Metrics, Throttled
from otel_datasink.collector.ingest import Ingest, Ingested, OverBudgetError, TooLargeToDecodeError, UndecodableError
from otel_datasink.collector.settings import CollectorSettings, default_spool_dir
from otel_datasink.collector.spool import Spool, read_segment
from otel_datasink.config import Options
from otel_datasink.otlp import Rejections
from otel_datasink.pipeline import Pipeline
from otel_datasink.schema import Rows

_logger = logging.getLogger(__name__)
T = TypeVar("T")

_AGE_CHECK_SECONDS = 0.2
_ALL_INTERFACES = ("0.0.0.0", "::", "")


class ByteBudget:
    """Memory held by requests at once, over both receivers: a request takes its body's share before its body is
    read, and the estimated size of its decoding (:meth:`Collector.accept`) while it is decoded.

    Loop-only (no lock). Waiters are served in order, so a big request is not passed over for ever by small ones.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future]] = collections.deque()

    def hold(self, size: int) -> Hold | None:
        """A hold of ``size`` bytes, or None at once if they are not free."""
        if (self._waiters and size) or not self._grow(size):
            return None
        return Hold(self, size)

    async def wait_hold(self, size: int, timeout: float) -> Hold | None:
        """A hold of ``size`` bytes, waiting up to ``timeout`` s for them to be free; None if they were not."""
        held = self.hold(size)
        if held is not None or size > self.limit:
            return held
        waiter = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait((waiter,), timeout=timeout)  # leaves the waiter as it is when it times out
        except BaseException:  # the call was cancelled: what _give may have granted meanwhile goes back
            if waiter.done() and not waiter.cancelled():
                self._give(size)
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()  # the next ones may fit where this one did not
        if waiter.cancelled():
            return None
        return Hold(self, size)  # given by _give, which counted it as used

    def _grow(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def _give(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.limit:
            size, waiter = self._waiters.popleft()
            if not waiter.done():
                self.used += size
                waiter.set_result(None)


class Hold:
    """A request's share of a :class:`ByteBudget`, resized as its body turns out; ``release()`` gives it back."""

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self._budget = budget
        self.size = size

    def grow_to(self, size: int) -> bool:
        """Holds at least ``size`` bytes; False (holding what it held) if the budget has not that much left."""
        if size <= self.size:
            return True
        if not self._budget._grow(size - self.size):
            return False
        self.size = size
        return True

    def shrink_to(self, size: int) -> None:
        """Holds at most ``size`` bytes (what a body turned out to be once read)."""
        if size < self.size:
            self._budget._give(self.size - size)
            self.size = size

    def release(self) -> None:
        """Gives everything back (again: nothing)."""
        self.shrink_to(0)


class ListenError(OSError):
    """A receiver cannot listen on its address (another process has it, no interface of this host has it, a
    privileged port): ``setting`` names the receiver's setting (``http``, ``grpc``), ``address`` is HOST:PORT."""

    def __init__(self, setting: str, address: str, cause: BaseException) -> None:
        super().__init__(getattr(cause, "errno", None), getattr(cause, "strerror", None) or str(cause))
        self.setting = setting
        self.address = address

    def __str__(self) -> str:
        return f"cannot listen on {self.address} ({self.setting}): {self.strerror}"


class Collector:
    """An OTLP receiver writing job spans to ``options.location``; start and stop it on an asyncio loop."""

    def __init__(self, options: Options, settings: CollectorSettings) -> None:
        self.options = options
        self.settings = settings
        self.metrics = Metrics()
        self.metrics.report_to()  # the global MeterProvider's, if the process has one (opentelemetry-instrument)
        self.pipeline = Pipeline.open(options)
        self.ingest = Ingest(
            self.pipeline.profile,
            self.metrics,
            namespace_prefix=options.openlineage_namespace_prefix,
            limits=options.span_limits,
        )
        self.budget = ByteBudget(settings.max_inflight_bytes)
        self.metrics.gauges["inflight_bytes"] = lambda: self.budget.used
        # One thread: big requests are decoded one at a time beside the loop (more would only share the GIL).
        self._decoder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="otel-datasink-decode")
        self.spool: Spool | None = None
        self.batcher: Batcher | None = None
        self.http_port: int | None = None
        """The bound OTLP/HTTP port (useful with port 0), once started."""
        self.grpc_port: int | None = None
        self._runner: web.AppRunner | None = None
        self._grpc_server: Any = None
        self._ticker: asyncio.Task | None = None

    @property
    def backlogged(self) -> bool:
        """Whether requests are turned away until the store catches up."""
        return self.batcher is not None and self.batcher.backlogged

    def health(self, detailed: bool = False) -> tuple[bool, dict[str, Any]]:
        """Whether the collector is ready (writes work, the store keeps up), and its state for ``/health``.

        ``detailed`` adds what only operators should see: the location, the spool, and the failure's cause.
        """
        error = getattr(self.batcher, "last_error", None)
        state: dict[str, Any]
        if error:
            state = {"status": "degraded", "reason": "writing to the store or the spool fails; retried"}
        elif self.backlogged:
            state = {"status": "backlogged", "reason": "batches wait for the store; requests get 503"}
        else:
            state = {"status": "ok"}
        if detailed:
            state["error"] = error
            state["location"] = self.options.location
            state["spool_segments"] = self.spool.depth if self.spool is not None else 0
        return state["status"] == "ok", state

    async def accept(self, kind: int, body: bytes) -> Rejections:
        """Maps a request body, batches its rows and returns once it is spooled; returns the rejected spans.

        ``kind`` is the body's :class:`~otel_datasink.formats.Format` (its value is the spool's frame kind); the
        receiver holds the body's share of the budget. The decoding holds its estimated size
        (:meth:`Ingest.decoded_size`) too, until its rows are Arrow tables and their dicts are freed. Raises
        :class:`UndecodableError` for a body that is not what ``kind`` says, :class:`TooLargeToDecodeError` when its
        decoding would pass the whole budget, :class:`OverBudgetError` when it does not fit in what is left of it,
        OSError when the spool cannot take it.
        """
        # Decoding, mapping and converting a big request take seconds of CPU: on a thread, the loop keeps serving
        # the others (it gets the GIL back at least every switch interval, 5 ms, and between the conversion's
        # chunks). Small requests stay on the loop: the hop would cost more than they take.
        offload = len(body) >= self.settings.offload_bytes
        size = await self._decoding(offload, self.ingest.decoded_size, kind, body)
        hold = await self._hold_decoding(size, len(body))
        try:
            result, parts = await self._decoding(offload, self._rows_of, kind, body)
        finally:
            hold.release()
        self.ingest.count(result)
        if parts:
            batcher = self.batcher
            assert batcher is not None, "requests come in only through the receivers, which start() opens after it"
            # Spooled and batched on the loop, in the order the requests get here: the batch's rows and its
            # segment's frames stay the same requests, and the 200 waits for the fsync as before.
            await batcher.add(parts, kind, body)
        return result.rejected

    async def _decoding(self, offload: bool, work: Callable[[int, bytes], T], kind: int, body: bytes) -> T:
        """``work(kind, body)``, on the decoding thread when ``offload``."""
        if not offload:
            return work(kind, body)
        return await asyncio.get_running_loop().run_in_executor(self._decoder, work, kind, body)

    async def _hold_decoding(self, size: int, body_size: int) -> Hold:
        """The budget's share for a decoding of ``size`` bytes (the receiver holds the body's ``body_size``)."""
        if body_size + size > self.budget.limit:
            raise TooLargeToDecodeError(
                f"decoding the request would take about {size} bytes of memory: with its {body_size} bytes, "
                f"over the in-flight budget of {self.budget.limit} (max-inflight-bytes)"
            )
        hold = await self.budget.wait_hold(size, grpc_receiver.ADMISSION_WAIT_SECONDS)
        if hold is None:
            raise OverBudgetError("too much memory held by requests in flight; retry later")
        return hold

    def _rows_of(self, kind: int, body: bytes) -> tuple[Ingested, Parts]:
        """A request body's rows converted to Arrow for the batch, their dicts freed (safe on the decoding thread).

        Freed here, before the decoding's share of the budget is given back: on the decoding thread, a chunk at a
        time, they do not stall the loop as one long deallocation would.
        """
        result = self.ingest.decode(kind, body)
        parts = Batch.convert(result.rows) if result.row_count else []
        _release(result.rows)
        return result, parts

    async def start(self) -> None:
        """Locks the spool, queues what an earlier run left in it, and starts listening."""
        spool_dir = self.settings.spool_dir or default_spool_dir(self.options.location)
        self.spool = Spool(spool_dir)
        spool = self.spool
        self.metrics.spool_errors = lambda: spool.errors
        self.metrics.gauges["backlogged"] = lambda: int(self.backlogged)
        batcher = self.batcher = Batcher(self.pipeline.writer, spool, self.settings, self.metrics)
        _quiet_accept_errors(asyncio.get_running_loop())
        addresses: list[tuple] = []
        try:
            self._replay_leftovers(spool, batcher)
            if self.settings.http is not None:
                host, port = self.settings.http
                with _listening("http", host, port):
                    self._runner, addresses = await http_receiver.start(self, host, port)
                self.http_port = addresses[0][1]
            if self.settings.grpc is not None:
                host, port = self.settings.grpc
                with _listening("grpc", host, port):
                    _check_free(host, port)
                    self._grpc_server, self.grpc_port = grpc_receiver.build_server(self, host, port)
                await self._grpc_server.start()
        except BaseException:
            await self._shut_down(0)  # quietly: nothing was received, "stopped; every batch written" would mislead
            raise
        self._log_addresses(addresses)  # once both listen: a collector that cannot start announces no address
        self._ticker = asyncio.get_running_loop().create_task(self._tick(batcher))
        _logger.info("collector writing to %s (spool %s)", self.options.location, spool_dir)

    def _log_addresses(self, http_addresses: list[tuple]) -> None:
        if self.settings.http is not None:
            for address in http_addresses:
                _logger.info("OTLP/HTTP on http://%s/v1/traces%s", _address(address), _scope(self.settings.http[0]))
                _logger.info("OpenLineage on http://%s/api/v1/lineage", _address(address))
        if self.settings.grpc is not None:
            host = self.settings.grpc[0]
            _logger.info("OTLP/gRPC on %s%s", _address((host, self.grpc_port)), _scope(host))

    def _replay_leftovers(self, spool: Spool, batcher: Batcher) -> None:
        for path in spool.leftover:
            batch = Batch(segment=path)
            for kind, body in read_segment(path):
                try:
                    result = self.ingest(kind, body, count=False)
                except UndecodableError as error:  # it decoded when it was spooled: the file was altered since
                    _logger.warning("spooled request in %s skipped: %s", path, error)
                    continue
                batch.extend(result.rows)
            _logger.info("replaying %d rows from spool segment %s", batch.row_count, path.name)
            self.metrics.spool_replayed_segments += 1
            batcher.enqueue(batch)

    async def _tick(self, batcher: Batcher) -> None:
        while True:
            await asyncio.sleep(_AGE_CHECK_SECONDS)
            batcher.roll_if_old()

    async def stop(self, timeout: float | None = None) -> bool:
        """Stops accepting, writes every batch within ``timeout`` s; True if nothing was left in the spool."""
        done = await self._shut_down(timeout)
        if done:
            _logger.info("collector stopped; every batch written")
        else:
            # Not done: a batcher drained, so start() had made the spool before it.
            depth = self.spool.depth if self.spool is not None else 0
            _logger.warning("collector stopped with %d spool segment(s) left for the next start", depth)
        return done

    async def _shut_down(self, timeout: float | None) -> bool:
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self._ticker is not None:
            self._ticker.cancel()
        # Stop listening first, and let requests in flight finish (they may be waiting on the spool).
        if self._grpc_server is not None:
            await self._grpc_server.stop(grace=min(2.0, timeout / 2))
        if self._runner is not None:
            await self._runner.cleanup()
        done = True
        spool = self.spool
        if self.batcher is not None:
            remaining = max(0.0, deadline - time.monotonic())
            done = await asyncio.get_running_loop().run_in_executor(None, self.batcher.drain, remaining)
        self._decoder.shutdown(wait=True, cancel_futures=True)
        if spool is not None:
            spool.close()
        return done


_RELEASE_CHUNK_ROWS = 5_000


def _release(rows: Rows) -> None:
    """Empties the row lists a chunk at a time, so that freeing them lets other threads in between chunks."""
    for table_rows in rows.values():
        while table_rows:
            del table_rows[-_RELEASE_CHUNK_ROWS:]


def _address(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _scope(host: str) -> str:
    return " (every interface: reachable from other hosts)" if host in _ALL_INTERFACES else ""


@contextlib.contextmanager
def _listening(setting: str, host: str, port: int) -> Iterator[None]:
    """Raises :class:`ListenError` for what the receiver of ``setting`` raises when it cannot bind."""
    try:
        yield
    except (OSError, RuntimeError) as error:  # gRPC: RuntimeError("Failed to bind to address ...")
        raise ListenError(setting, _address((host, port)), error) from error


def _check_free(host: str, port: int) -> None:
    """Raises the OSError of binding ``host:port`` when no address it resolves to can be bound.

    For gRPC, before it binds: its C core logs the failure on stderr itself (a line that breaks the command's
    one-line failure) and raises an error that says not why.
    """
    first: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC's own listener
            try:
                probe.bind(address)
                return  # gRPC listens when any of them binds
            except OSError as error:
                first = first or error
    if first is not None:
        raise first


_accept_log = Throttled(_logger, logging.ERROR)


def _quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Makes asyncio's report of a failed ``accept()`` (out of file descriptors) one line a minute, not a traceback
    per attempt: the connection cap should prevent it, but other file descriptors count against the limit too."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "accept" in message and "out of system resource" in message:
            _accept_log("cannot accept connections: %s (%s); raise ulimit -n", message, context.get("exception"))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


_GC_THRESHOLD = (50_000, 20, 100)


def _tune_gc() -> None:
    # Every request allocates thousands of short-lived dicts and tuples (records, rows) that reference counting
    # frees; at Python's default threshold (700) the cyclic collector would run several times per request and
    # rescan the rows still in flight (~15% of the CPU per span). The collector process owns its interpreter.
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLD)


class Stopped(NamedTuple):
    """How :func:`serve` ended."""

    by: signal.Signals
    """The signal that stopped the collector: SIGTERM (a service manager's stop) or SIGINT (Ctrl-C)."""
    flushed: bool
    """Whether every batch was written (else the rest is in the spool, written at the next start)."""


async def serve(collector: Collector) -> Stopped:
    """Runs a collector until SIGTERM or SIGINT, then stops it, flushing; which signal, and whether it flushed."""
    settings = collector.settings
    _tune_gc()
    await collector.start()
    received: asyncio.Queue[signal.Signals] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, received.put_nowait, signum)
    by = await received.get()  # the first; any later one changes nothing
    _logger.info("%s: stopping, flushing within %.0fs", by.name, settings.shutdown_timeout)
    return Stopped(by, await collector.stop())


class BackgroundCollector:
    """A collector on its own event loop in a daemon thread: for tests and for embedding in a Python process.

    ``with BackgroundCollector(options, settings) as collector:`` starts it (``collector.http_port`` and
    ``collector.grpc_port`` are then bound) and stops it, flushing, on exit.
    """

    def __init__(self, options: Options, settings: CollectorSettings) -> None:
        self.collector = Collector(options, settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(name="otel-datasink-collector", target=self._loop.run_forever, daemon=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collector, name)

    def start(self) -> BackgroundCollector:
        """Starts the loop thread and the collector on it; raises what the start raised."""
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.collector.start(), self._loop).result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            raise
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stops the collector (as on SIGTERM) and its loop; True if every batch was written."""
        try:
            return asyncio.run_coroutine_threadsafe(self.collector.stop(timeout), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> BackgroundCollector:
        return self if self._thread.is_alive() else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
