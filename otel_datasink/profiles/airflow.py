"""The ``airflow`` profile: Airflow's own DAG-run and task spans (Airflow 3, 3.0/3.1 and 2.10 attribute names)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from otel_datasink import semconv
from otel_datasink.mapping import STATUS_CODE_ERROR, STATUS_CODE_OK, SpanRecord, is_job_span, to_int
from otel_datasink.profiles.base import given, rewritten, takes_only_spans_with

# Task instance states whose span is a failed attempt; every other terminal state (success, skipped, ...) is not.
_AIRFLOW_FAILED_STATES = frozenset(("failed", "up_for_retry", "upstream_failed", "shutdown"))
_AIRFLOW_RUN_TYPES = {"scheduled": "scheduled", "manual": "manual", "backfill": "backfill"}


def _airflow_run_type(run_type: Any, run_id: Any) -> str | None:
    # Airflow 3 does not put the run type on the span, but its run ids start with it (scheduled__2026-...).
    text = given(run_type)
    if text is None and isinstance(run_id, str) and "__" in run_id:
        text = run_id.split("__", 1)[0]
    return _AIRFLOW_RUN_TYPES.get(str(text).lower()) if text is not None else None


def _airflow_run_id_date(run_id: Any) -> str | None:
    # A task span carries no logical date, but a scheduled or backfill run id ends with it.
    if isinstance(run_id, str) and run_id.startswith(("scheduled__", "backfill__")):
        return run_id.split("__", 1)[1]
    return None


def _airflow_state_status(state: Any, error_flag: Any = None) -> int | None:
    """The span status an Airflow state implies, or None to keep the span's own."""
    text = given(state)
    if text is not None:
        return STATUS_CODE_ERROR if str(text).lower() in _AIRFLOW_FAILED_STATES else STATUS_CODE_OK
    if error_flag in (True, "true", "True"):
        return STATUS_CODE_ERROR
    return None


def airflow_task_run_id(dag_id: Any, run_id: Any, task_id: Any, map_index: Any, try_number: Any) -> str:
    """The ``run_id`` of one try of an Airflow 3 task instance: ``<dag_id>/<run_id>/<task_id>/<try_number>``.

    ``run_id`` is Airflow's own (``manual__...``, ``scheduled__...``); a mapped task instance's task part is
    ``<task_id>[<map_index>]``, as in its span's name. Airflow allows no ``/`` in DAG, run and task ids, so the
    parts read back unambiguously, and the ids of a DAG run's task tries all start with ``<dag_id>/<run_id>/``.
    """
    index = to_int(map_index)
    task = f"{task_id}[{index}]" if index is not None and index >= 0 else str(task_id)
    return f"{dag_id}/{run_id}/{task}/{to_int(try_number) or 1}"


