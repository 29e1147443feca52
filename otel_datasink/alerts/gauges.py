"""Health as metrics: gauges of the last evaluation, through the OpenTelemetry metrics API.

``alert --watch`` records, at each evaluation, what the views say, and the gauges report it when the SDK
collects (observable gauges: nothing is recorded between collections):

- ``datasink.dataset.freshness`` (min), per ``dataset``: minutes since the dataset's newest data;
- ``datasink.dataset.stale`` (1 or 0), per ``dataset``;
- ``datasink.job.failure_streak``, per ``job``: consecutive failures of its latest runs;
- ``datasink.runs.hung``: runs of ``hung_runs`` now;
- ``datasink.alerts.open``, per ``kind``: the conditions that hold (incidents open), every kind reported.

They go to the global MeterProvider: the one ``opentelemetry-instrument`` set up, else the one
:func:`configure_from_environment` builds when ``OTEL_METRICS_EXPORTER`` names an exporter.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from opentelemetry import metrics

from otel_datasink.alerts.model import KINDS, Condition
from otel_datasink.selfmetrics import Instrument, Reading, observe

if TYPE_CHECKING:
    import duckdb
    from opentelemetry.sdk.metrics import MeterProvider

_logger = logging.getLogger(__name__)
METER_NAME = "otel_datasink.alerts"
"""The gauges' instrumentation scope: theirs, not our components' (``otel_datasink``): they measure the data."""


@dataclasses.dataclass(frozen=True)
class Health:
    """What one evaluation saw: the values the gauges report until the next one."""

    freshness: dict[str, float] = dataclasses.field(default_factory=dict)
    stale: dict[str, bool] = dataclasses.field(default_factory=dict)
    failure_streak: dict[str, int] = dataclasses.field(default_factory=dict)
    hung_runs: int = 0
    open_by_kind: dict[str, int] = dataclasses.field(default_factory=dict)


def read_health(con: duckdb.DuckDBPyConnection, conditions: Sequence[Condition]) -> Health:
    """The gauges' values from the views of ``con`` (time pinned as the evaluation's) and its conditions."""
    datasets = con.execute("SELECT dataset, freshness_minutes, is_stale FROM dataset_status_latest").fetchall()
    streaks = con.execute("SELECT job_name, current_streak FROM recurring_failures").fetchall()
    (hung,) = con.execute("SELECT count(*) FROM hung_runs").fetchone() or (0,)
    open_by_kind = dict.fromkeys(KINDS, 0)
    for condition in conditions:
        open_by_kind[condition.kind] += 1
    return Health(
        freshness={name: float(minutes) for name, minutes, _ in datasets if minutes is not None},
        stale={name: bool(stale) for name, _, stale in datasets},
        failure_streak={job: int(streak) for job, streak in streaks},
        hung_runs=int(hung),
        open_by_kind=open_by_kind,
    )


def _per(attribute: str, values: Mapping[str, float]) -> Reading:
    """One observation per name of ``values``, the name as ``attribute``."""
    return [(value, {attribute: name}) for name, value in values.items()]


INSTRUMENTS = (
    Instrument(
        "datasink.dataset.freshness",
        "gauge",
        "min",
        "minutes since the dataset's newest data",
        lambda gauges: _per("dataset", gauges.health.freshness),
    ),
    Instrument(
        "datasink.dataset.stale",
        "gauge",
        "1",
        "1 when the dataset is stale",
        lambda gauges: _per("dataset", {name: int(stale) for name, stale in gauges.health.stale.items()}),
    ),
    Instrument(
        "datasink.job.failure_streak",
        "gauge",
        "{run}",
        "consecutive failed runs of the job",
        lambda gauges: _per("job", gauges.health.failure_streak),
    ),
    Instrument(
        "datasink.runs.hung",
        "gauge",
        "{run}",
        "runs started long past their usual time",
        lambda gauges: [(gauges.health.hung_runs, {})],
    ),
    Instrument(
        "datasink.alerts.open",
        "gauge",
        "{incident}",
        "incidents open, per kind",
        lambda gauges: _per("kind", gauges.health.open_by_kind),
    ),
)
"""The gauges, each reading the :class:`Health` of the last evaluation from :class:`HealthGauges`."""


class HealthGauges:
    """The observable gauges (:data:`INSTRUMENTS`, through :func:`otel_datasink.selfmetrics.observe`), fed by
    :meth:`update` after each evaluation."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        self.health = Health()
        # The gauges say how the data is, not which evaluator saw it: no otel.component.* attributes.
        observe(self, INSTRUMENTS, meter_provider, meter_name=METER_NAME, attributes={})

    def update(self, health: Health) -> None:
        """What the gauges report from now on. (One assignment: the SDK's collecting thread reads either the old
        Health or the new one, never a mix.)"""
        self.health = health


def configure_from_environment() -> MeterProvider | None:
    """A global SDK MeterProvider with the exporters ``OTEL_METRICS_EXPORTER`` names, as ``opentelemetry-
    instrument`` would set it up; None when none is named (``none`` or unset) or a provider is already set (the
    program runs under ``opentelemetry-instrument``). The caller shuts it down at exit (the last export)."""
    names = os.environ.get("OTEL_METRICS_EXPORTER", "").strip()
    if not names or names.lower() == "none":
        return None
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    if not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider):
        return None  # opentelemetry-instrument (or the user's code) already configured one: use it
    from opentelemetry.sdk import _configuration  # the SDK's own reading of the variables, as instrument's
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    _, exporters, _ = _configuration._import_exporters([], _configuration._get_exporter_names("metrics"), [])
    readers: list[MetricReader] = [
        cls() if issubclass(cls, MetricReader) else PeriodicExportingMetricReader(cls()) for cls in exporters.values()
    ]
    provider = MeterProvider(resource=Resource.create(), metric_readers=readers)
    metrics.set_meter_provider(provider)
    _logger.info("metrics exported by %s", names)
    return provider
