"""Options shared by every front door, read from arguments first and ``OTEL_EXPORTER_DATASINK_*`` second.

Every option is checked once, where it is read, in the manner of the SDK's ``BatchSpanProcessor``: a bad keyword
argument raises ValueError naming the option when the processor, exporter or collector is made; a bad environment
variable is logged once (a warning naming the variable and its value) and the option keeps its default, because a
typo in the environment must not stop a job. What each option accepts is in :data:`SETTINGS`; the collector's
settings (:mod:`otel_datasink.collector.settings`) are checked by the same functions.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from otel_datasink import environment_variables as env

_logger = logging.getLogger(__name__)

DEFAULT_LOCATION = "./datasink"
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")
"""Parquet codecs the ``compression`` option takes (Athena reads each of them)."""

MAX_STRING = 32 * 1024
"""Longest string kept in any column or attribute value; longer ones are cut (Athena rows stay small)."""

LONGEST_WAIT = threading.TIMEOUT_MAX
"""Longest duration an option takes, in seconds (about 292 years): a longer wait makes ``Event.wait`` raise
OverflowError, in the processor's worker where nothing would report it."""


# --- checks: each takes a value (from an argument, or an environment variable once parsed) and returns it,
# normalised, or raises ValueError saying what is wrong (the caller adds the option's or the variable's name).


def count(value: Any) -> int:
    """A number of spans, rows, bytes, connections...: a whole number of at least 1.

    0 is refused rather than given a meaning: a queue of 0 drops every span, a batch of 0 spins the processor's
    worker, a limit of 0 refuses every request.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"must be a whole number, not {value!r}")
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return int(value)


def seconds(value: Any) -> float:
    """A delay or timeout in seconds: more than 0, and at most :data:`LONGEST_WAIT`.

    0 is refused rather than clamped: a schedule delay of 0 would wake the processor's worker in a busy loop (the
    SDK's BatchSpanProcessor refuses it too), a write timeout of 0 fail every write.
    """
    return _duration(value, zero=False)


def seconds_or_zero(value: Any) -> float:
    """Like :func:`seconds`, but 0 is accepted: for bounds where 0 means "do not wait" and nothing is lost silently
    (``exit_timeout``: the rows still held are counted in the log; the collector's ``shutdown_timeout``: they stay in
    its spool)."""
    return _duration(value, zero=True)


def _duration(value: Any, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"must be a number of seconds, not {value!r}")
    duration = float(value)
    # NaN fails every comparison: written so that it fails this test too.
    if not (duration >= 0 if zero else duration > 0):
        raise ValueError(f"must be {'0 or more' if zero else 'more than 0'} seconds, not {value!r}")
    if duration > LONGEST_WAIT:
        raise ValueError(f"must be at most {LONGEST_WAIT:.0f} seconds, not {value!r}")
    return duration


def text(value: Any) -> str:
    """A non-empty string (or path): an empty location would write into the current directory's root."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, not {value!r}")
    return value


def _attribute_length(value: Any) -> int:
    # Above MAX_STRING no value is kept longer (every string is cut there): a larger limit would promise more.
    length = count(value)
    if length > MAX_STRING:
        raise ValueError(f"must be at most {MAX_STRING}, not {length}")
    return length


def _profile(value: Any) -> str:
    # Only the type here: the name or mapping file is checked when the profile is loaded (Pipeline.open), which
    # raises ProfileError even for the environment variable: mapping with another profile would write wrong rows.
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ValueError(f"must be a profile name or a mapping file's path, not {value!r}")
    return value


