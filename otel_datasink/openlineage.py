"""OpenLineage run events as :class:`~otel_datasink.mapping.SpanRecord`: the one translation of OpenLineage.

The collector (``POST /api/v1/lineage``) and replay (OpenLineage JSON Lines, the file transport's output) read
OpenLineage through this module. An event is translated *into the span conventions*: ``job.name``, ``job.run.id``,
``job.run.attempt``, ``job.run.logical_date``, ``job.type``, ``dataset.update`` events with ``dataset.name`` and
``dataset.records_written``, ``dataset.check`` events, a span status and message. From there the one mapping
(:func:`~otel_datasink.mapping.map_records`) makes the rows, as for a span of any other front door; nothing here
writes.

The translation follows the OpenLineage spec 2-0-2 and its facets (``spec/OpenLineage.json``, ``spec/facets``):

=====================================================  ========================================================
OpenLineage                                            row
=====================================================  ========================================================
``eventType`` START                                    a STARTED ``job_runs`` row (start_time = ``eventTime``)
``eventType`` COMPLETE / FAIL / ABORT                  a SUCCESS / FAILED / FAILED row (end_time =
                                                       ``eventTime``); ABORT's ``error_type`` is ``aborted``
``eventType`` RUNNING / OTHER (or none), JobEvent,     no row; counted
DatasetEvent
``job.name`` (``job.namespace``)                       ``job_name`` (``<namespace>/<name>`` with the
                                                       ``openlineage_namespace_prefix`` option)
``run.runId``                                          ``run_id``; ``span_id`` is derived from it
root (else parent, else own) run id                    ``trace_id`` (a UUID's 32 hex digits): a DAG run's tasks
                                                       share it
``parent`` facet ``run.runId``                         ``parent_span_id`` (the parent run's ``span_id``) and
                                                       attributes ``openlineage.parent.*``
``jobType`` facet ``processingType``                   ``job_type`` (BATCH, STREAMING)
``nominalTime`` facet ``nominalStartTime``             ``logical_date``
``errorMessage`` facet ``message``                     ``error_message``; ``stackTrace`` (capped) in attributes
``processing_engine`` facet ``name``, else producer    ``service_name``
``airflow`` facet ``taskInstance.try_number``          ``attempt``
``airflow`` facet (a task try)                         ``run_id`` ``<dag_id>/<airflow run id>/<task_id>/<try>``
                                                       and ``parent_run_id`` Airflow's run id, as the
                                                       ``airflow`` profile gives the try's span (the UUID in
                                                       attributes ``openlineage.run_id``)
``airflowDagRun`` facet (a DAG run)                    ``run_id`` Airflow's run id (``manual__...``)
``airflow``/``airflowDagRun`` ``dagRun.run_type``      ``run_type``
each output dataset                                    a ``dataset_status`` update of ``<namespace>/<name>``
``outputStatistics`` facet ``rowCount``                ``records_written`` (their sum: ``records_processed``)
``dataQualityAssertions`` facet of a dataset's         a ``dataset_checks`` row of that dataset per assertion
``assertions`` (terminal events)                       (``success``: PASSED / FAILED)
``test`` run facet's ``tests`` (terminal events)       a ``dataset_checks`` row per test and input dataset
                                                       (``status`` pass / fail; skip: none)
a dbt test node (``jobType`` facet: integration        its checks only, as rows of the ``parent`` run (the
``DBT``, job type ``TEST``), and its SQL statements    ``dbt test``/``build`` invocation); no ``job_runs`` row,
(job type ``SQL``, parent ``test.<project>...``)       no ``dataset_status`` row of its audit table (output)
=====================================================  ========================================================

An event that cannot be a run's state raises :class:`OpenLineageError`, whose message names the field
(``run.runId: missing``); everything past the required fields is read leniently (a facet of the wrong shape is
left out, never a reason to drop the event).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from otel_datasink import semconv
from otel_datasink.mapping import (
    STATUS_CODE_ERROR,
    STATUS_CODE_UNSET,
    Event,
    SpanRecord,
    clean_str,
    parse_time,
    to_int,
)
from otel_datasink.profiles.airflow import airflow_task_run_id

EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
"""The spec's ``eventType`` values."""
STATIC = "static"
"""The counting label of a JobEvent or DatasetEvent (static lineage, no run): accepted, no row."""
_TERMINAL = frozenset(("COMPLETE", "FAIL", "ABORT"))

