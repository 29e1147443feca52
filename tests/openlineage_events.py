"""OpenLineage run events as producers send them: made by openlineage-python's own classes (with the facets
Airflow's provider, dbt-ol and Spark set), as objects or as the JSON their transports send; and the real events
of ``tests/fixtures/openlineage``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    data_quality_assertions_dataset,
    error_message_run,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    test_run,
)
from openlineage.client.serde import Serde

FIXTURES = Path(__file__).parent / "fixtures" / "openlineage"
PRODUCER = "https://github.com/example/etl/tree/1.0.0"
WAREHOUSE = "postgres://warehouse:5432"
DUCKDB = "duckdb:///work/jaffle/jaffle.duckdb"
"""dbt-ol's namespace of a dbt-duckdb project's datasets (``duckdb://<path>``)."""


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def now() -> dt.datetime:
    """An hour ago, in whole seconds (UTC): when the events happen unless a test says otherwise."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)


def event(*args, **kwargs) -> dict:
    """:func:`run_event` as its transports send it (JSON), to edit or write to files."""
    return json.loads(Serde.to_json(run_event(*args, **kwargs)))


def run_event(
    kind: RunState,
    when: dt.datetime,
    run_id: str,
    *,
    job: str = "load_orders",
    rows: int | None = None,
    error: str | None = None,
    parent: str | None = None,
    outputs: bool = True,
) -> RunEvent:
    """A RunEvent made by openlineage-python's classes."""
    facets: dict = {
        "nominalTime": nominal_time_run.NominalTimeRunFacet(nominalStartTime="2026-11-27T00:00:00Z"),
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(version="1.2.3", name="etl-runner"),
    }
    if error:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error,
            programmingLanguage="python",
            stackTrace=f'Traceback (most recent call last):\n  File "job.py", line 3\nValueError: {error}\n',
        )
    if parent:
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent), job=parent_run.Job(namespace="etl", name="nightly")
        )
    statistics = {}
    if rows is not None:
        statistics["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=rows
        )
    return RunEvent(
        eventType=kind,
        eventTime=iso(when),
        run=Run(runId=run_id, facets=facets),
        job=Job(
            namespace="etl",
            name=job,
            facets={"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="CUSTOM")},
        ),
        inputs=[InputDataset(namespace=WAREHOUSE, name="shop.staging.orders_raw")],
        outputs=[OutputDataset(namespace=WAREHOUSE, name="shop.public.orders", outputFacets=statistics)]
        if outputs
        else [],
        producer=PRODUCER,
    )


def checked_event(
    when: dt.datetime,
    run_id: str,
    assertions: list[data_quality_assertions_dataset.Assertion],
    *,
    model: str,
    kind: RunState = RunState.COMPLETE,
) -> RunEvent:
    """An event of dbt-ol's ``dbt test`` job of a model (``<database>.<schema>.<project>.<model>.test``, job type
    TEST): the model as its one input, whose ``dataQualityAssertions`` facet holds the tests' results, as dbt-ol
    1.54 sends it (in both ``facets`` and ``inputFacets``; START and COMPLETE alike), no output."""
    facet = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions=assertions)
    facets = {"dataQualityAssertions": facet}
    return RunEvent(
        eventType=kind,
        eventTime=iso(when),
        run=Run(runId=run_id),
        job=Job(
            namespace="dbt",
            name=f"jaffle.main.jaffle_shop.{model}.test",
            facets={"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DBT", jobType="TEST")},
        ),
        inputs=[InputDataset(namespace=DUCKDB, name=f"jaffle.main.{model}", inputFacets=facets, facets=facets)],
        outputs=[],
        producer="https://github.com/OpenLineage/OpenLineage/tree/1.54.0/integration/dbt",
    )


def singular_test_event(when: dt.datetime, run_id: str, test: test_run.TestExecution, *, models: list[str]) -> RunEvent:
    """The COMPLETE event of dbt-ol's run of one singular dbt test (a SQL file; job named by its unique id, type
    TEST): its result in the ``test`` run facet, the models it reads as inputs, as dbt-ol 1.54 sends it."""
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=iso(when),
        run=Run(runId=run_id, facets={"test": test_run.TestRunFacet(tests=[test])}),
        job=Job(
            namespace="dbt",
            name=test.name,
            facets={"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DBT", jobType="TEST")},
        ),
        inputs=[InputDataset(namespace=DUCKDB, name=f"jaffle.main.{model}") for model in models],
        outputs=[],
        producer="https://github.com/OpenLineage/OpenLineage/tree/1.54.0/integration/dbt",
    )
