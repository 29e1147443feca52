"""Collector settings (receivers, limits, spool, batches): flags first, ``OTEL_EXPORTER_DATASINK_COLLECTOR_*`` second.

Every value is checked here, once, when the settings are made (:data:`SETTINGS`), by the rules of the options
(:mod:`otel_datasink.config`): a bad flag or argument raises ValueError naming its flag, a bad environment variable
is logged once (the variable and its value) and the setting keeps its default. The receivers trust them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_datasink import environment_variables as env
from otel_datasink.config import (
    Setting,
    check_fields,
    checked,
    count,
    defaults_of,
    ignore_from_environment,
    millis_to_seconds,
    seconds,
    seconds_or_zero,
    text,
    with_environment,
)
from otel_datasink.tokens import given_token

DISABLED = "none"
"""The endpoint value that turns a receiver off."""


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


@dataclasses.dataclass(frozen=True)
class CollectorSettings:
    """What the collector listens on, what it accepts, and when it rolls batches into files."""

    http: tuple[str, int] | None = ("127.0.0.1", 4318)
    grpc: tuple[str, int] | None = ("127.0.0.1", 4317)
    token: str | None = None
    """Bearer token required on every OTLP request; None accepts any request."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request, compressed and decompressed."""
    max_inflight_bytes: int = 256 * 1024 * 1024
    """Memory held by requests at once, summed over HTTP and gRPC: their bodies (being received, decoded or
    spooled) and the estimated memory of their decoding (:meth:`~otel_datasink.collector.ingest.Ingest.decoded_size`:
    about 20 times the size of a request of small spans). A request whose decoding alone would pass it is refused
    for good (413)."""
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
        check_fields(self, SETTINGS, label=_flag_name)  # named as the flags, where these values come from
        if self.max_inflight_bytes < self.max_body_bytes:
            # A request of the largest size could then never be taken.
            raise ValueError(
                f"max-inflight-bytes ({self.max_inflight_bytes}) is below max-body-bytes ({self.max_body_bytes})"
            )

    @classmethod
    def resolve(cls, **values: Any) -> CollectorSettings:
        """Settings from keyword arguments (None = not given), then the environment, then the defaults.

        ``token_file`` (a flag, or its variable) is read here; it and ``token`` are one setting given two ways,
        so giving both at the same level (two flags, or two variables) is an error.
        """
        given = {k: v for k, v in values.items() if v is not None}
        token = given_token(
            given.pop("token", None),
            given.pop("token_file", None),
            env.OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN,
            env.OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE,
        )
        if token is not None:
            given["token"] = token
        # Checked before the environment is read, so that the order of the two sizes below compares numbers.
        given = {name: checked_flag(name, value) for name, value in given.items()}
        values, sources = with_environment(given, SETTINGS)
        defaults = defaults_of(cls)
        body = values.get("max_body_bytes", defaults["max_body_bytes"])
        inflight = values.get("max_inflight_bytes", defaults["max_inflight_bytes"])
        if inflight < body:
            reason = f"max-inflight-bytes ({inflight}) below max-body-bytes ({body})"
            if not ignore_from_environment(values, sources, "max_inflight_bytes", reason):
                ignore_from_environment(values, sources, "max_body_bytes", reason)
        return cls(**values)


def _endpoint(value: Any) -> tuple[str, int] | None:
    """A ``HOST:PORT`` text (:func:`parse_endpoint`), a (host, port) pair, or None: the receiver disabled."""
    if value is None or isinstance(value, str):
        return parse_endpoint(value)
    if isinstance(value, tuple) and len(value) == 2:
        host, port = value
        if isinstance(host, str) and type(port) is int and 0 <= port < 65536:
            return (host, port)
    raise ValueError(f"not a HOST:PORT endpoint: {value!r}")


def _folder(value: Any) -> Path:
    return Path(text(value)).expanduser()


SETTINGS: dict[str, Setting] = {
    "http": Setting(_endpoint, env.OTEL_EXPORTER_DATASINK_COLLECTOR_HTTP_ENDPOINT),
    "grpc": Setting(_endpoint, env.OTEL_EXPORTER_DATASINK_COLLECTOR_GRPC_ENDPOINT),
    # Its two variables (the token, or a file holding it) are read by tokens.given_token.
    "token": Setting(text),
    "max_body_bytes": Setting(count, env.OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_BODY_BYTES, int),
    "max_inflight_bytes": Setting(count, env.OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_INFLIGHT_BYTES, int),
    "max_connections": Setting(count, env.OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_CONNECTIONS, int),
    "header_timeout": Setting(seconds, env.OTEL_EXPORTER_DATASINK_COLLECTOR_HEADER_TIMEOUT, millis_to_seconds),
    "body_timeout": Setting(seconds, env.OTEL_EXPORTER_DATASINK_COLLECTOR_BODY_TIMEOUT, millis_to_seconds),
    "idle_timeout": Setting(seconds, env.OTEL_EXPORTER_DATASINK_COLLECTOR_IDLE_TIMEOUT, millis_to_seconds),
    "offload_bytes": Setting(count),
    "spool_dir": Setting(_folder, env.OTEL_EXPORTER_DATASINK_COLLECTOR_SPOOL_DIR),
    # 0 rows or bytes would roll every request into files of its own.
    "flush_rows": Setting(count, env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_ROWS, int),
    "flush_bytes": Setting(count, env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_BYTES, int),
    "flush_age": Setting(seconds, env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_AGE, millis_to_seconds),
    # 0 would answer 503 forever: "backlogged" with no batch waiting.
    "max_pending_batches": Setting(count),
    # 0 is harmless: what SIGTERM does not flush stays in the spool for the next start.
    "shutdown_timeout": Setting(seconds_or_zero),
}
"""What each collector setting accepts, and its environment variable (``token_file`` is read into ``token``)."""


def _flag_name(name: str) -> str:
    return name.replace("_", "-")


def checked_flag(name: str, value: Any) -> Any:
    """``value`` checked for the setting ``name``; a ValueError names its flag (``max-connections: ...``)."""
    return checked(_flag_name(name), value, SETTINGS[name])


def flag_type(name: str) -> Callable[[str], Any]:
    """An argparse ``type`` for the flag of the setting ``name``: its text as a number (durations in seconds, unlike
    the variables' milliseconds), checked; a bad value is an argparse error naming the flag, before anything runs."""
    setting = SETTINGS[name]

    def convert(raw: str) -> Any:
        try:
            return setting.check(_number(raw))
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = name  # argparse names the type in its "invalid ... value" message
    return convert


def _number(raw: str) -> int | float | str:
    # Text that is no number is left to the check, which refuses it with its own message.
    for parse in (int, float):
        try:
            return parse(raw)
        except ValueError:
            pass
    return raw
