"""Self-metrics of our components (processor, exporter, collector) through the OpenTelemetry metrics API."""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from otel_datasink.version import version

_logger = logging.getLogger(__name__)

# --- self-metrics ----------------------------------------------------------------------------------------
#
# The processor's and exporter's counts reach whatever metrics pipeline the user configured (a MeterProvider), as
# the SDK's own components' do: named after the semantic conventions' ``otel.sdk.*`` instruments where one exists,
# ``otel_datasink.*`` otherwise, each observation with ``otel.component.type`` and ``otel.component.name``.
#
# Every instrument is observable: its callback reads the counts the components keep anyway, when the reader
# collects, so the job's hot path pays nothing (no metrics pipeline at all: nothing either). A MeterProvider keeps
# the callbacks of the first instrument of a name only (a second one of the same name is the first again), so one
# instrument per name and provider reports every live component of its kind; components are held weakly.

_METER_NAME = "otel_datasink"
QUEUE_FULL = "queue_full"
"""``error.type`` of spans and rows dropped because their bound was reached (the conventions' value)."""
FUTURE_DATED_ROWS = (
    "Rows mapped with a time further ahead of this component's clock than the tolerance (a day), per table: a sender's "
    "broken clock or a bad value. Written as received; never a latest state in the views (view future_dated_rows)."
)
"""The description of every component's count of future-dated rows
(:func:`~otel_datasink.schema.count_future_dated`)."""
_ERROR_TYPE = "error.type"
_COMPONENT_TYPE = "otel.component.type"
_COMPONENT_NAME = "otel.component.name"

Reading = Iterable[tuple[float, Mapping[str, str]]]
"""What an instrument reads from one component: (value, attributes beside the component's own) pairs."""


@dataclasses.dataclass(frozen=True)
class Instrument:
    """An observable instrument, and how it reads its value(s) from one component."""

    name: str
    kind: Literal["counter", "up_down_counter", "gauge"]
    unit: str
    description: str
    read: Callable[[Any], Reading]


@dataclasses.dataclass
class _Instruments:
    """The instruments of one kind of component on one MeterProvider, and the live components they report."""

    components: weakref.WeakKeyDictionary[Any, dict[str, str]] = dataclasses.field(
        default_factory=weakref.WeakKeyDictionary
    )
    """component -> its ``otel.component.*`` attributes."""

    def create(self, meter: metrics.Meter, instruments: Iterable[Instrument]) -> None:
        """Creates each instrument on ``meter``, its callback reporting every component."""
        create = {
            "counter": meter.create_observable_counter,
            "up_down_counter": meter.create_observable_up_down_counter,
            "gauge": meter.create_observable_gauge,
        }
        for instrument in instruments:
            callback = functools.partial(self._observe, instrument.read)
            create[instrument.kind](
                instrument.name, callbacks=[callback], unit=instrument.unit, description=instrument.description
            )

    def _observe(self, read: Callable[[Any], Reading], options: CallbackOptions) -> list[Observation]:
        observations = []
        for component, attributes in list(self.components.items()):
            for value, more in read(component):
                observations.append(Observation(value, {**attributes, **more}))
        return observations


class _GlobalProvider:
    """The key of the global MeterProvider's instruments: created through the API's ``get_meter``, they are bound to
    the provider the application sets later, if it has not yet (the same instruments then, whenever a component
    is created)."""


_GLOBAL = _GlobalProvider()
_PROVIDERS: weakref.WeakKeyDictionary[Any, dict[tuple[Instrument, ...], _Instruments]] = weakref.WeakKeyDictionary()
"""MeterProvider (or ``_GLOBAL``) -> its instruments, per kind of component (one tuple of instruments per kind)."""
_STARTED: collections.Counter[str] = collections.Counter()
"""otel.component.type -> instances started in this process: the number in each one's ``otel.component.name``."""
_OBSERVE_LOCK = threading.Lock()


