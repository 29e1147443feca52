"""The ``cicd`` profile: the OpenTelemetry ``cicd.pipeline.*`` semantic conventions (pipeline and task runs)."""

from __future__ import annotations

from typing import Any

from otel_datasink import semconv
from otel_datasink.mapping import STATUS_CODE_ERROR, STATUS_CODE_OK, SpanRecord, is_job_span
from otel_datasink.profiles.base import given, rewritten, takes_only_spans_with

CICD_PIPELINE_NAME = "cicd.pipeline.name"
CICD_PIPELINE_RUN_ID = "cicd.pipeline.run.id"
CICD_PIPELINE_RESULT = "cicd.pipeline.result"
CICD_PIPELINE_TASK_NAME = "cicd.pipeline.task.name"
CICD_PIPELINE_TASK_RUN_ID = "cicd.pipeline.task.run.id"
CICD_PIPELINE_TASK_RUN_RESULT = "cicd.pipeline.task.run.result"

# cicd.pipeline.result / cicd.pipeline.task.run.result values; success and skip are not failures.
_CICD_FAILED_RESULTS = frozenset(("failure", "error", "timeout", "cancellation"))
_CICD_OK_RESULTS = frozenset(("success", "skip"))


def _cicd_status(result: Any) -> int | None:
    text = str(result).lower() if given(result) is not None else None
    if text in _CICD_FAILED_RESULTS:
        return STATUS_CODE_ERROR
    if text in _CICD_OK_RESULTS:
        return STATUS_CODE_OK
    return None


# A run is a span with one of these; the resource is read only for a span that is already a run.
@takes_only_spans_with(CICD_PIPELINE_TASK_NAME, CICD_PIPELINE_RESULT, CICD_PIPELINE_NAME)
def cicd_profile(record: SpanRecord) -> SpanRecord | None:
    """Pipeline-run and task-run spans of the OpenTelemetry CI/CD semantic conventions as job runs.

    A task run is a span with ``cicd.pipeline.task.name``: job name ``<pipeline>.<task>`` (the pipeline
    name from the span or its resource), run id ``<pipeline run id>.<task run id>`` when both are known
    (a task run id need only be unique within its pipeline run). A pipeline run is a span with
    ``cicd.pipeline.result`` or, on the span itself, ``cicd.pipeline.name``: job name the pipeline name, run id
    ``cicd.pipeline.run.id``. The result (``success``, ``failure``, ``error``, ``timeout``, ``cancellation``,
    ``skip``) sets the status: the last four but ``skip`` are FAILED, with ``error.type`` the span's own or
    else the result. Spans that only inherit ``cicd.*`` from their resource (the steps inside a task) are not runs.
    """
    if is_job_span(record):
        return record
    a = record.attributes
    resource = record.resource
    pipeline = given(a.get(CICD_PIPELINE_NAME)) or given(resource.get(CICD_PIPELINE_NAME))
    pipeline_run = given(a.get(CICD_PIPELINE_RUN_ID)) or given(resource.get(CICD_PIPELINE_RUN_ID))
    task = given(a.get(CICD_PIPELINE_TASK_NAME))
    if task is not None:
        task_run = given(a.get(CICD_PIPELINE_TASK_RUN_ID))
        result = a.get(CICD_PIPELINE_TASK_RUN_RESULT)
        name = f"{pipeline}.{task}" if pipeline is not None else str(task)
        run_id = f"{pipeline_run}.{task_run}" if pipeline_run is not None and task_run is not None else None
    elif given(a.get(CICD_PIPELINE_RESULT)) is not None or given(a.get(CICD_PIPELINE_NAME)) is not None:
        if pipeline is None:
            return None
        result = a.get(CICD_PIPELINE_RESULT)
        name = str(pipeline)
        run_id = pipeline_run
    else:
        return None
    status = _cicd_status(result)
    status_code = status if status is not None else record.status_code
    error_type = None
    if status_code == STATUS_CODE_ERROR:
        error_type = given(a.get(semconv.ERROR_TYPE)) or (str(result).lower() if given(result) else None)
    contract = {semconv.JOB_NAME: name, semconv.JOB_RUN_ID: run_id, semconv.ERROR_TYPE: error_type}
    return rewritten(record, contract, status_code=status_code)