ABORTED = "aborted"
"""``error_type`` of an ABORT event."""

MAX_STACK_TRACE = 16 * 1024
"""Characters of a stack trace kept in the attributes: its first and last halves (where a Java and a Python trace
name the exception), so that a huge trace costs a bounded row."""

# Attributes a translated event carries beside the contract's (they land in the ``attributes`` column).
ATTR_EVENT_TYPE = "openlineage.event_type"
ATTR_RUN_ID = "openlineage.run_id"
"""The event's ``run.runId`` when ``run_id`` is another producer's id of the same run (an Airflow task try's or DAG
run's, which Airflow's traces report too): the UUID stays findable."""
ATTR_PRODUCER = "openlineage.producer"
ATTR_JOB_NAMESPACE = "openlineage.job.namespace"
ATTR_JOB_NAME = "openlineage.job.name"
ATTR_JOB_TYPE = "openlineage.job.type"
"""The ``jobType`` facet's ``jobType`` (``DAG``, ``TASK``, ``MODEL``, ``QUERY`` ...)."""
ATTR_INTEGRATION = "openlineage.job.integration"
ATTR_PARENT_RUN_ID = "openlineage.parent.run_id"
ATTR_PARENT_JOB_NAMESPACE = "openlineage.parent.job.namespace"
ATTR_PARENT_JOB_NAME = "openlineage.parent.job.name"
ATTR_ROOT_RUN_ID = "openlineage.root.run_id"
ATTR_ROOT_JOB_NAMESPACE = "openlineage.root.job.namespace"
ATTR_ROOT_JOB_NAME = "openlineage.root.job.name"
ATTR_NOMINAL_END = "openlineage.nominal_end_time"
ATTR_ENGINE_VERSION = "openlineage.processing_engine.version"
ATTR_ADAPTER_VERSION = "openlineage.processing_engine.adapter_version"
ATTR_STACK_TRACE = "openlineage.error.stack_trace"
"""The ``errorMessage`` facet's ``stackTrace``, capped (:data:`MAX_STACK_TRACE`), as a JSON string so that its line
breaks survive (``json_extract_scalar(attributes['openlineage.error.stack_trace'], '$')`` reads it back)."""
ATTR_LANGUAGE = "openlineage.error.programming_language"
ATTR_AIRFLOW_DAG_ID = "openlineage.airflow.dag_id"
ATTR_AIRFLOW_TASK_ID = "openlineage.airflow.task_id"
ATTR_AIRFLOW_RUN_ID = "openlineage.airflow.run_id"
"""Airflow's own DAG run id (``scheduled__2026-11-27T00:00:00+00:00``): joins these rows with the rows of the
``airflow`` profile's spans."""
ATTR_AIRFLOW_MAP_INDEX = "openlineage.airflow.map_index"


class OpenLineageError(ValueError):
    """A body or an event that is not OpenLineage run data; the message names the field (``run.runId: missing``)."""


def events_of(document: Any) -> list[Any]:
    """The events of a parsed body or line: one event (an object) or a batch (an array of them)."""
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        return document
    raise OpenLineageError(f"event: must be a JSON object (or an array of them), not {_kind(document)}")


def event_type_of(event: Mapping[str, Any]) -> str:
    """The event's type for counting: one of :data:`EVENT_TYPES`, or :data:`STATIC`; raises OpenLineageError."""
    if _is_static(event):
        return STATIC
    return _event_type(event)


