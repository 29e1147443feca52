"""The batch job of ``plain_otel_batch_job.py`` written with otel-datasink's helpers.

``configure()`` adds the processor to the global TracerProvider (creating one if the job has none) and
``job_run(...)`` opens the job span with the conventional attributes: it counts records, records dataset
updates and marks the run FAILED if an exception escapes. Spans are still standard OpenTelemetry spans,
so any other exporter the job has keeps working.

Run it, then look at the rows::

    OTEL_SERVICE_NAME=orders-etl OTEL_EXPORTER_DATASINK_LOCATION=./datasink python examples/job_run_batch_job.py
    otel-datasink query --location ./datasink "SELECT * FROM dataset_status"

The SDK flushes the rows when the process exits.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import otel_datasink

otel_datasink.configure()


def extract(day: datetime) -> list[dict]:
    """Stands in for reading a day of orders from the source database."""
    rng = random.Random(day.toordinal())
    return [{"id": i, "amount": rng.randint(1, 500), "at": day + timedelta(minutes=i)} for i in range(1200)]


def main() -> None:
    logical_date = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    with otel_datasink.job_run(
        "ingest_orders", dataset="warehouse.orders", run_type="scheduled", logical_date=logical_date.isoformat()
    ) as run:
        orders = extract(logical_date)
        run.add_records(len(orders))
        valid = [order for order in orders if order["amount"] > 5]
        run.dataset_updated(
            "warehouse.orders",
            records_written=len(valid),
            record_count=250_000 + len(valid),
            watermark=max(order["at"] for order in valid).isoformat(),
            freshness_sla_minutes=26 * 60,
        )


if __name__ == "__main__":
    main()
