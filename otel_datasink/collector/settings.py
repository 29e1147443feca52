"""Collector settings (receivers, spool, batches): flags first, ``OTEL_EXPORTER_DATASINK_COLLECTOR_*`` second."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

from otel_datasink import environment_variables as env
from otel_datasink.config import millis_to_seconds, with_environment

DISABLED = "none"
"""The endpoint value that turns a receiver off."""


def parse_endpoint(value: str | None) -> tuple[str, int] | None:
    """``HOST:PORT`` (IPv6 as ``[::1]:4318``) as a pair, or None for ``none``/empty; ValueError otherwise."""
    if value is None or value.strip().lower() in ("", DISABLED, "off", "disabled"):
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"not a HOST:PORT endpoint: {value!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def default_spool_dir(location: str) -> Path:
    """A spool folder per location under the user's cache, so two collectors of two locations never share one."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(location.encode()).hexdigest()[:16]
    return Path(cache) / "otel-datasink" / "spool" / digest


@dataclasses.dataclass(frozen=True)
class CollectorSettings:
    """What the collector listens on, what it accepts, and when it rolls batches into files."""

    http: tuple[str, int] | None = ("127.0.0.1", 4318)
    grpc: tuple[str, int] | None = ("127.0.0.1", 4317)
    token: str | None = None
    """Bearer token required on every OTLP request; None accepts any request."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request, compressed and decompressed."""
    spool_dir: Path | None = None
    """None: :func:`default_spool_dir` of the location."""
    flush_rows: int = 50_000
    flush_bytes: int = 64 * 1024 * 1024
    flush_age: float = 30.0
    """Seconds after its first row at which a batch is rolled into files."""
    max_pending_batches: int = 4
    """Rolled batches waiting for the store past which requests get 503 (the store is backlogged)."""
    shutdown_timeout: float = 10.0
    """Seconds SIGTERM may take to flush; what is left stays in the spool for the next start."""

    @classmethod
    def resolve(cls, **values: Any) -> CollectorSettings:
        """Settings from keyword arguments (None = not given), then the environment, then the defaults."""
        given = with_environment({k: v for k, v in values.items() if v is not None}, _FROM_ENV)
        for name in ("http", "grpc"):
            if isinstance(given.get(name), str):
                given[name] = parse_endpoint(given[name])
        if given.get("spool_dir") is not None:
            given["spool_dir"] = Path(given["spool_dir"]).expanduser()
        return cls(**given)


_FROM_ENV = (
    ("http", env.OTEL_EXPORTER_DATASINK_COLLECTOR_HTTP_ENDPOINT, str),
    ("grpc", env.OTEL_EXPORTER_DATASINK_COLLECTOR_GRPC_ENDPOINT, str),
    ("token", env.OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN, str),
    ("max_body_bytes", env.OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_BODY_BYTES, int),
    ("spool_dir", env.OTEL_EXPORTER_DATASINK_COLLECTOR_SPOOL_DIR, str),
    ("flush_rows", env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_ROWS, int),
    ("flush_bytes", env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_BYTES, int),
    ("flush_age", env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_AGE, millis_to_seconds),
)
