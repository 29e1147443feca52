"""Collector settings (receivers, limits, spool, batches): flags first, ``OTEL_EXPORTER_DATASINK_COLLECTOR_*`` second.

Each setting is described once, as a field of :class:`CollectorSettings` (:func:`_setting`): its default, its
:class:`Kind` of value, its environment variable and one help sentence. The command's flags and their help
(:mod:`otel_datasink.commands.collector`), the reading of the variables and the checks are made from that.

Every value is checked here, once, when the settings are made (:data:`SETTINGS`), by the rules of the options
(:mod:`otel_datasink.config`): a bad flag or argument raises ValueError naming its flag, a bad environment variable
is logged once (the variable and its value) and the setting keeps its default. The receivers trust them.
"""

from __future__ import annotations

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
from otel_datasink.sizes import human_size
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


def _show_endpoint(endpoint: tuple[str, int] | None) -> str:
    """An endpoint as ``HOST:PORT`` (``[::1]:4318``), the text :func:`parse_endpoint` reads; ``none`` for None."""
    if endpoint is None:
        return DISABLED
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


def _number(raw: str) -> int | float | str:
    # Text that is no number is left to the check, which refuses it with its own message.
    for parse in (int, float):
        try:
            return parse(raw)
        except ValueError:
            pass
    return raw


def _plain(value: Any) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


@dataclasses.dataclass(frozen=True)
class Kind:
    """What a setting's values are: how they are checked, read from text and written for people."""

    check: Callable[[Any], Any]
    """The value, normalised, or a ValueError saying what is wrong with it (:mod:`otel_datasink.config`'s checks)."""
    from_variable: Callable[[str], Any] = str
    """The environment variable's text as a value for ``check``: durations in milliseconds, OpenTelemetry's unit."""
    from_flag: Callable[[str], Any] | None = None
    """A flag's text as a value for ``check``, read when the command line is parsed: durations in seconds. None:
    the text itself, checked with the other settings when they are resolved."""
    variable_unit: str | None = None
    """The variable's unit when it is not the flag's."""
    show: Callable[[Any], str] = _plain
    """A value as ``--help`` and the docs write it."""
    metavar: str | None = None
    """The flag's argument in ``--help``; None: the flag's name."""


ENDPOINT = Kind(_endpoint, show=_show_endpoint, metavar="HOST:PORT")
TEXT = Kind(text)
FOLDER = Kind(_folder)
# 0 is refused: a limit of 0 refuses everything, 0 rows or bytes would roll every request into files of its own.
COUNT = Kind(count, int, _number)
BYTES = Kind(count, int, _number, show=human_size)
DURATION = Kind(seconds, millis_to_seconds, _number, variable_unit="ms")
# For bounds where 0 means "do not wait" and nothing is lost.
DURATION_OR_ZERO = Kind(seconds_or_zero, millis_to_seconds, _number, variable_unit="ms")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CollectorSetting(Setting):
    """One collector setting as described once (:func:`_setting`): its kind of value (``check`` and ``parse`` are
    the kind's), its variable, its default and its help."""

    kind: Kind
    default: Any
    help: str
    """One sentence, lower case, without the default or the variable (``--help`` adds them)."""
    shown_default: str | None = None
    """What the default is, when None stands for a value made at start (the spool folder of the location)."""
    flag: bool = True
    """Whether ``otel-datasink collector`` has a flag for it."""

    def read_flag(self, raw: str) -> Any:
        """A flag's text as the setting's value, checked; ValueError saying what is wrong (without the flag's
        name, which the command line adds). The text itself when the kind reads flags as text."""
        if self.kind.from_flag is None:
            return raw
        return self.check(self.kind.from_flag(raw))

    def describe_default(self) -> str:
        """The default as ``--help`` and the docs write it (``16.0 MiB``, ``127.0.0.1:4318``, ``none``)."""
        return self.shown_default if self.shown_default is not None else self.kind.show(self.default)


def _setting(
    default: Any, kind: Kind, help: str, variable: str | None = None, *, shown: str | None = None, flag: bool = True
) -> Any:
    """The field of a setting, described once: ``default``, ``kind``, ``help`` and ``variable``."""
    setting = CollectorSetting(
        kind.check,
        variable,
        kind.from_variable,
        kind=kind,
        default=default,
        help=help,
        shown_default=shown,
        flag=flag,
    )
    return dataclasses.field(default=default, metadata={"setting": setting})