def record_of(event: Any, *, namespace_prefix: bool = False) -> SpanRecord | None:
    """The record of one OpenLineage event in the span conventions, or None for an event that makes no row
    (RUNNING, OTHER, a JobEvent or DatasetEvent); raises :class:`OpenLineageError` naming the field at fault.

    ``namespace_prefix``: ``job_name`` is ``<job.namespace>/<job.name>`` instead of ``job.name``.
    """
    if not isinstance(event, dict):
        raise OpenLineageError(f"event: must be a JSON object, not {_kind(event)}")
    if _is_static(event):
        _time(event, "eventTime")  # still checked: a broken event is answered as one
        return None
    event_type = _event_type(event)
    event_ns = _time(event, "eventTime")
    run = _object(event, "run", required=True)
    run_id = _text(run, "runId", "run.runId")
    job = _object(event, "job", required=True)
    namespace = _text(job, "namespace", "job.namespace")
    job_name = _text(job, "name", "job.name")
    producer = event.get("producer")
    if producer is not None and not isinstance(producer, str):
        raise OpenLineageError(f"producer: must be a string (a URI), not {_kind(producer)}")
    outputs = _datasets(event, "outputs")
    inputs = _datasets(event, "inputs")
    if event_type not in ("START", *_TERMINAL):
        return None

    run_facets = _facets(run)
    job_facets = _facets(job)
    attributes: dict[str, Any] = {
        semconv.JOB_NAME: f"{namespace}/{job_name}" if namespace_prefix else job_name,
        semconv.JOB_RUN_ID: run_id,
        ATTR_EVENT_TYPE: event_type,
        ATTR_JOB_NAMESPACE: namespace,
        ATTR_JOB_NAME: job_name,
        ATTR_PRODUCER: producer,
    }
    _job_type(job_facets, attributes)
    _nominal_time(run_facets, attributes)
    parent_run_id, root_run_id = _parent(run_facets, attributes, namespace_prefix=namespace_prefix)
    _ownership(job_facets, attributes)
    dbt_test = _dbt_test_role(job_facets, attributes)
    if dbt_test == _DBT_TEST_STATEMENT:
        return None
    start_ns = _airflow(run_facets, event_type, event_ns, attributes)
    service = _engine(run_facets, attributes) or producer

    if dbt_test is not None:
        return _dbt_test_record(event_type, event_ns, run_id, attributes, inputs, run_facets)

    updates: list[Event] = []
    written_total: int | None = None
    for dataset, facets in outputs:
        written = _row_count(facets)
        if written is not None:
            written_total = written + (written_total or 0)
        update: dict[str, Any] = {semconv.DATASET_NAME: dataset, semconv.DATASET_RECORDS_WRITTEN: written}
        if written is not None and _replaces_contents(facets):
            update[semconv.DATASET_RECORD_COUNT] = written  # the dataset holds exactly what the run wrote
        updates.append((semconv.DATASET_UPDATE_EVENT, event_ns, update))
    for dataset, facets in (*inputs, *outputs):
        updates.extend((semconv.DATASET_CHECK_EVENT, event_ns, check) for check in _assertions(dataset, facets))
    for check in _tests(run_facets, [name for name, _ in inputs]):
        updates.append((semconv.DATASET_CHECK_EVENT, event_ns, check))
    if outputs:
        attributes[semconv.DATASET_NAME] = outputs[0][0]  # the primary output, as job spans name it
    if written_total is not None:
        attributes[semconv.JOB_RECORDS_PROCESSED] = written_total
    if inputs:
        attributes[semconv.JOB_INPUTS] = [name for name, _ in inputs]  # the mapping keeps the first MAX_NAMES

    status_code, message = STATUS_CODE_UNSET, ""
    if event_type in ("FAIL", "ABORT"):
        status_code = STATUS_CODE_ERROR
        message = _error(run_facets, event_type, attributes)
    if event_type == "START":
        start_ns, end_ns = event_ns, None
    else:
        end_ns = event_ns
    return SpanRecord(
        name=f"openlineage {event_type} {job_name}",
        trace_id=_trace_id(root_run_id or parent_run_id or run_id),
        span_id=span_id_of(run_id),
        parent_span_id=span_id_of(parent_run_id) if parent_run_id else None,
        start_time_ns=start_ns,
        end_time_ns=end_ns,
        status_code=status_code,
        status_message=message,
        attributes={key: value for key, value in attributes.items() if value is not None},
        events=updates,
        resource={semconv.SERVICE_NAME: service} if service else {},
    )


def records_of(document: Any, *, namespace_prefix: bool = False) -> tuple[list[SpanRecord], list[str]]:
    """The records of a parsed body or line (one event or a batch) and the type of each event (for counting).

    All or nothing: an event that is not valid raises :class:`OpenLineageError`, its position named for a batch
    (``[3].run.runId: missing``), so that a client is told to fix the request rather than lose part of it.
    """
    events = events_of(document)
    records: list[SpanRecord] = []
    types: list[str] = []
    for index, event in enumerate(events):
        try:
            record = record_of(event, namespace_prefix=namespace_prefix)
            types.append(event_type_of(event))
        except OpenLineageError as error:
            if isinstance(document, list):
                raise OpenLineageError(f"[{index}].{error}") from None
            raise
        if record is not None:
            records.append(record)
    return records, types


