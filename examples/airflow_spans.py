"""Airflow's own spans as job runs, with the ``airflow`` mapping profile.

With ``[traces] otel_on = True`` Airflow 3 emits, per DAG run, a ``dag_run.<dag_id>`` span and one
``task_run.<task_id>`` span per task try (plus ``worker.<task_id>`` spans, which repeat the task's identity and
are not runs of their own). This script emits spans of exactly that shape, as Airflow's scheduler and API
server do, for one DAG run of ``ingest_orders`` whose ``extract`` task fails once and succeeds on its retry.

As Airflow 3.3 does, the span of a try that goes up for retry reuses the task instance's span id and carries
the id of the *next* try's task instance: neither tells the tries apart, their try number does.

The ``airflow`` profile turns them into ``job_runs`` rows: job ``ingest_orders`` for the DAG run (run_id:
Airflow's run id) and ``ingest_orders.extract`` / ``ingest_orders.load`` for the tasks (task ids repeat across
DAGs), with run_id ``<dag_id>/<run_id>/<task_id>/<try_number>`` and attempt = try number; status from the task
state (``up_for_retry`` is a failed attempt, ``skipped`` is not a failure), logical date and run type from the
DAG run. Airflow 2.10's spans (unprefixed ``dag_id``, ``state``, ``error_msg``, ...) map too.

Run it as is::

    python examples/airflow_spans.py --location ./datasink

or, as an Airflow deployment would, zero-code with the profile chosen by environment::

    OTEL_TRACES_EXPORTER=datasink OTEL_EXPORTER_DATASINK_PROFILE=airflow OTEL_EXPORTER_DATASINK_LOCATION=./datasink \\
        opentelemetry-instrument python examples/airflow_spans.py

Then::

    otel-datasink query --location ./datasink "SELECT job_name, run_id, attempt, status, error_type FROM job_runs"
"""

from __future__ import annotations

import argparse
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

tracer = trace.get_tracer("airflow.task_run_spans")

DAG_ID = "ingest_orders"
RUN_ID = "scheduled__2026-05-27T00:00:00+00:00"
SECOND = 1_000_000_000


def task_run(
    parent: trace.Span, task_id: str, try_number: int, state: str, task_instance_id: str, start: int, seconds: int
) -> None:
    """A ``task_run.<task_id>`` span as Airflow's API server emits it when a task try ends."""
    span = tracer.start_span(
        f"task_run.{task_id}",
        context=trace.set_span_in_context(parent),
        start_time=start,
        attributes={
            "airflow.dag_id": DAG_ID,
            "airflow.task_id": task_id,
            "airflow.dag_run.run_id": RUN_ID,
            "airflow.task_instance.try_number": try_number,
            "airflow.task_instance.map_index": -1,
            "airflow.task_instance.state": state,
            "airflow.task_instance.id": task_instance_id,
        },
    )
    span.set_status(Status(StatusCode.OK if state == "success" else StatusCode.ERROR))
    span.end(end_time=start + seconds * SECOND)


def dag_run() -> None:
    """One DAG run: extract fails, is retried and succeeds; load follows; the run succeeds."""
    start = time.time_ns() - 600 * SECOND
    dag_span = tracer.start_span(
        f"dag_run.{DAG_ID}",
        start_time=start,
        attributes={
            "airflow.dag_id": DAG_ID,
            "airflow.dag_run.run_id": RUN_ID,
            "airflow.dag_run.run_type": "scheduled",
            "airflow.dag_run.logical_date": "2026-05-27 00:00:00+00:00",
        },
    )
    # The try that goes up for retry already carries its retry's task instance id.
    task_run(dag_span, "extract", 1, "up_for_retry", "0197a1c2-0000-7000-8000-000000000e02", start + 5 * SECOND, 30)
    task_run(dag_span, "extract", 2, "success", "0197a1c2-0000-7000-8000-000000000e02", start + 300 * SECOND, 40)
    task_run(dag_span, "load", 1, "success", "0197a1c2-0000-7000-8000-000000000f01", start + 345 * SECOND, 60)
    dag_span.set_status(Status(StatusCode.OK))
    dag_span.end(end_time=start + 410 * SECOND)


def main(argv: list[str] | None = None) -> None:
    """Emits the DAG run's spans and flushes them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--location", help="where to write when run without opentelemetry-instrument")
    args = parser.parse_args(argv)
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        # Not under opentelemetry-instrument: set up tracing with the airflow profile ourselves.
        from otel_datasink import configure

        configure(args.location, profile="airflow")
        provider = trace.get_tracer_provider()
    dag_run()
    provider.force_flush()


if __name__ == "__main__":
    main()
