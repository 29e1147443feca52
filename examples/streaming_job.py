"""A streaming job: one job span per micro-batch, so each micro-batch is a run of ``job_runs``.

Each micro-batch span carries ``job.type=streaming`` and records a ``dataset.update`` of the sink with the
newest event time as its watermark, so ``dataset_status_latest`` shows how fresh the stream's output is.
A micro-batch that fails (here: a poison record) is a FAILED run; the stream goes on with the next one.

Run it, then look at the rows::

    OTEL_SERVICE_NAME=clickstream OTEL_EXPORTER_DATASINK_LOCATION=./datasink python examples/streaming_job.py 5
    otel-datasink query --location ./datasink "SELECT status, count(*) FROM job_runs GROUP BY status"

The argument is the number of micro-batches (default 5); the fourth one meets a poison record.
"""

from __future__ import annotations

import logging
import random
import sys
import time

import otel_datasink

otel_datasink.configure()


def poll(rng: random.Random, batch: int) -> list[dict]:
    """Stands in for polling a Kafka topic: a few dozen click events."""
    now_ns = time.time_ns()
    events = [
        {"user": rng.randint(1, 1000), "at_ns": now_ns - rng.randint(0, 10**9)} for _ in range(rng.randint(20, 60))
    ]
    if batch == 3:
        events.append({"user": None, "at_ns": now_ns})
    return events


def process(events: list[dict]) -> None:
    for event in events:
        if event["user"] is None:
            raise ValueError("poison record: click without a user")


def main(batches: int) -> None:
    rng = random.Random(42)
    for batch in range(batches):
        try:
            with otel_datasink.job_run("clickstream_sessions", job_type="streaming") as run:
                events = poll(rng, batch)
                process(events)
                run.add_records(len(events))
                run.dataset_updated(
                    "analytics.sessions",
                    records_written=len(events),
                    watermark=max(event["at_ns"] for event in events),
                    freshness_sla_minutes=5,
                )
        except ValueError:
            logging.exception("micro-batch %d failed; continuing with the next", batch)
        time.sleep(0.02)  # the trigger interval


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