def dataset_name(namespace: str, name: str) -> str:
    """A dataset's name in the tables: OpenLineage's namespace and name joined by ``/`` (``postgres://db:5432`` and
    ``shop.public.orders`` give ``postgres://db:5432/shop.public.orders``; ``s3://bucket`` and ``raw/orders`` give
    ``s3://bucket/raw/orders``), as the naming spec composes a dataset's URI. A name that starts with ``/`` (a
    file path) is not given a second one."""
    if not namespace:
        return name
    if name.startswith("/") or namespace.endswith("/"):
        return namespace + name
    return f"{namespace}/{name}"


def span_id_of(run_id: str) -> int:
    """The ``span_id`` of a run (64 bits of the SHA-256 of its id): the same for every event of the run, and the
    ``parent_span_id`` of its child runs (``job_runs`` joins a task to its DAG run on it)."""
    return int.from_bytes(hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).digest()[:8], "big") or 1


def _trace_id(run_id: str) -> int:
    # A UUID (the spec's format) is its own 128 bits, so the trace id reads as the run id without dashes.
    try:
        value = uuid.UUID(run_id).int
    except ValueError:
        value = 0
    return value or int.from_bytes(hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).digest()[:16], "big")


# --- reading the event ---------------------------------------------------------------------------------------


def _is_static(event: Mapping[str, Any]) -> bool:
    # JobEvent and DatasetEvent (spec 2-0-x): no run and no eventType. A RunEvent without a run is an error.
    return "run" not in event and "eventType" not in event and ("job" in event or "dataset" in event)


def _event_type(event: Mapping[str, Any]) -> str:
    value = event.get("eventType")
    if value is None:
        return "OTHER"  # optional in the spec: a run event that changes no state
    if not isinstance(value, str) or value.upper() not in EVENT_TYPES:
        raise OpenLineageError(f"eventType: unknown {_short(value)} (one of {', '.join(EVENT_TYPES)})")
    return value.upper()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _object(parent: Mapping[str, Any], key: str, *, required: bool = False, path: str | None = None) -> dict:
    value = parent.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise OpenLineageError(
            f"{path or key}: {'missing' if value is None else 'must be an object, not ' + _kind(value)}"
        )
    return value


def _text(parent: Mapping[str, Any], key: str, path: str) -> str:
    value = parent.get(key)
    if value is None or value == "":
        raise OpenLineageError(f"{path}: missing")
    if not isinstance(value, str):
        raise OpenLineageError(f"{path}: must be a string, not {_kind(value)}")
    return value


def _time(event: Mapping[str, Any], key: str) -> int:
    value = event.get(key)
    if value is None:
        raise OpenLineageError(f"{key}: missing")
    parsed = parse_time(value)
    if parsed is None:
        raise OpenLineageError(f"{key}: not an ISO 8601 date-time: {_short(value)}")
    return parsed


def _datasets(event: Mapping[str, Any], key: str) -> list[tuple[str, dict]]:
    """(name in the tables, merged facets) of each dataset of ``inputs`` or ``outputs``."""
    value = event.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise OpenLineageError(f"{key}: must be an array, not {_kind(value)}")
    datasets = []
    for index, dataset in enumerate(value):
        path = f"{key}[{index}]"
        if not isinstance(dataset, dict):
            raise OpenLineageError(f"{path}: must be an object, not {_kind(dataset)}")
        name = dataset_name(_text(dataset, "namespace", f"{path}.namespace"), _text(dataset, "name", f"{path}.name"))
        # outputFacets is where the spec puts outputStatistics; some producers put it among the dataset's facets.
        facets = {**_facets(dataset), **_facets(dataset, "outputFacets"), **_facets(dataset, "inputFacets")}
        datasets.append((name, facets))
    return datasets


def _facets(owner: Mapping[str, Any], key: str = "facets") -> dict[str, dict]:
    """The facets that are objects (a facet of another shape is left out: facets are extensible and producers
    vary; only the required fields decide whether an event is taken)."""
    facets = owner.get(key)
    if not isinstance(facets, dict):
        return {}
    return {name: facet for name, facet in facets.items() if isinstance(facet, dict)}


def _get(facet: Mapping[str, Any] | None, *path: str) -> Any:
    value: Any = facet
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _job_type(job_facets: Mapping[str, dict], attributes: dict[str, Any]) -> None:
    facet = job_facets.get("jobType")
    processing = _string(_get(facet, "processingType"))
    if processing is not None:
        attributes[semconv.JOB_TYPE] = processing.lower()  # BATCH, STREAMING: the contract's values in lower case
    attributes[ATTR_JOB_TYPE] = _string(_get(facet, "jobType"))
    attributes[ATTR_INTEGRATION] = _string(_get(facet, "integration"))


