"""Collector settings (receivers, limits, spool, batches): flags first, ``OTEL_EXPORTER_DATASINK_COLLECTOR_*`` second.

Every value is checked here, once, when the settings are made: the receivers trust them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_datasink import environment_variables as env

_logger = logging.getLogger(__name__)

DISABLED = "none"
"""The endpoint value that turns a receiver off."""

# Variables of the settings added with the receivers' limits (documented in collector/README.md).
OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE = "OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE"
OTEL_EXPORTER_DATASINK_COLLECTOR_HEADER_TIMEOUT = "OTEL_EXPORTER_DATASINK_COLLECTOR_HEADER_TIMEOUT"
OTEL_EXPORTER_DATASINK_COLLECTOR_BODY_TIMEOUT = "OTEL_EXPORTER_DATASINK_COLLECTOR_BODY_TIMEOUT"
OTEL_EXPORTER_DATASINK_COLLECTOR_IDLE_TIMEOUT = "OTEL_EXPORTER_DATASINK_COLLECTOR_IDLE_TIMEOUT"
OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_CONNECTIONS = "OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_CONNECTIONS"
OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_INFLIGHT_BYTES = "OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_INFLIGHT_BYTES"


def parse_endpoint(value: str | None) -> tuple[str, int] | None:
    """``HOST:PORT`` (IPv6 as ``[::1]:4318``) as a pair, or None for ``none``/empty; ValueError otherwise.

    ``:PORT`` (no host) means every interface, ``0.0.0.0``.
    """
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


def read_token_file(path: str | os.PathLike) -> str:
    """The token in a file (surrounding whitespace and the final newline dropped); ValueError if unreadable or empty."""
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the token file {os.fspath(path)!r}: {error}") from None
    if not token:
        raise ValueError(f"the token file {os.fspath(path)!r} is empty")
    return token


@dataclasses.dataclass(frozen=True)
class CollectorSettings:
    """What the collector listens on, what it accepts, and when it rolls batches into files."""

    http: tuple[str, int] | None = ("127.0.0.1", 4318)
    grpc: tuple[str, int] | None = ("127.0.0.1", 4317)
    token: str | None = None
    """Bearer token required on every OTLP request; None accepts any request."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request, compressed and decompressed."""
    max_inflight_bytes: int = 64 * 1024 * 1024
    """Request bodies held at once (being received, decoded or spooled), summed over HTTP and gRPC."""
    max_connections: int = 1000
    """Open OTLP/HTTP connections; further ones are refused (503) until some close."""
    header_timeout: float = 10.0
    """Seconds a request's line and headers may take to arrive, from its first byte."""
    body_timeout: float = 30.0
    """Seconds a request's body may take to arrive, once its headers are in."""
    idle_timeout: float = 30.0
    """Seconds a connection may stay open without a request (before the first one and between them)."""
    offload_bytes: int = 1024 * 1024
    """Bodies from this size on are decoded and mapped on a worker thread, so the event loop keeps serving."""
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

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_inflight_bytes", "max_connections", "offload_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        for name in ("header_timeout", "body_timeout", "idle_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.replace('_', '-')} must be more than 0 seconds, not {getattr(self, name)}")
        if self.max_inflight_bytes < self.max_body_bytes:
            # A request of the largest size could then never be taken.
            raise ValueError(
                f"max-inflight-bytes ({self.max_inflight_bytes}) is below max-body-bytes ({self.max_body_bytes})"
            )
        if self.token is not None and not self.token.strip():
            raise ValueError("the token is empty")

    @classmethod
    def resolve(cls, **values: Any) -> CollectorSettings:
        """Settings from keyword arguments (None = not given), then the environment, then the defaults.

        ``token_file`` (a flag, or its variable) is read here; it and ``token`` are one setting given two ways,
        so giving both at the same level (two flags, or two variables) is an error.
        """
        given = {k: v for k, v in values.items() if v is not None}
        if "token" in given and "token_file" in given:
            raise ValueError("give --token or --token-file, not both")
        if "token" not in given and "token_file" not in given:
            given |= _token_from_environment()
        token_file = given.pop("token_file", None)
        if token_file is not None:
            given["token"] = read_token_file(token_file)
        given = _with_environment(given)
        for name in ("http", "grpc"):
            if isinstance(given.get(name), str):
                given[name] = parse_endpoint(given[name])
        if given.get("spool_dir") is not None:
            given["spool_dir"] = Path(given["spool_dir"]).expanduser()
        return cls(**given)


def _token_from_environment() -> dict[str, str]:
    token = os.environ.get(env.OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN, "").strip()
    token_file = os.environ.get(OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE, "").strip()
    if token and token_file:
        raise ValueError(
            f"set {env.OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN} or {OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE}, "
            "not both"
        )
    return {"token": token} if token else {"token_file": token_file} if token_file else {}


def _with_environment(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` completed from the variables of :data:`_FROM_ENV` for the settings it lacks.

    A variable whose text does not convert is ignored with a warning (the setting keeps its default). Read here,
    not with :func:`otel_datasink.config.with_environment`, whose table format is being reworked.
    """
    values = dict(given)
    for name, variable, convert in _FROM_ENV:
        raw = os.environ.get(variable, "").strip()
        if name in values or not raw:
            continue
        try:
            values[name] = convert(raw)
        except ValueError:
            _logger.warning("ignoring %s=%r: not a valid value", variable, raw)
    return values


def _millis_to_seconds(raw: str) -> float:
    """A variable in milliseconds (OpenTelemetry's unit) as seconds; ValueError if negative."""
    seconds = float(raw) / 1000.0
    if not seconds >= 0:
        raise ValueError(f"{raw} is negative")
    return seconds


def _positive_count(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError(f"{value} is below 1")
    return value


def _positive_millis(raw: str) -> float:
    seconds = _millis_to_seconds(raw)
    if not seconds > 0:
        raise ValueError(f"{raw} is not more than 0")
    return seconds


_FROM_ENV: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("http", env.OTEL_EXPORTER_DATASINK_COLLECTOR_HTTP_ENDPOINT, str),
    ("grpc", env.OTEL_EXPORTER_DATASINK_COLLECTOR_GRPC_ENDPOINT, str),
    ("max_body_bytes", env.OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_BODY_BYTES, _positive_count),
    ("max_inflight_bytes", OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_INFLIGHT_BYTES, _positive_count),
    ("max_connections", OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_CONNECTIONS, _positive_count),
    ("header_timeout", OTEL_EXPORTER_DATASINK_COLLECTOR_HEADER_TIMEOUT, _positive_millis),
    ("body_timeout", OTEL_EXPORTER_DATASINK_COLLECTOR_BODY_TIMEOUT, _positive_millis),
    ("idle_timeout", OTEL_EXPORTER_DATASINK_COLLECTOR_IDLE_TIMEOUT, _positive_millis),
    ("spool_dir", env.OTEL_EXPORTER_DATASINK_COLLECTOR_SPOOL_DIR, str),
    ("flush_rows", env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_ROWS, int),
    ("flush_bytes", env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_BYTES, int),
    ("flush_age", env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_AGE, _millis_to_seconds),
)