def _url(value: Any) -> str:
    # botocore refuses an endpoint without its scheme only when the first write opens the client: far from its cause.
    url = text(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
    return url


def _compression(value: Any) -> str:
    # Checked now: an unknown codec would otherwise fail every write, far from its cause.
    codec = str(value).strip().lower()
    if codec not in COMPRESSIONS:
        raise ValueError(f"unknown compression {value!r} (one of {', '.join(COMPRESSIONS)})")
    return codec


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def flag(value: Any) -> bool:
    """A yes/no option: a bool, or (from an environment variable) ``true``/``false``, ``1``/``0``, ``yes``/``no``,
    ``on``/``off`` in any case. Anything else is refused rather than read as false: a typo must not pass silently."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"must be true or false, not {value!r}")


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping of fsspec options, not {value!r}")
    return dict(value)


def millis_to_seconds(raw: str) -> float:
    """An environment variable in milliseconds (OpenTelemetry's unit) as seconds (not checked: see :func:`seconds`)."""
    return float(raw) / 1000.0


# --- the table of settings, and how it is read --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one option is checked, and the environment variable that sets it when no argument does."""

    check: Callable[[Any], Any]
    """The value, normalised, or a ValueError saying what is wrong with it."""
    variable: str | None = None
    parse: Callable[[str], Any] = str
    """The variable's text as a value for ``check`` (a ValueError if it is not one)."""


SettingTable = Mapping[str, Setting]


def checked(name: str, value: Any, setting: Setting) -> Any:
    """``value`` checked for the option ``name``: a ValueError naming the option if it is not valid."""
    try:
        return setting.check(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name}: {error}") from None


def check_fields(instance: Any, table: SettingTable, label: Callable[[str], str] | None = None) -> None:
    """Checks (and normalises, frozen or not) every field of the dataclass ``instance`` that ``table`` names; a
    ValueError names the field, or ``label(field)`` (the collector names its flags).

    None is left alone in a field whose default is None: that option is simply not set.
    """
    for field in dataclasses.fields(instance):
        setting = table.get(field.name)
        value = getattr(instance, field.name)
        if setting is None or (value is None and field.default is None):
            continue
        normalised = checked(label(field.name) if label else field.name, value, setting)
        if normalised is not value:
            object.__setattr__(instance, field.name, normalised)


_warned: set[tuple[str, str]] = set()
"""(variable, text) pairs already warned about: a value is reported once per process, not per processor."""


def warn_ignored(variable: str, raw: str, reason: str) -> None:
    """Logs, once per variable and value, that ``variable=raw`` is ignored and the option's default used."""
    if (variable, raw) in _warned:
        return
    _warned.add((variable, raw))
    _logger.warning("ignoring %s=%r (%s): using the default", variable, raw, reason)


def with_environment(given: dict[str, Any], table: SettingTable) -> tuple[dict[str, Any], dict[str, str]]:
    """``given`` completed from the environment variables of ``table`` for the options it lacks, and for each
    option so set, the variable it came from.

    A variable whose text does not parse or whose value does not pass its option's check is ignored with a
    warning (:func:`warn_ignored`): a typo in the environment must not stop a job.
    """
    values, sources = dict(given), {}
    for name, setting in table.items():
        variable = setting.variable
        raw = os.environ.get(variable, "").strip() if variable else ""
        if variable is None or name in values or not raw:
            continue
        try:
            values[name] = setting.check(setting.parse(raw))
        except ValueError as error:
            warn_ignored(variable, raw, str(error) or "not a valid value")
            continue
        sources[name] = variable
    return values, sources


def ignore_from_environment(values: dict[str, Any], sources: dict[str, str], name: str, reason: str) -> bool:
    """Ignores ``values[name]`` if it came from the environment (:func:`warn_ignored`; the option's default is then
    used); whether it did. For values valid alone but not together: arguments out of order stay for the options'
    own check to refuse."""
    variable = sources.pop(name, None)
    if variable is None:
        return False
    warn_ignored(variable, os.environ.get(variable, "").strip(), reason)
    del values[name]
    return True


def defaults_of(cls: Any) -> dict[str, Any]:
    """The default of each field of the dataclass ``cls`` that has a plain one."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


# --- the options ------------------------------------------------------------------------------------------------

SETTINGS: SettingTable = {
    "location": Setting(text, env.OTEL_EXPORTER_DATASINK_LOCATION),
    "profile": Setting(_profile, env.OTEL_EXPORTER_DATASINK_PROFILE),
    "s3_endpoint_url": Setting(_url, env.OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL),
    "s3_region": Setting(text, env.OTEL_EXPORTER_DATASINK_S3_REGION),
    "compression": Setting(_compression, env.OTEL_EXPORTER_DATASINK_COMPRESSION),
    "timeout": Setting(seconds, env.OTEL_EXPORTER_DATASINK_TIMEOUT, millis_to_seconds),
    "exit_timeout": Setting(seconds_or_zero, env.OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT, millis_to_seconds),
    "schedule_delay": Setting(seconds, env.OTEL_EXPORTER_DATASINK_SCHEDULE_DELAY, millis_to_seconds),
    "max_queue_size": Setting(count, env.OTEL_EXPORTER_DATASINK_MAX_QUEUE_SIZE, int),
    "max_export_batch_size": Setting(count, env.OTEL_EXPORTER_DATASINK_MAX_EXPORT_BATCH_SIZE, int),
    "storage_options": Setting(_mapping),
    "openlineage_namespace_prefix": Setting(flag, env.OTEL_EXPORTER_DATASINK_OPENLINEAGE_NAMESPACE_PREFIX),
    "max_attributes": Setting(count, env.OTEL_EXPORTER_DATASINK_MAX_ATTRIBUTES, int),
    "max_events": Setting(count, env.OTEL_EXPORTER_DATASINK_MAX_EVENTS, int),
    "max_attribute_length": Setting(_attribute_length, env.OTEL_EXPORTER_DATASINK_MAX_ATTRIBUTE_LENGTH, int),
}
"""What each option of :class:`Options` accepts, and its environment variable."""


@dataclasses.dataclass(frozen=True)
class SpanLimits:
    """What a span keeps when it is mapped, as the SDK's span limits bound what a span holds: the options
    ``max_attributes``, ``max_events`` and ``max_attribute_length`` of :class:`Options`.

    Every front door maps with them (:func:`otel_datasink.mapping.map_records`), and the collector's OTLP decoding
    applies them as it reads, so that a span of a million attributes never becomes a million objects.
    """

    attributes: int = 128
    """Attributes kept of a span (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``'s default): the first ones, and any later one
    the mapping or the profile reads (``job.name``, ``dataset.name``, ...)."""
    events: int = 128
    """Events kept of a span, the first ones (``OTEL_SPAN_EVENT_COUNT_LIMIT``'s default)."""
    attribute_length: int = MAX_STRING
    """Characters kept of a value in the ``attributes`` column; long enough for a traceback kept as an attribute."""


@dataclasses.dataclass(frozen=True)
class Options:
    """Every option of otel-datasink; each field names the environment variable that sets it.

    Checked when made (:data:`SETTINGS`; ValueError naming the option); :meth:`resolve` is how the front doors
    make them.
    """

    location: str = DEFAULT_LOCATION
    profile: str = "default"
    s3_endpoint_url: str | None = None
    """``http://`` or ``https://`` URL of an S3-compatible store."""
    s3_region: str | None = None
    compression: str = "zstd"
    timeout: float = 30.0
    """Seconds one write may take, retries included; more than 0."""
    exit_timeout: float = 5.0
    """Seconds the rows still held may take to be written when the process exits without ``shutdown()``; 0 gives
    them up at once (counted in the log)."""
    schedule_delay: float = 5.0
    """Seconds the processor's rows wait, at most, before they are written; more than 0."""
    max_queue_size: int = 2048
    """At least 1."""
    max_export_batch_size: int = 512
    """At least 1 and at most ``max_queue_size``; when not given, the smaller of 512 and ``max_queue_size``."""
    storage_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Extra fsspec options for the location's filesystem (Python only)."""
    openlineage_namespace_prefix: bool = False
    """Whether an OpenLineage job's ``job_name`` is ``<job namespace>/<job name>`` rather than its name alone
    (:mod:`otel_datasink.openlineage`; the namespace is in the ``attributes`` column either way)."""
    max_attributes: int = SpanLimits.attributes
    """At least 1: see :attr:`SpanLimits.attributes`."""
    max_events: int = SpanLimits.events
    """At least 1: see :attr:`SpanLimits.events`."""
    max_attribute_length: int = SpanLimits.attribute_length
    """At least 1 and at most :data:`MAX_STRING`: see :attr:`SpanLimits.attribute_length`."""

    def __post_init__(self) -> None:
        check_fields(self, SETTINGS)
        if self.max_export_batch_size > self.max_queue_size:
            # As the SDK's BatchSpanProcessor: a batch the queue cannot hold would never wake the worker early,
            # and spans would be dropped while it sleeps.
            raise ValueError(
                f"max_export_batch_size ({self.max_export_batch_size}) must not exceed "
                f"max_queue_size ({self.max_queue_size})"
            )

    @property
    def span_limits(self) -> SpanLimits:
        """The span limits these options set."""
        return SpanLimits(self.max_attributes, self.max_events, self.max_attribute_length)

    @classmethod
    def resolve(cls, location: str | os.PathLike | None = None, **options: Any) -> Options:
        """Options from keyword arguments, falling back to the environment, then to the defaults.

        A keyword argument that is not valid raises ValueError naming the option; an environment variable that is
        not is logged once and ignored (:func:`with_environment`), as is one that puts ``max_export_batch_size``
        above ``max_queue_size``.
        """
        unknown = set(options) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown otel-datasink option(s): {', '.join(sorted(unknown))}")
        if location is not None:
            options["location"] = location
        # Checked before the environment is read, so that the order of the two counts below compares numbers.
        given = {name: checked(name, value, SETTINGS[name]) for name, value in options.items() if value is not None}
        values, sources = with_environment(given, SETTINGS)
        defaults = defaults_of(cls)
        queue = values.get("max_queue_size", defaults["max_queue_size"])
        if values.get("max_export_batch_size", 0) > queue:
            reason = f"max_export_batch_size ({values['max_export_batch_size']}) above max_queue_size ({queue})"
            # The batch first: the queue size is the bound that decides how much memory and what is dropped.
            if not ignore_from_environment(values, sources, "max_export_batch_size", reason):
                ignore_from_environment(values, sources, "max_queue_size", reason)
        if "max_export_batch_size" not in values:
            # The default batch follows a smaller queue rather than make it an error (the SDK refuses it).
            queue = values.get("max_queue_size", defaults["max_queue_size"])
            values["max_export_batch_size"] = min(defaults["max_export_batch_size"], queue)
        return cls(**values)