def _nominal_time(run_facets: Mapping[str, dict], attributes: dict[str, Any]) -> None:
    facet = run_facets.get("nominalTime")
    start = _get(facet, "nominalStartTime")
    parsed = parse_time(start)
    # Epoch ns, which the mapping reads whatever the Python version; a value that does not parse stays as text.
    attributes[semconv.JOB_RUN_LOGICAL_DATE] = parsed if parsed is not None else start
    attributes[ATTR_NOMINAL_END] = _string(_get(facet, "nominalEndTime"))


def _parent(
    run_facets: Mapping[str, dict], attributes: dict[str, Any], *, namespace_prefix: bool
) -> tuple[str | None, str | None]:
    """Reads the ``parent`` run facet: the parent run's job and run id (the columns ``parent_job_name``, named as
    ``job_name`` is, and ``parent_run_id``) and the root run's; returns the parent's and the root's run ids."""
    facet = run_facets.get("parent")
    parent_run_id = _string(_get(facet, "run", "runId"))
    root_run_id = _string(_get(facet, "root", "run", "runId"))
    parent_namespace = _string(_get(facet, "job", "namespace"))
    parent_name = _string(_get(facet, "job", "name"))
    attributes[ATTR_PARENT_RUN_ID] = parent_run_id
    attributes[ATTR_PARENT_JOB_NAMESPACE] = parent_namespace
    attributes[ATTR_PARENT_JOB_NAME] = parent_name
    attributes[semconv.JOB_PARENT_RUN_ID] = parent_run_id
    if parent_name is not None:
        prefixed = namespace_prefix and parent_namespace is not None
        attributes[semconv.JOB_PARENT_NAME] = f"{parent_namespace}/{parent_name}" if prefixed else parent_name
    attributes[ATTR_ROOT_RUN_ID] = root_run_id
    attributes[ATTR_ROOT_JOB_NAMESPACE] = _string(_get(facet, "root", "job", "namespace"))
    attributes[ATTR_ROOT_JOB_NAME] = _string(_get(facet, "root", "job", "name"))
    return parent_run_id, root_run_id


def _ownership(job_facets: Mapping[str, dict], attributes: dict[str, Any]) -> None:
    """The ``ownership`` job facet's owners' names (``team:data-eng``, ``user:alice``) as ``job.owners``."""
    owners = _get(job_facets.get("ownership"), "owners")
    if isinstance(owners, list):
        names = [_string(owner.get("name")) for owner in owners if isinstance(owner, dict)]
        attributes[semconv.JOB_OWNERS] = [name for name in names if name] or None


def _airflow(run_facets: Mapping[str, dict], event_type: str, event_ns: int, attributes: dict[str, Any]) -> int | None:
    """Reads Airflow's run facets (providers/openlineage ``AirflowRunFacet`` of a task try, ``AirflowDagRunFacet``
    of a DAG run) into the attempt, run type and Airflow ids; returns the run's start when a terminal event tells
    it (a task's ``duration``, a DAG run's ``start_date``), else None."""
    task_run = run_facets.get("airflow")
    dag_run = run_facets.get("airflowDagRun")
    facet = task_run or dag_run
    if facet is None:
        return None
    attributes[semconv.JOB_RUN_ATTEMPT] = _get(task_run, "taskInstance", "try_number")
    attributes[semconv.JOB_RUN_TYPE] = _string(_get(facet, "dagRun", "run_type"))
    attributes[ATTR_AIRFLOW_DAG_ID] = _string(_get(facet, "dag", "dag_id")) or _string(_get(facet, "dagRun", "dag_id"))
    attributes[ATTR_AIRFLOW_TASK_ID] = _string(_get(task_run, "task", "task_id"))
    attributes[ATTR_AIRFLOW_RUN_ID] = _string(_get(facet, "dagRun", "run_id"))
    attributes[ATTR_AIRFLOW_MAP_INDEX] = to_int(_get(task_run, "taskInstance", "map_index"))
    _airflow_ids(task_run is not None, attributes)
    if event_type not in _TERMINAL:
        return None
    if task_run is not None:
        duration = _get(task_run, "taskInstance", "duration")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool) and 0 <= duration < 10**7:
            return event_ns - int(duration * 1_000_000_000)
        return None
    return parse_time(_get(dag_run, "dagRun", "start_date"))


