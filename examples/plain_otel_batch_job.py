"""A batch job instrumented with plain OpenTelemetry, and the one line that turns its spans into tables.

The job already has an SDK ``TracerProvider`` (here with its service name); adding ``DatasinkSpanProcessor``
to it is the only otel-datasink code. The job itself only uses ``tracer.start_as_current_span``, the
``job.*``/``dataset.*`` attributes and a ``dataset.update`` event of the conventions (README.md, "Span
conventions").

Run it, then look at the rows::

    OTEL_EXPORTER_DATASINK_LOCATION=./datasink python examples/plain_otel_batch_job.py
    otel-datasink query --location ./datasink "SELECT * FROM job_runs"

The location comes from ``OTEL_EXPORTER_DATASINK_LOCATION`` (default ``./datasink``; ``s3://bucket/prefix``
works too). The run gives a STARTED row when its span starts and a SUCCESS row when it ends (rows are written
in the background within the schedule delay, or at shutdown), plus one ``dataset_status`` row for
``warehouse.orders``.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_datasink import DatasinkSpanProcessor

# The set-up the job already had ...
provider = TracerProvider(resource=Resource.create({"service.name": "orders-etl"}))
# ... and the one line otel-datasink adds.
provider.add_span_processor(DatasinkSpanProcessor())
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("orders_etl")


def extract(day: datetime) -> list[dict]:
    """Stands in for reading a day of orders from the source database."""
    rng = random.Random(day.toordinal())
    return [{"id": i, "amount": rng.randint(1, 500), "at": day + timedelta(minutes=i)} for i in range(1200)]


def main() -> None:
    logical_date = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    with tracer.start_as_current_span(
        "ingest_orders",
        attributes={
            "job.name": "ingest_orders",
            "dataset.name": "warehouse.orders",
            "job.run.type": "scheduled",
            "job.run.logical_date": logical_date.isoformat(),
        },
    ) as span:
        orders = extract(logical_date)
        valid = [order for order in orders if order["amount"] > 5]
        time.sleep(0.01)  # stands in for the load into the warehouse
        span.set_attribute("job.records_processed", len(orders))
        span.add_event(
            "dataset.update",
            {
                "dataset.name": "warehouse.orders",
                "dataset.records_written": len(valid),
                "dataset.record_count": 250_000 + len(valid),
                "dataset.watermark": max(order["at"] for order in valid).isoformat(),
                "dataset.freshness_sla_minutes": 26 * 60,
            },
        )
    # Ending tracing writes what is still queued (the SDK also does this at exit).
    provider.shutdown()


if __name__ == "__main__":
    main()