@dataclasses.dataclass(frozen=True)
class CollectorSettings:
    """What the collector listens on, what it accepts, and when it rolls batches into files."""

    http: tuple[str, int] | None = _setting(
        ("127.0.0.1", 4318),
        ENDPOINT,
        "OTLP/HTTP endpoint or 'none'; ':PORT' or 0.0.0.0:PORT listens on every interface",
        env.OTEL_EXPORTER_DATASINK_COLLECTOR_HTTP_ENDPOINT,
    )
    grpc: tuple[str, int] | None = _setting(
        ("127.0.0.1", 4317),
        ENDPOINT,
        "OTLP/gRPC endpoint or 'none'; ':PORT' listens on every interface",
        env.OTEL_EXPORTER_DATASINK_COLLECTOR_GRPC_ENDPOINT,
    )
    # Read by resolve (tokens.given_token), with the variable of a file holding it, before the other variables.
    token: str | None = _setting(
        None,
        TEXT,
        "bearer token clients must send; shown by ps: prefer --token-file",
        env.OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN,
    )
    max_body_bytes: int = _setting(
        16 * 1024 * 1024,
        BYTES,
        "request size limit, before and after decompression",
        env.OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_BODY_BYTES,
    )
    max_inflight_bytes: int = _setting(
        256 * 1024 * 1024,
        BYTES,
        "memory requests hold at once, HTTP and gRPC together: bodies and their estimated decoding (~20x a body "
        "of small spans); past it 503/UNAVAILABLE",
        env.OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_INFLIGHT_BYTES,
    )
    """The decoding's memory is :meth:`~otel_datasink.collector.ingest.Ingest.decoded_size`; a request whose
    decoding alone would pass the budget is refused for good (413)."""
    max_connections: int = _setting(
        1000,
        COUNT,
        "open OTLP/HTTP connections; more are refused",
        env.OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_CONNECTIONS,
    )
    header_timeout: float = _setting(
        10.0,
        DURATION,
        "seconds a request's headers may take",
        env.OTEL_EXPORTER_DATASINK_COLLECTOR_HEADER_TIMEOUT,
    )
    body_timeout: float = _setting(
        30.0,
        DURATION,
        "seconds a request's body may take",
        env.OTEL_EXPORTER_DATASINK_COLLECTOR_BODY_TIMEOUT,
    )
    idle_timeout: float = _setting(
        30.0,
        DURATION,
        "seconds a connection may wait for its next request",
        env.OTEL_EXPORTER_DATASINK_COLLECTOR_IDLE_TIMEOUT,
    )
    offload_bytes: int = _setting(
        1024 * 1024,
        BYTES,
        "bodies from this size on are decoded and mapped on a worker thread, so the event loop keeps serving",
        flag=False,
    )
    spool_dir: Path | None = _setting(
        None,
        FOLDER,
        "write-ahead spool folder",
        env.OTEL_EXPORTER_DATASINK_COLLECTOR_SPOOL_DIR,
        shown="~/.cache/otel-datasink/spool/<hash of the location>",  # None: default_spool_dir of the location
    )
    flush_rows: int = _setting(
        50_000, COUNT, "rows per batch of files", env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_ROWS
    )
    flush_bytes: int = _setting(
        64 * 1024 * 1024, BYTES, "spooled bytes per batch", env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_BYTES
    )
    flush_age: float = _setting(
        30.0, DURATION, "seconds a batch may wait", env.OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_AGE
    )
    # 0 is refused: it would answer 503 forever, "backlogged" with no batch waiting.
    max_pending_batches: int = _setting(4, COUNT, "rolled batches waiting for the store before 503")
    # 0 is harmless: what SIGTERM does not flush stays in the spool for the next start.
    shutdown_timeout: float = _setting(10.0, DURATION_OR_ZERO, "seconds SIGTERM may take to flush")

    def __post_init__(self) -> None:
        check_fields(self, SETTINGS, label=flag_name)  # named as the flags, where these values come from
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


SETTINGS: dict[str, CollectorSetting] = {
    field.name: field.metadata["setting"] for field in dataclasses.fields(CollectorSettings)
}
"""Each setting's description, by name (``token_file`` is not one: it is read into ``token``)."""


def flag_name(name: str) -> str:
    """The flag of the setting ``name``, without its dashes: ``max-body-bytes``."""
    return name.replace("_", "-")


def checked_flag(name: str, value: Any) -> Any:
    """``value`` checked for the setting ``name``; a ValueError names its flag (``max-connections: ...``)."""
    return checked(flag_name(name), value, SETTINGS[name])