def _airflow_ids(task_try: bool, attributes: dict[str, Any]) -> None:
    """Gives the run Airflow's ids, those the ``airflow`` profile gives the spans of the same try or DAG run, so
    that the views merge the two producers' rows into one run: a task try's ``run_id`` is
    :func:`~otel_datasink.profiles.airflow.airflow_task_run_id` and its ``parent_run_id`` its DAG run's Airflow
    run id, a DAG run's ``run_id`` its Airflow run id. The OpenLineage UUID moves to :data:`ATTR_RUN_ID`. Without
    the DAG id and Airflow's run id (and a try's task id) the UUID stays the ``run_id``."""
    dag_id, run_id = attributes[ATTR_AIRFLOW_DAG_ID], attributes[ATTR_AIRFLOW_RUN_ID]
    task_id = attributes[ATTR_AIRFLOW_TASK_ID]
    if dag_id is None or run_id is None or (task_try and task_id is None):
        return
    attributes[ATTR_RUN_ID] = attributes[semconv.JOB_RUN_ID]
    if not task_try:
        attributes[semconv.JOB_RUN_ID] = run_id
        return
    attempt = attributes[semconv.JOB_RUN_ATTEMPT]
    map_index = attributes[ATTR_AIRFLOW_MAP_INDEX]
    attributes[semconv.JOB_RUN_ID] = airflow_task_run_id(dag_id, run_id, task_id, map_index, attempt)
    attributes[semconv.JOB_PARENT_RUN_ID] = run_id


def _engine(run_facets: Mapping[str, dict], attributes: dict[str, Any]) -> str | None:
    facet = run_facets.get("processing_engine")
    attributes[ATTR_ENGINE_VERSION] = _string(_get(facet, "version"))
    attributes[ATTR_ADAPTER_VERSION] = _string(_get(facet, "openlineageAdapterVersion"))
    return _string(_get(facet, "name"))


def _row_count(facets: Mapping[str, dict]) -> int | None:
    count = to_int(_get(facets.get("outputStatistics"), "rowCount"))
    return count if count is None or count >= 0 else None


def _replaces_contents(facets: Mapping[str, dict]) -> bool:
    # lifecycleStateChange OVERWRITE / CREATE: after the run the dataset holds exactly the rows it wrote.
    change = _get(facets.get("lifecycleStateChange"), "lifecycleStateChange")
    return isinstance(change, str) and change.upper() in ("OVERWRITE", "CREATE")


def _assertions(dataset: str, facets: Mapping[str, dict], *, dbt_test: bool = False) -> list[dict[str, Any]]:
    """The ``dataset.check`` event attributes of a dataset's ``dataQualityAssertions`` facet (spec: an input facet,
    ``assertions: [{assertion, success, column, severity, name, expected, actual, ...}]``; dbt-ol sends one per
    tested model and ``dbt test``, with ``failures`` as ``actual``). A check is named by its ``name``, else by its
    ``assertion`` (dbt-ol's is the test's name, ``not_null_orders_order_id``, which names its column already), else
    by its ``assertion`` and ``column`` (``not_null(id)``): one assertion on two columns is two checks. An
    assertion without ``assertion`` is left out, one without ``success`` left to the mapping; ``dbt_test``: one
    that dbt did not run is left out (:func:`_dbt_not_run`)."""
    assertions = _get(facets.get("dataQualityAssertions"), "assertions")
    if not isinstance(assertions, list):
        return []
    checks = []
    for item in assertions:
        assertion = _string(_get(item, "assertion"))
        if assertion is None or (dbt_test and _dbt_not_run(item, _get(item, "success") is False)):
            continue
        column = _string(_get(item, "column"))
        name = _string(_get(item, "name")) or _check_name(assertion, column)
        check = {
            semconv.DATASET_NAME: dataset,
            semconv.CHECK_NAME: name,
            semconv.CHECK_PASSED: _get(item, "success"),
            semconv.CHECK_ASSERTION: assertion,
            semconv.CHECK_COLUMN: column,
            semconv.CHECK_ACTUAL: _get(item, "actual"),
            semconv.CHECK_EXPECTED: _get(item, "expected"),
            semconv.CHECK_SEVERITY: _string(_get(item, "severity")),
        }
        checks.append({key: value for key, value in check.items() if value is not None})
    return checks