def type_name(component: object) -> str:
    """``otel.component.type`` of a component of ours: its class's qualified name (the conventions' rule for a type
    none of their values names)."""
    cls = type(component)
    return f"{cls.__module__}.{cls.__qualname__}"


def observe(
    component: object,
    instruments: tuple[Instrument, ...],
    meter_provider: MeterProvider | None,
    *,
    component_type: str | None = None,
    meter_name: str = _METER_NAME,
    attributes: Mapping[str, str] | None = None,
) -> None:
    """Reports ``component`` through ``instruments`` of ``meter_provider`` (the global one when None) from now on.

    ``component_type``: its ``otel.component.type``, when not its own class's (see :func:`type_name`).
    ``meter_name``: the instrumentation scope of the instruments (``otel_datasink``, but for those of something
    else than our components' work). ``attributes``: those of each of its observations beside the instrument's
    own: by default its ``otel.component.type`` and ``otel.component.name`` (which instance counted), ``{}`` for
    instruments of what a component reads rather than of the component (alerting's health gauges). Never raises:
    a metrics pipeline that fails must not keep a job from writing its rows.
    """
    try:
        with _OBSERVE_LOCK:
            per_kind = _PROVIDERS.setdefault(_GLOBAL if meter_provider is None else meter_provider, {})
            if instruments not in per_kind:
                per_kind[instruments] = _Instruments()
                if meter_provider is None:
                    meter = metrics.get_meter(meter_name, version())
                else:
                    meter = meter_provider.get_meter(meter_name, version())
                per_kind[instruments].create(meter, instruments)
            if attributes is None:
                attributes = _identity(component_type or type_name(component))
        per_kind[instruments].components[component] = dict(attributes)
    except Exception:  # noqa: BLE001 - see above
        _logger.warning("cannot report metrics of %r", component, exc_info=True)


def _identity(kind: str) -> dict[str, str]:
    """The ``otel.component.*`` attributes of the next component of type ``kind`` started in this process."""
    number = _STARTED[kind]
    _STARTED[kind] += 1
    return {_COMPONENT_TYPE: kind, _COMPONENT_NAME: f"{kind}/{number}"}


def error_type(error: BaseException) -> str:
    """``error.type`` of an exception: its type's qualified name, as the conventions ask."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def per_table(counts: Mapping[str, int]) -> Reading:
    """One observation per table (attribute ``table``) of a table -> count mapping."""
    return [(count, {"table": table}) for table, count in counts.items()]


def truncation_instruments(component: str, read: Callable[[Any], Any]) -> tuple[Instrument, ...]:
    """The counters of what the span limits took from a component's rows (``read(component)``, a
    :class:`~otel_datasink.mapping.Truncation`): ``otel_datasink.<component>.dropped_attributes``, ``.dropped_events``
    and ``.truncated_values``, named as the collector's."""
    return (
        Instrument(
            f"otel_datasink.{component}.dropped_attributes",
            "counter",
            "{attribute}",
            "Attributes of spans and their events dropped past max_attributes (the rows say how many).",
            lambda owner: [(read(owner).dropped_attributes, {})],
        ),
        Instrument(
            f"otel_datasink.{component}.dropped_events",
            "counter",
            "{event}",
            "Events of spans dropped past max_events (the rows say how many).",
            lambda owner: [(read(owner).dropped_events, {})],
        ),
        Instrument(
            f"otel_datasink.{component}.truncated_values",
            "counter",
            "{value}",
            "Values of the rows' attributes cut to max_attribute_length characters (the rows say how many).",
            lambda owner: [(read(owner).truncated_values, {})],
        ),
    )


def error_counts(counts: Mapping[str, int]) -> Reading:
    """One observation per ``error.type`` that has happened (a type that never happened is no series)."""
    return [(count, {_ERROR_TYPE: error}) for error, count in counts.items() if count]