# Every reader below needs its DAG id attribute, the name-selected dag_run.*/task_run.* spans too.
@takes_only_spans_with("airflow.dag_id", "airflow.task.dag_id", "airflow.dag_run.dag_id", "dag_id")
def airflow_profile(record: SpanRecord) -> SpanRecord | None:
    """Airflow's DAG-run and task-instance spans as job runs.

    - Airflow 3 (``[traces] otel_on``): ``dag_run.<dag_id>`` spans (``airflow.dag_id``,
      ``airflow.dag_run.run_id``, ``airflow.dag_run.run_type``, ``airflow.dag_run.logical_date``) and one
      ``task_run.<task_id>`` span per task try (``airflow.task_id``, ``airflow.task_instance.try_number``,
      ``.map_index``, ``.state``); status from the state, else the span status (OK/ERROR). ``worker.*`` and
      trigger spans repeat a task's attributes and are not runs of their own.
    - Airflow 3.0/3.1: spans named after the DAG or task with ``airflow.dag_run.*`` / ``airflow.task.*``.
    - Airflow 2.10: spans named after the DAG (a DAG run) or the task (a task try, and the worker's span of a
      failed one) with unprefixed ``dag_id``, ``task_id``, ``run_id``, ``state``, ``try_number``,
      ``execution_date``, ``data_interval_start``, ``run_type`` and, on a failure, ``error_msg``; the span status
      is unset, so a failed state makes the run FAILED.

    Scheduler-internal spans (``_update_state``, ``_schedule_dag_run``, ``scheduler_job_loop``, heartbeats...,
    which 2.10 and 3.0 emit with traces on and 3.1 with ``otel_debug_traces_on``) are never runs, though some
    carry ``dag_id``, ``run_id`` and a ``state``: they are not named after their DAG or task.

    The job name is the DAG id for a DAG run and ``<dag_id>.<task_id>`` for a task (task ids repeat across DAGs). A
    DAG run's ``run_id`` is Airflow's run id (``manual__...``); an Airflow 3 task try's is
    :func:`airflow_task_run_id` (``<dag_id>/<run_id>/<task_id>/<try_number>``): Airflow reuses a task instance's
    span id, and gives its next try's id to the span of a try that goes up for retry, so neither tells tries apart.
    An Airflow 3 task try's parent is its DAG run (``parent_job_name`` the DAG id, ``parent_run_id`` Airflow's run
    id), as OpenLineage's events of the try name it. The attempt is the try number; the logical date Airflow's
    (``execution_date``, else ``data_interval_start``, in 2.10; for an Airflow 3 task, the date its scheduled or
    backfill run id ends with); ``job.run.type`` follows the run type (scheduled, manual, backfill). A failed run's
    ``error.type`` is its failing state (``failed``, ``up_for_retry``, ...), else the first line of the span's
    status description, else ``failed``; 2.10's ``error_msg`` becomes the error message.
    """
    if is_job_span(record):
        return record
    for read in _AIRFLOW_READERS:
        mapped = read(record, record.attributes)
        if mapped is not None:
            return mapped
    return None


def _airflow3_task_run(record: SpanRecord, a: Mapping[str, Any]) -> SpanRecord | None:
    if not (record.name.startswith("task_run.") and given(a.get("airflow.task_id")) and given(a.get("airflow.dag_id"))):
        return None
    dag_id, task_id, try_number = a["airflow.dag_id"], a["airflow.task_id"], a.get("airflow.task_instance.try_number")
    run_id = given(a.get("airflow.dag_run.run_id"))
    # Airflow always sets its run id; were it missing, the task instance id would stand in for it (the try
    # number still tells apart the tries that share it).
    in_run = run_id or given(a.get("airflow.task_instance.id"))
    map_index = a.get("airflow.task_instance.map_index")
    state = given(a.get("airflow.task_instance.state"))
    return _airflow_run(
        record,
        dag_id=dag_id,
        task_id=task_id,
        run_id=None if in_run is None else airflow_task_run_id(dag_id, in_run, task_id, map_index, try_number),
        # Its DAG run's span comes in a later request (it ends after its tasks): the parent is named, not found.
        parent_run_id=run_id,
        attempt=try_number,
        logical_date=_airflow_run_id_date(run_id),
        run_type=_airflow_run_type(None, run_id),
        state=state,
        # Airflow sets ERROR on every state but success: a skipped task is not a failure.
        status=_airflow_state_status(state),
    )


def _airflow3_dag_run(record: SpanRecord, a: Mapping[str, Any]) -> SpanRecord | None:
    if not (record.name.startswith("dag_run.") and given(a.get("airflow.dag_id"))):
        return None
    run_id = a.get("airflow.dag_run.run_id")
    return _airflow_run(
        record,
        dag_id=a["airflow.dag_id"],
        run_id=run_id,
        logical_date=a.get("airflow.dag_run.logical_date"),
        run_type=_airflow_run_type(a.get("airflow.dag_run.run_type"), run_id),
    )


def _airflow30_task(record: SpanRecord, a: Mapping[str, Any]) -> SpanRecord | None:
    if not (given(a.get("airflow.task.task_id")) and given(a.get("airflow.task.dag_id"))):
        return None
    state = a.get("airflow.task.state")
    return _airflow_run(
        record,
        dag_id=a["airflow.task.dag_id"],
        task_id=a["airflow.task.task_id"],
        attempt=a.get("airflow.task.try_number"),
        logical_date=a.get("airflow.task.logical_date"),
        state=state,
        status=_airflow_state_status(state, a.get("airflow.task.error")),
    )