_TEST_PASSED = {"pass": True, "fail": False}
"""The ``test`` run facet's ``status`` as a check's result; ``skip`` (not executed) is no result."""


def _tests(run_facets: Mapping[str, dict], inputs: list[str], *, dbt_test: bool = False) -> list[dict[str, Any]]:
    """The ``dataset.check`` event attributes of the ``test`` run facet (``tests: [{name, status, severity, type,
    expected, actual, ...}]``; dbt-ol sends one per singular test, whose inputs are the models it reads): each test
    is a check of each input dataset; a test of no input checks no dataset, and is left out. ``dbt_test``: a test
    dbt did not run is left out (:func:`_dbt_not_run`), and a check is named by the test's name in dbt's unique id
    (``test.shop.orders_under_90`` is ``orders_under_90``, as dbt-ol names it in the model's assertions)."""
    tests = _get(run_facets.get("test"), "tests")
    if not isinstance(tests, list) or not inputs:
        return []
    checks: list[dict[str, Any]] = []
    for item in tests:
        name = _string(_get(item, "name"))
        status = _get(item, "status")
        passed = _TEST_PASSED.get(status.lower()) if isinstance(status, str) else None
        if name is None or passed is None or (dbt_test and _dbt_not_run(item, not passed)):
            continue
        if dbt_test and (unique_id := _DBT_TEST_ID.fullmatch(name)):
            name = unique_id.group(1)
        check = {
            semconv.CHECK_NAME: name,
            semconv.CHECK_PASSED: passed,
            semconv.CHECK_ASSERTION: _string(_get(item, "type")),
            semconv.CHECK_ACTUAL: _get(item, "actual"),
            semconv.CHECK_EXPECTED: _get(item, "expected"),
            semconv.CHECK_SEVERITY: _string(_get(item, "severity")),
        }
        check = {key: value for key, value in check.items() if value is not None}
        checks.extend({**check, semconv.DATASET_NAME: dataset} for dataset in inputs)
    return checks


_DBT_TEST_NODE = "test"
_DBT_TEST_STATEMENT = "statement"
_DBT_TEST_ID = re.compile(r"test\.[^.]+\.([^.]+)(?:\.[0-9a-f]{10})?")
"""A dbt test's unique id, ``test.<project>.<name>``, a generic test's with ``.<10 hex>`` after: group 1 is the name."""


def _dbt_test_role(job_facets: Mapping[str, dict], attributes: Mapping[str, Any]) -> str | None:
    """:data:`_DBT_TEST_NODE` for an event of a dbt test node (dbt-ol's ``jobType`` facet: integration ``DBT``, job
    type ``TEST``), :data:`_DBT_TEST_STATEMENT` for one of a SQL statement such a node ran (job type ``SQL``, its
    parent job a test's unique id ``test.<project>....``: structured-logs mode), else None."""
    facet = job_facets.get("jobType")
    if (_string(_get(facet, "integration")) or "").upper() != "DBT":
        return None
    job_type = (_string(_get(facet, "jobType")) or "").upper()
    if job_type == "TEST":
        return _DBT_TEST_NODE
    if job_type == "SQL" and str(attributes.get(ATTR_PARENT_JOB_NAME) or "").startswith("test."):
        return _DBT_TEST_STATEMENT
    return None


def _dbt_test_record(
    event_type: str,
    event_ns: int,
    run_id: str,
    attributes: Mapping[str, Any],
    inputs: list[tuple[str, dict]],
    run_facets: Mapping[str, dict],
) -> SpanRecord | None:
    """A dbt test node's terminal event as a :attr:`~otel_datasink.mapping.SpanRecord.checks_only` record: a test
    is a check of the datasets it reads, not a run, and its audit table (the output) is no dataset. The checks are
    the ``dbt test`` (or ``build``) invocation's, the ``parent`` run, which has ``job_runs`` rows (else, without a
    parent, the node's own run). None for a START event, which checks nothing."""
    if event_type == "START":
        return None
    parent_run_id = attributes.get(ATTR_PARENT_RUN_ID)
    parent_name = attributes.get(semconv.JOB_PARENT_NAME)
    job_name, checked_run = (parent_name, parent_run_id) if parent_run_id and parent_name else (None, run_id)
    checks = _dbt_test_checks(event_type, inputs, run_facets)
    return SpanRecord(
        name=f"openlineage {event_type} {attributes[ATTR_JOB_NAME]}",
        trace_id=_trace_id(attributes.get(ATTR_ROOT_RUN_ID) or checked_run),
        span_id=span_id_of(checked_run),
        parent_span_id=None,
        start_time_ns=None,
        end_time_ns=event_ns,
        status_code=STATUS_CODE_UNSET,
        status_message="",
        attributes={semconv.JOB_NAME: job_name or attributes[semconv.JOB_NAME], semconv.JOB_RUN_ID: checked_run},
        events=[(semconv.DATASET_CHECK_EVENT, event_ns, check) for check in checks],
        checks_only=True,
    )


