"""Options shared by every front door, read from arguments first and ``OTEL_EXPORTER_DATASINK_*`` second."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

from otel_datasink import environment_variables as env

_logger = logging.getLogger(__name__)

DEFAULT_LOCATION = "./datasink"
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")
"""Parquet codecs the ``compression`` option takes (Athena reads each of them)."""


@dataclasses.dataclass(frozen=True)
class Options:
    """Every option of otel-datasink; each field names the environment variable that sets it."""

    location: str = DEFAULT_LOCATION
    profile: str = "default"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    compression: str = "zstd"
    timeout: float = 30.0
    """Seconds one write may take, retries included."""
    exit_timeout: float = 5.0
    """Seconds the rows still held may take to be written when the process exits without ``shutdown()``."""
    schedule_delay: float = 5.0
    """Seconds the processor's rows wait, at most, before they are written."""
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    storage_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Extra fsspec options for the location's filesystem (Python only)."""

    @classmethod
    def resolve(cls, location: str | os.PathLike | None = None, **options: Any) -> Options:
        """Options from keyword arguments, falling back to the environment, then to the defaults."""
        unknown = set(options) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown otel-datasink option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
        if location is not None:
            values["location"] = os.fspath(location)
        if "compression" in values:
            # Checked now: an unknown codec would otherwise fail every write, far from its cause.
            values["compression"] = _compression(values["compression"])
        values = with_environment(values, _FROM_ENV)
        return cls(**values)


def _compression(raw: str) -> str:
    codec = str(raw).strip().lower()
    if codec not in COMPRESSIONS:
        raise ValueError(f"unknown compression {raw!r} (one of {', '.join(COMPRESSIONS)})")
    return codec


EnvTable = tuple[tuple[str, str, Callable[[str], Any]], ...]
"""(option name, environment variable, conversion of the variable's text) for each option."""


def with_environment(given: dict[str, Any], table: EnvTable) -> dict[str, Any]:
    """``given`` completed from the environment variables of ``table`` for the options it lacks.

    A variable whose text does not convert is ignored with a warning: a typo in the environment must
    not stop a job.
    """
    values = dict(given)
    for name, variable, convert in table:
        raw = os.environ.get(variable, "").strip()
        if name not in values and raw:
            try:
                values[name] = convert(raw)
            except ValueError:
                _logger.warning("ignoring %s=%r: not a valid value", variable, raw)
    return values


def millis_to_seconds(raw: str) -> float:
    """An environment variable in milliseconds (OpenTelemetry's unit) as seconds; a ValueError if negative."""
    return _not_negative(float(raw)) / 1000.0


def count(raw: str) -> int:
    """An environment variable that counts something (spans, rows); a ValueError if negative."""
    return _not_negative(int(raw))


def _not_negative(value: float) -> float:
    # A negative delay would spin the processor's worker, a negative queue bound fail every span: the variable
    # is ignored like any other that does not convert.
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


_FROM_ENV = (
    ("location", env.OTEL_EXPORTER_DATASINK_LOCATION, str),
    ("profile", env.OTEL_EXPORTER_DATASINK_PROFILE, str),
    ("s3_endpoint_url", env.OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL, str),
    ("s3_region", env.OTEL_EXPORTER_DATASINK_S3_REGION, str),
    ("compression", env.OTEL_EXPORTER_DATASINK_COMPRESSION, _compression),
    ("timeout", env.OTEL_EXPORTER_DATASINK_TIMEOUT, millis_to_seconds),
    ("exit_timeout", env.OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT, millis_to_seconds),
    ("schedule_delay", env.OTEL_EXPORTER_DATASINK_SCHEDULE_DELAY, millis_to_seconds),
    ("max_queue_size", env.OTEL_EXPORTER_DATASINK_MAX_QUEUE_SIZE, count),
    ("max_export_batch_size", env.OTEL_EXPORTER_DATASINK_MAX_EXPORT_BATCH_SIZE, count),
)
