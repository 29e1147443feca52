"""The collector's counters, served as Prometheus text on ``GET /metrics``, and a rate-limited log line.

Plain integers bumped from the event loop and the writer thread; a torn read of a counter is harmless.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable


@dataclasses.dataclass
class Metrics:
    """Counters since start, and gauges read when rendered."""

    requests: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    """(protocol, status) -> requests answered."""
    bytes_received: int = 0
    """Request bytes as received (compressed where they were)."""
    spans_received: int = 0
    job_spans: int = 0
    non_job_spans: int = 0
    """Spans the profile did not take as job runs: ignored, not written."""
    rejected_spans: int = 0
    """Spans that could not be read (invalid ids, malformed fields), reported to clients as partial success."""
    rows_written: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    """table -> rows written to the store."""
    files_written: int = 0
    write_errors: int = 0
    spool_replayed_segments: int = 0
    connections_refused: int = 0
    """OTLP/HTTP connections closed at once because ``max_connections`` were open."""
    timeouts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    """phase (``header``, ``body``) -> OTLP/HTTP connections closed because that phase took too long."""
    client_disconnects: int = 0
    """OTLP/HTTP clients that went away while their request's body was being received."""
    grpc_on_http_port: int = 0
    """Connections to the OTLP/HTTP port that opened with the HTTP/2 preface (a gRPC exporter)."""
    gauges: dict[str, Callable[[], float]] = dataclasses.field(default_factory=dict)
    """name -> current value (spool depth, pending batches), read at render time."""

    def render(self) -> str:
        """The counters in the Prometheus text exposition format."""
        prefix = "otel_datasink_collector"
        lines = [f"# TYPE {prefix}_requests_total counter"]
        for (protocol, status), count in sorted(self.requests.items()):
            lines.append(f'{prefix}_requests_total{{protocol="{protocol}",status="{status}"}} {count}')
        for name, value in (
            ("bytes_received_total", self.bytes_received),
            ("spans_received_total", self.spans_received),
            ("job_spans_total", self.job_spans),
            ("non_job_spans_total", self.non_job_spans),
            ("rejected_spans_total", self.rejected_spans),
            ("files_written_total", self.files_written),
            ("write_errors_total", self.write_errors),
            ("spool_replayed_segments_total", self.spool_replayed_segments),
            ("connections_refused_total", self.connections_refused),
            ("client_disconnects_total", self.client_disconnects),
            ("grpc_on_http_port_total", self.grpc_on_http_port),
        ):
            lines += [f"# TYPE {prefix}_{name} counter", f"{prefix}_{name} {value}"]
        lines.append(f"# TYPE {prefix}_timeouts_total counter")
        for phase in ("header", "body"):
            lines.append(f'{prefix}_timeouts_total{{phase="{phase}"}} {self.timeouts[phase]}')
        lines.append(f"# TYPE {prefix}_rows_written_total counter")
        for table in sorted(self.rows_written):
            lines.append(f'{prefix}_rows_written_total{{table="{table}"}} {self.rows_written[table]}')
        for name, read in sorted(self.gauges.items()):
            lines += [f"# TYPE {prefix}_{name} gauge", f"{prefix}_{name} {read()}"]
        return "\n".join(lines) + "\n"


class Throttled:
    """A log line for an event that clients can cause at any rate: the first at once, then one per ``interval``.

    Each line after the first says how many events it stands for, so the log stays bounded (a flood of
    refused connections writes one line a minute) while /metrics counts every event.
    """

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING, interval: float = 60.0) -> None:
        self.logger = logger
        self.level = level
        self.interval = interval
        self._next = 0.0
        self._since = 0

    def __call__(self, message: str, *args: object) -> None:
        """Counts one event; logs ``message % args`` if the last line is ``interval`` seconds old."""
        self._since += 1
        now = time.monotonic()
        if now < self._next:
            return
        if self._since > 1:
            message += f" ({self._since} such events since the last such message)"
        self.logger.log(self.level, message, *args)
        self._since = 0
        self._next = now + self.interval