def _dbt_test_checks(event_type: str, inputs: list[tuple[str, dict]], run_facets: Mapping[str, dict]) -> list[dict]:
    """The results a dbt test node's terminal event reports, as dbt-ol 1.54 sends them: its inputs'
    ``dataQualityAssertions``, else (the default mode's event of one singular test, whose result is in a model's
    assertions too) its ``test`` run facet. A test dbt skipped is no result: an ABORT event (structured-logs
    mode), or a failure without a failures count (:func:`_dbt_not_run`)."""
    if event_type == "ABORT":
        return []
    checks = [check for dataset, facets in inputs for check in _assertions(dataset, facets, dbt_test=True)]
    return checks or _tests(run_facets, [name for name, _ in inputs], dbt_test=True)


def _dbt_not_run(item: Mapping[str, Any], failed: bool) -> bool:
    """Whether a dbt test's result is a test dbt skipped (or could not run): dbt-ol 1.54 reports those as failed
    without dbt's failures count, which it sends (as ``actual``) for every test dbt ran. Told only of a named
    result (dbt-ol's have a ``name`` since they carry ``actual``): an older dbt-ol's failure is kept."""
    return failed and _get(item, "actual") is None and _string(_get(item, "name")) is not None


def _check_name(assertion: str, column: str | None) -> str:
    if column is None or re.search(rf"(?:^|_){re.escape(column)}(?:_|$)", assertion):
        return assertion
    return f"{assertion}({column})"


def _error(run_facets: Mapping[str, dict], event_type: str, attributes: dict[str, Any]) -> str:
    """The run's error message (the status description the mapping stores), setting ``error.type`` and the stack
    trace attributes."""
    facet = run_facets.get("errorMessage")
    message = _get(facet, "message")
    message = message if isinstance(message, str) else clean_str(message) or ""
    stack = _string(_get(facet, "stackTrace"))
    language = _string(_get(facet, "programmingLanguage"))
    attributes[ATTR_LANGUAGE] = language
    if stack is not None:
        # As a JSON string: the attributes column drops line breaks, which a stack trace needs to be read.
        attributes[ATTR_STACK_TRACE] = json.dumps(_cap(stack), ensure_ascii=False)
    attributes[semconv.ERROR_TYPE] = ABORTED if event_type == "ABORT" else _exception_type(stack, language) or "failed"
    return message


def _cap(text: str) -> str:
    if len(text) <= MAX_STACK_TRACE:
        return text
    half = MAX_STACK_TRACE // 2
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters cut] ...\n{text[-half:]}"


_EXCEPTION_LINE = re.compile(r'(?:Exception in thread "[^"]*" )?([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)(?::\s|:?$)')


def _exception_type(stack: str | None, language: str | None) -> str | None:
    """The exception's type named by a stack trace: in a Python traceback the last unindented ``Type: message``
    line (the message may span lines, and a chained traceback names the exception that escaped last), in a JVM
    one the first line."""
    if not stack:
        return None
    lines = [line.rstrip() for line in stack.strip().splitlines() if line.strip()]
    if not lines:
        return None
    python = (language or "").lower() == "python" or lines[0].startswith("Traceback")
    candidates = reversed(lines) if python else iter(lines[:1])
    for line in candidates:
        if line[:1].isspace() or line.startswith(("Traceback", "During handling", "The above exception")):
            continue
        match = _EXCEPTION_LINE.match(line)
        if match is None:
            continue
        name = match.group(1)
        # A bare word ("failed") is no type: a type is qualified, or named like one.
        if "." in name or name.endswith(("Error", "Exception", "Interrupt", "Exit")):
            return name
    return None


def summary_of(types: Sequence[str]) -> dict[str, int]:
    """Events per type, for counters and replay's summary."""
    counts: dict[str, int] = {}
    for event_type in types:
        counts[event_type] = counts.get(event_type, 0) + 1
    return counts
