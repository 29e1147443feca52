"""A backfill: the daily ``ingest_orders`` job re-run for past days, one run per logical date.

Each run says what it is with two attributes of the conventions: ``job.run.type = "backfill"`` and
``job.run.logical_date`` (the day the run is for). They land in the ``run_type`` and ``logical_date`` columns,
and they keep the operator views honest:

- freshness: a backfill's ``dataset.update`` without a ``dataset.watermark`` counts as data as new as its
  logical date, so re-loading last month does not make ``warehouse.orders`` look fresh in
  ``dataset_status_latest`` (freshness follows the newest data, not the time of the write);
- ``runtime_trend`` has an ``is_backfill`` column, so backfill days do not mix with scheduled ones, and
  ``volume_anomalies`` never uses a backfill in a job's baseline.

The job is plain OpenTelemetry. Run it as is (it then adds otel-datasink's processor itself)::

    python examples/backfill_job.py --start 2026-01-01 --end 2026-01-07 --location ./datasink

or with no otel-datasink code at all, zero-code, through the SDK's exporter path::

    OTEL_TRACES_EXPORTER=datasink OTEL_EXPORTER_DATASINK_LOCATION=./datasink \\
        opentelemetry-instrument python examples/backfill_job.py --start 2026-01-01 --end 2026-01-07

Then: ``otel-datasink query --location ./datasink "SELECT * FROM runtime_trend"``.
"""

from __future__ import annotations

import argparse
import random
from datetime import date, datetime, timedelta, timezone

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

tracer = trace.get_tracer("orders_backfill")


def load_day(day: date) -> int:
    """Stands in for re-loading one day of orders; returns the rows loaded."""
    return random.Random(day.toordinal()).randint(9_000, 11_000)


def backfill(start: date, end: date) -> None:
    """One job run per day from ``start`` to ``end``, each marked as a backfill for its logical date."""
    day = start
    while day <= end:
        logical_date = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        with tracer.start_as_current_span(
            "ingest_orders",
            attributes={
                "job.name": "ingest_orders",
                "dataset.name": "warehouse.orders",
                "job.run.type": "backfill",
                "job.run.logical_date": logical_date.isoformat(),
            },
        ) as span:
            rows = load_day(day)
            span.set_attribute("job.records_processed", rows)
            # No dataset.watermark: the mapping takes the backfill's logical date as the data's time.
            span.add_event("dataset.update", {"dataset.name": "warehouse.orders", "dataset.records_written": rows})
        day += timedelta(days=1)


def main(argv: list[str] | None = None) -> None:
    """Runs the job once per logical date from --start to --end, as a backfill."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=date.fromisoformat, required=True, help="first logical date (YYYY-MM-DD)")
    parser.add_argument("--end", type=date.fromisoformat, required=True, help="last logical date (YYYY-MM-DD)")
    parser.add_argument("--location", help="where to write when run without opentelemetry-instrument")
    args = parser.parse_args(argv)
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        # Not under opentelemetry-instrument: set up tracing with otel-datasink's processor.
        from otel_datasink import configure

        configure(args.location)
        provider = trace.get_tracer_provider()
    backfill(args.start, args.end)
    provider.force_flush()


if __name__ == "__main__":
    main()