def _airflow30_dag_run(record: SpanRecord, a: Mapping[str, Any]) -> SpanRecord | None:
    if not given(a.get("airflow.dag_run.dag_id")):
        return None
    state, run_id = a.get("airflow.dag_run.state"), a.get("airflow.dag_run.run_id")
    return _airflow_run(
        record,
        dag_id=a["airflow.dag_run.dag_id"],
        run_id=run_id,
        logical_date=a.get("airflow.dag_run.logical_date"),
        run_type=_airflow_run_type(a.get("airflow.dag_run.run_type"), run_id),
        state=state,
        status=_airflow_state_status(state, a.get("airflow.dag_run.error")),
    )


def _airflow210_run(record: SpanRecord, a: Mapping[str, Any]) -> SpanRecord | None:
    # 2.10 names a DAG run's span after the DAG and a task try's spans after the task. Its scheduler's own spans
    # carry unprefixed dag_id, run_id and even state ("_update_state": state="running") under their function's
    # name: the name tells them apart, the attributes do not.
    dag_id, task_id = given(a.get("dag_id")), given(a.get("task_id"))
    if dag_id is None or record.name != str(task_id if task_id is not None else dag_id):
        return None
    state, error_msg = given(a.get("state")), given(a.get("error_msg"))
    if state is None and error_msg is None:
        return None
    status = STATUS_CODE_ERROR if error_msg is not None else _airflow_state_status(state, a.get("error"))
    return _airflow_run(
        record,
        dag_id=dag_id,
        task_id=task_id,
        # A DAG run's span carries Airflow's run id; a task's does not (its spans share the DAG run's trace id).
        run_id=a.get("run_id") if task_id is None else None,
        attempt=a.get("try_number"),
        logical_date=given(a.get("execution_date")) or a.get("data_interval_start"),
        run_type=_airflow_run_type(a.get("run_type"), a.get("run_id")),
        state=state or ("failed" if error_msg is not None else None),
        status=status,
        error_message=error_msg,
    )


_AIRFLOW_READERS: tuple[Callable[[SpanRecord, Mapping[str, Any]], SpanRecord | None], ...] = (
    _airflow3_task_run,
    _airflow3_dag_run,
    _airflow30_task,
    _airflow30_dag_run,
    _airflow210_run,
)
"""The span shapes of each Airflow generation, newest first; the first that reads a span maps it."""


def _airflow_run(
    record: SpanRecord,
    *,
    dag_id: Any,
    task_id: Any = None,
    run_id: Any = None,
    parent_run_id: Any = None,
    attempt: Any = None,
    logical_date: Any = None,
    run_type: str | None = None,
    state: Any = None,
    status: int | None = None,
    error_message: Any = None,
) -> SpanRecord:
    status_code = status if status is not None else record.status_code
    contract = {
        semconv.JOB_NAME: f"{dag_id}.{task_id}" if task_id is not None else str(dag_id),
        semconv.JOB_RUN_ID: given(run_id),
        semconv.JOB_PARENT_NAME: str(dag_id) if parent_run_id is not None else None,
        semconv.JOB_PARENT_RUN_ID: parent_run_id,
        semconv.JOB_RUN_ATTEMPT: given(attempt),
        semconv.JOB_RUN_LOGICAL_DATE: given(logical_date),
        semconv.JOB_RUN_TYPE: run_type,
        semconv.ERROR_TYPE: _airflow_error_type(record, state) if status_code == STATUS_CODE_ERROR else None,
    }
    message = given(error_message)
    return rewritten(
        record, contract, status_code=status_code, status_message=str(message) if message is not None else None
    )


def _airflow_error_type(record: SpanRecord, state: Any) -> str:
    # A failed Airflow 3 DAG run's span says no state: recurring_failures still needs a last error type.
    failed_state = given(state)
    if failed_state is not None:
        return str(failed_state)
    description = record.status_message.strip()
    return description.splitlines()[0] if description else "failed"
