"""The collector process: spool replay, receivers, batching, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
import time
from typing import Any

from aiohttp import web

from otel_datasink.collector import grpc as grpc_receiver
from otel_datasink.collector import http as http_receiver
from otel_datasink.collector.batcher import Batch, Batcher
from otel_datasink.collector.ingest import Ingest, UndecodableError
from otel_datasink.collector.metrics import Metrics
from otel_datasink.collector.settings import CollectorSettings, default_spool_dir
from otel_datasink.collector.spool import Spool, read_segment
from otel_datasink.config import Options
from otel_datasink.profiles import load_profile
from otel_datasink.writer import Writer

_logger = logging.getLogger(__name__)

_AGE_CHECK_SECONDS = 0.2


class Collector:
    """An OTLP receiver writing job spans to ``options.location``; start and stop it on an asyncio loop."""

    def __init__(self, options: Options, settings: CollectorSettings) -> None:
        self.options = options
        self.settings = settings
        self.metrics = Metrics()
        self.ingest = Ingest(load_profile(options.profile), self.metrics)
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

    async def accept(self, kind: int, body: bytes) -> int:
        """Maps a request body, batches its rows and returns once it is spooled; returns the rejected span count.

        Raises :class:`UndecodableError` for a body that is not OTLP, OSError when the spool cannot take it.
        """
        result = self.ingest(kind, body)
        if result.row_count:
            await self.batcher.add(result.rows, kind, body)
        return result.rejected

    async def start(self) -> None:
        """Locks the spool, queues what an earlier run left in it, and starts listening."""
        spool_dir = self.settings.spool_dir or default_spool_dir(self.options.location)
        writer = Writer(self.options)
        self.spool = Spool(spool_dir)
        self.metrics.gauges["backlogged"] = lambda: int(self.backlogged)
        self.batcher = Batcher(writer, self.spool, self.settings, self.metrics)
        try:
            self._replay_leftovers()
            if self.settings.http is not None:
                host, port = self.settings.http
                self._runner = web.AppRunner(
                    http_receiver.build_app(self),
                    auto_decompress=False,
                    access_log=None,
                    handle_signals=False,
                    shutdown_timeout=2.0,
                )
                await self._runner.setup()
                site = web.TCPSite(self._runner, host, port, reuse_address=True)
                await site.start()
                self.http_port = self._runner.addresses[0][1]
                _logger.info("OTLP/HTTP on http://%s:%d/v1/traces", host, self.http_port)
            if self.settings.grpc is not None:
                host, port = self.settings.grpc
                self._grpc_server, self.grpc_port = grpc_receiver.build_server(self, host, port)
                await self._grpc_server.start()
                _logger.info("OTLP/gRPC on %s:%d", host, self.grpc_port)
        except BaseException:
            await self.stop(0)
            raise
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        _logger.info("collector writing to %s (spool %s)", self.options.location, spool_dir)

    def _replay_leftovers(self) -> None:
        for path in self.spool.leftover:
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
            self.batcher.enqueue(batch)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_AGE_CHECK_SECONDS)
            self.batcher.roll_if_old()

    async def stop(self, timeout: float | None = None) -> bool:
        """Stops accepting, writes every batch within ``timeout`` s; True if nothing was left in the spool."""
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
        if self.batcher is not None:
            remaining = max(0.0, deadline - time.monotonic())
            done = await asyncio.get_running_loop().run_in_executor(None, self.batcher.drain, remaining)
        if self.spool is not None:
            self.spool.close()
        if done:
            _logger.info("collector stopped; every batch written")
        else:
            _logger.warning("collector stopped with %d spool segment(s) left for the next start", self.spool.depth)
        return done


_GC_THRESHOLD = (50_000, 20, 100)


def _tune_gc() -> None:
    # Every request allocates thousands of short-lived dicts and tuples (records, rows) that reference counting
    # frees; at Python's default threshold (700) the cyclic collector would run several times per request and
    # rescan the rows still in flight (~15% of the CPU per span). The collector process owns its interpreter.
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLD)


async def serve(collector: Collector) -> int:
    """Runs a collector until SIGTERM or SIGINT; 0 if it stopped with everything written, else 1."""
    settings = collector.settings
    _tune_gc()
    await collector.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    _logger.info("stopping: flushing within %.0fs", settings.shutdown_timeout)
    return 0 if await collector.stop() else 1


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
