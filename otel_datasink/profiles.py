"""Mapping profiles: which spans are job runs, and how their attributes read in the contract's conventions.

A profile is a callable ``SpanRecord -> SpanRecord | None``: None for a span that is not a job run, else
the span rewritten so that the one mapping (:func:`otel_datasink.mapping.map_records`) reads it: the
contract's attributes (``job.name``, ``job.run.attempt``, ...) are added, the span's own attributes are kept
(they land in the ``attributes`` column), and the status may be set from a state attribute.

Profiles, chosen by the ``profile`` option or ``OTEL_EXPORTER_DATASINK_PROFILE``:

- ``default``: the contract's conventions (a span with ``job.name``);
- ``airflow``: Airflow's own DAG-run and task spans (Airflow 3 and Airflow 2.10 attribute names);
- ``cicd``: the OpenTelemetry ``cicd.pipeline.*`` semantic conventions (pipeline runs and task runs);
- the path of a TOML mapping file (see :func:`load_mapping_file`).

Every profile also takes spans that already follow the contract, so a job that sets ``job.name`` itself
is recorded whichever profile runs. A profile is loaded, and a mapping file checked, when the processor,
exporter, collector or replay starts: a bad profile fails there, never while spans are exported.

A profile may declare, as its ``job_keys`` attribute, the span attribute keys of which a span must carry at
least one to be a job run (:func:`job_keys_of`); the collector then builds no record for other spans.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from otel_datasink import semconv
from otel_datasink.mapping import STATUS_CODE_ERROR, STATUS_CODE_OK, SpanRecord, is_job_span, to_int

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

Profile = Callable[[SpanRecord], "SpanRecord | None"]


class ProfileError(ValueError):
    """A profile that cannot be loaded: an unknown name, or a mapping file that is not valid."""


def job_keys_of(profile: Profile) -> frozenset[str] | None:
    """The attribute keys of which a span must carry at least one for ``profile`` to take it, or None.

    None means the profile cannot tell from attribute keys alone (it may select a span by its name or resource
    only): every span must then be decoded and shown to it. A span carrying none of the keys is never a run.
    """
    return getattr(profile, "job_keys", None)


def _takes_only_spans_with(*keys: str) -> Callable[[Profile], Profile]:
    """Declares a built-in profile's ``job_keys``: ``job.name`` (every profile takes contract spans) and ``keys``."""

    def declare(profile: Profile) -> Profile:
        profile.job_keys = frozenset((semconv.JOB_NAME, *keys))  # type: ignore[attr-defined]
        return profile

    return declare


@_takes_only_spans_with()
def default_profile(record: SpanRecord) -> SpanRecord | None:
    """The contract's conventions: a span is a job run when it carries ``job.name``."""
    return record if is_job_span(record) else None


DEFAULT_PROFILE: Profile = default_profile


def _rewritten(
    record: SpanRecord,
    contract: Mapping[str, Any],
    *,
    status_code: int | None = None,
    status_message: str | None = None,
) -> SpanRecord:
    # The span's own attributes stay (the mapping keeps them in the attributes column); what the profile
    # read wins over a contract attribute of the same name.
    attributes = dict(record.attributes)
    attributes.update((key, value) for key, value in contract.items() if value is not None)
    changes: dict[str, Any] = {"attributes": attributes}
    if status_code is not None:
        changes["status_code"] = status_code
    if status_message:
        changes["status_message"] = status_message
    return dataclasses.replace(record, **changes)


def _given(value: Any) -> Any:
    """A value Airflow really set: it writes ``str(None)`` for missing dates and ids."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null")):
        return None
    return value


# --- airflow -------------------------------------------------------------------------------------------

# Task instance states whose span is a failed attempt; every other terminal state (success, skipped, ...) is not.
_AIRFLOW_FAILED_STATES = frozenset(("failed", "up_for_retry", "upstream_failed", "shutdown"))
_AIRFLOW_RUN_TYPES = {"scheduled": "scheduled", "manual": "manual", "backfill": "backfill"}


def _airflow_run_type(run_type: Any, run_id: Any) -> str | None:
    # Airflow 3 does not put the run type on the span, but its run ids start with it (scheduled__2026-...).
    text = _given(run_type)
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
    text = _given(state)
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
@_takes_only_spans_with("airflow.dag_id", "airflow.task.dag_id", "airflow.dag_run.dag_id", "dag_id")
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

    The job name is the DAG id for a DAG run and ``<dag_id>.<task_id>`` for a task (task ids repeat across
    DAGs). A DAG run's ``run_id`` is Airflow's run id (``manual__...``); an Airflow 3 task try's is
    :func:`airflow_task_run_id` (``<dag_id>/<run_id>/<task_id>/<try_number>``): Airflow reuses a task
    instance's span id, and gives its next try's id to the span of a try that goes up for retry, so neither
    tells tries apart. The attempt is the try number; the logical date Airflow's (``execution_date``, else
    ``data_interval_start``, in 2.10; for an Airflow 3 task, the date its scheduled or backfill run id ends
    with); ``job.run.type`` follows the run type (scheduled, manual, backfill). A failed run's ``error.type`` is
    its failing state (``failed``, ``up_for_retry``, ...), else the first line of the span's status description,
    else ``failed``; 2.10's ``error_msg`` becomes the error message.
    """
    if is_job_span(record):
        return record
    for read in _AIRFLOW_READERS:
        mapped = read(record, record.attributes)
        if mapped is not None:
            return mapped
    return None


def _airflow3_task_run(record: SpanRecord, a: Mapping[str, Any]) -> SpanRecord | None:
    if not (
        record.name.startswith("task_run.") and _given(a.get("airflow.task_id")) and _given(a.get("airflow.dag_id"))
    ):
        return None
    dag_id, task_id, try_number = a["airflow.dag_id"], a["airflow.task_id"], a.get("airflow.task_instance.try_number")
    run_id = _given(a.get("airflow.dag_run.run_id"))
    # Airflow always sets its run id; were it missing, the task instance id would stand in for it (the try
    # number still tells apart the tries that share it).
    in_run = run_id or _given(a.get("airflow.task_instance.id"))
    map_index = a.get("airflow.task_instance.map_index")
    state = _given(a.get("airflow.task_instance.state"))
    return _airflow_run(
        record,
        dag_id=dag_id,
        task_id=task_id,
        run_id=None if in_run is None else airflow_task_run_id(dag_id, in_run, task_id, map_index, try_number),
        attempt=try_number,
        logical_date=_airflow_run_id_date(run_id),
        run_type=_airflow_run_type(None, run_id),
        state=state,
        # Airflow sets ERROR on every state but success: a skipped task is not a failure.
        status=_airflow_state_status(state),
    )


def _airflow3_dag_run(record: SpanRecord, a: Mapping[str, Any]) -> SpanRecord | None:
    if not (record.name.startswith("dag_run.") and _given(a.get("airflow.dag_id"))):
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
    if not (_given(a.get("airflow.task.task_id")) and _given(a.get("airflow.task.dag_id"))):
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
    if not _given(a.get("airflow.dag_run.dag_id")):
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
    dag_id, task_id = _given(a.get("dag_id")), _given(a.get("task_id"))
    if dag_id is None or record.name != str(task_id if task_id is not None else dag_id):
        return None
    state, error_msg = _given(a.get("state")), _given(a.get("error_msg"))
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
        logical_date=_given(a.get("execution_date")) or a.get("data_interval_start"),
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
        semconv.JOB_RUN_ID: _given(run_id),
        semconv.JOB_RUN_ATTEMPT: _given(attempt),
        semconv.JOB_RUN_LOGICAL_DATE: _given(logical_date),
        semconv.JOB_RUN_TYPE: run_type,
        semconv.ERROR_TYPE: _airflow_error_type(record, state) if status_code == STATUS_CODE_ERROR else None,
    }
    message = _given(error_message)
    return _rewritten(
        record, contract, status_code=status_code, status_message=str(message) if message is not None else None
    )


def _airflow_error_type(record: SpanRecord, state: Any) -> str:
    # A failed Airflow 3 DAG run's span says no state: recurring_failures still needs a last error type.
    failed_state = _given(state)
    if failed_state is not None:
        return str(failed_state)
    description = record.status_message.strip()
    return description.splitlines()[0] if description else "failed"


# --- cicd ----------------------------------------------------------------------------------------------

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
    text = str(result).lower() if _given(result) is not None else None
    if text in _CICD_FAILED_RESULTS:
        return STATUS_CODE_ERROR
    if text in _CICD_OK_RESULTS:
        return STATUS_CODE_OK
    return None


# A run is a span with one of these; the resource is read only for a span that is already a run.
@_takes_only_spans_with(CICD_PIPELINE_TASK_NAME, CICD_PIPELINE_RESULT, CICD_PIPELINE_NAME)
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
    pipeline = _given(a.get(CICD_PIPELINE_NAME)) or _given(resource.get(CICD_PIPELINE_NAME))
    pipeline_run = _given(a.get(CICD_PIPELINE_RUN_ID)) or _given(resource.get(CICD_PIPELINE_RUN_ID))
    task = _given(a.get(CICD_PIPELINE_TASK_NAME))
    if task is not None:
        task_run = _given(a.get(CICD_PIPELINE_TASK_RUN_ID))
        result = a.get(CICD_PIPELINE_TASK_RUN_RESULT)
        name = f"{pipeline}.{task}" if pipeline is not None else str(task)
        run_id = f"{pipeline_run}.{task_run}" if pipeline_run is not None and task_run is not None else None
    elif _given(a.get(CICD_PIPELINE_RESULT)) is not None or _given(a.get(CICD_PIPELINE_NAME)) is not None:
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
        error_type = _given(a.get(semconv.ERROR_TYPE)) or (str(result).lower() if _given(result) else None)
    contract = {semconv.JOB_NAME: name, semconv.JOB_RUN_ID: run_id, semconv.ERROR_TYPE: error_type}
    return _rewritten(record, contract, status_code=status_code)


# --- user mapping files (TOML) -------------------------------------------------------------------------

COLUMN_ATTRIBUTES = {
    "job_name": semconv.JOB_NAME,
    "job_type": semconv.JOB_TYPE,
    "run_id": semconv.JOB_RUN_ID,
    "attempt": semconv.JOB_RUN_ATTEMPT,
    "logical_date": semconv.JOB_RUN_LOGICAL_DATE,
    "run_type": semconv.JOB_RUN_TYPE,
    "records_processed": semconv.JOB_RECORDS_PROCESSED,
    "dataset": semconv.DATASET_NAME,
    "error_type": semconv.ERROR_TYPE,
}
"""Columns a mapping file may fill, and the contract attribute each one becomes."""

_SOURCES = ("attribute", "resource", "constant")
_SELECT_KEYS = ("name", "name_regex", "has_attributes", "resource")
_RULE_KEYS = ("select", "columns", "failed_when")


@dataclasses.dataclass(frozen=True)
class _Source:
    kind: str
    value: Any

    def read(self, record: SpanRecord) -> Any:
        if self.kind == "attribute":
            return record.attributes.get(self.value)
        if self.kind == "resource":
            return record.resource.get(self.value)
        return self.value


@dataclasses.dataclass(frozen=True)
class _Rule:
    name_glob: str | None
    name_regex: re.Pattern[str] | None
    has_attributes: tuple[str, ...]
    resource_equals: tuple[tuple[str, Any], ...]
    columns: tuple[tuple[str, _Source], ...]
    failed_when: tuple[str, _Source, frozenset[str]] | None

    def selects(self, record: SpanRecord) -> bool:
        if self.name_glob is not None and not fnmatch.fnmatchcase(record.name, self.name_glob):
            return False
        if self.name_regex is not None and not self.name_regex.fullmatch(record.name):
            return False
        if any(record.attributes.get(key) is None for key in self.has_attributes):
            return False
        return all(record.resource.get(key) == value for key, value in self.resource_equals)

    def apply(self, record: SpanRecord) -> SpanRecord | None:
        contract = {COLUMN_ATTRIBUTES[column]: source.read(record) for column, source in self.columns}
        if contract.get(semconv.JOB_NAME) in (None, "") and not is_job_span(record):
            return None  # the span lacks what names the job: not a run we can record
        status_code = None
        if self.failed_when is not None:
            _, source, values = self.failed_when
            value = source.read(record)
            if value is not None and str(value) in values:
                status_code = STATUS_CODE_ERROR
                if contract.get(semconv.ERROR_TYPE) is None:
                    contract[semconv.ERROR_TYPE] = str(value)
        return _rewritten(record, contract, status_code=status_code)


class MappingFileProfile:
    """A profile read from a TOML mapping file: the first ``[[rule]]`` that selects a span maps it.

    Spans no rule selects are still runs when they follow the contract (``job.name``).
    """

    def __init__(self, path: str, rules: list[_Rule]) -> None:
        self.path = path
        self.rules = rules
        # A rule selects only spans carrying all its select.has_attributes; a rule without any may select any span.
        self.job_keys: frozenset[str] | None = (
            frozenset((semconv.JOB_NAME, *(key for rule in rules for key in rule.has_attributes)))
            if all(rule.has_attributes for rule in rules)
            else None
        )

    def __call__(self, record: SpanRecord) -> SpanRecord | None:
        for rule in self.rules:
            if rule.selects(record):
                mapped = rule.apply(record)
                if mapped is not None:
                    return mapped
        return record if is_job_span(record) else None

    def __repr__(self) -> str:
        return f"MappingFileProfile({self.path!r}, {len(self.rules)} rule(s))"


def load_mapping_file(path: str | os.PathLike) -> MappingFileProfile:
    """Reads and checks a TOML mapping file; raises :class:`ProfileError` naming the key and line of a mistake.

    The format::

        [[rule]]                                  # any number; the first that selects a span maps it
        select.name = "etl *"                     # glob on the span name (or select.name_regex = "...")
        select.has_attributes = ["etl.pipeline"]  # attributes the span must carry
        select.resource = { "service.name" = "etl-runner" }   # resource attributes that must be equal
        columns.job_name = { attribute = "etl.pipeline" }     # required: where the job name comes from
        columns.run_id = { attribute = "etl.run" }
        columns.dataset = { resource = "etl.target" }
        columns.job_type = { constant = "batch" }
        failed_when = { attribute = "etl.outcome", values = ["failed", "aborted"] }

    Columns: job_name, job_type, run_id, attempt, logical_date, run_type, records_processed, dataset,
    error_type; each from exactly one of ``attribute``, ``resource`` (a resource attribute) or ``constant``.
    Without ``failed_when`` the span status decides (ERROR is FAILED), as for every span.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise ProfileError(f"cannot read mapping file {path}: {error.strerror or error}") from error
    text = raw.decode("utf-8", errors="replace")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # tomllib's message already ends with "(at line N, column M)".
        raise ProfileError(f"mapping file {path}: not valid TOML: {error}") from error
    return MappingFileProfile(path, _Checker(path, text).rules(document))


class _Checker:
    """Checks a parsed mapping file; every error names the key and the line it is on."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        # Line indexes where each [[rule]] starts, so a key is looked up within its own rule.
        self.rule_starts = [i for i, line in enumerate(self.lines) if re.match(r"\s*\[\[\s*rule\s*\]\]", line)]

    def fail(self, key: str, rule: int | None, message: str) -> ProfileError:
        line = self._line_of(key, rule)
        where = f", line {line}" if line is not None else ""
        return ProfileError(f"mapping file {self.path}{where}: {key}: {message}")

    def _line_of(self, key: str, rule: int | None) -> int | None:
        start, end = 0, len(self.lines)
        if rule is not None and rule < len(self.rule_starts):
            start = self.rule_starts[rule]
            end = self.rule_starts[rule + 1] if rule + 1 < len(self.rule_starts) else len(self.lines)
        # Try the most specific part of the dotted key first, then its parents.
        parts = [part for part in re.split(r"\.(?![^\[]*\])", key) if part and not part.startswith("rule[")]
        for part in reversed(parts):
            bare = re.escape(part.strip('"'))
            pattern = re.compile(rf'(^|[\s{{,.\[])"?{bare}"?\s*(=|\]|\.)')
            for index in range(start, end):
                if pattern.search(self.lines[index]):
                    return index + 1
        return start + 1 if rule is not None and start < len(self.lines) else None

    def rules(self, document: Mapping[str, Any]) -> list[_Rule]:
        unknown = sorted(set(document) - {"rule"})
        if unknown:
            raise self.fail(unknown[0], None, "unknown key (a mapping file has [[rule]] tables only)")
        rules = document.get("rule")
        if not isinstance(rules, list) or not rules:
            raise self.fail("rule", None, "no [[rule]] table: a mapping file needs at least one")
        return [self.rule(index, rule) for index, rule in enumerate(rules)]

    def rule(self, index: int, rule: Mapping[str, Any]) -> _Rule:
        prefix = f"rule[{index + 1}]"
        unknown = sorted(set(rule) - set(_RULE_KEYS))
        if unknown:
            raise self.fail(f"{prefix}.{unknown[0]}", index, f"unknown key (expected one of {', '.join(_RULE_KEYS)})")
        select = rule.get("select", {})
        if not isinstance(select, Mapping):
            raise self.fail(f"{prefix}.select", index, "must be a table")
        unknown = sorted(set(select) - set(_SELECT_KEYS))
        if unknown:
            raise self.fail(
                f"{prefix}.select.{unknown[0]}", index, f"unknown key (expected one of {', '.join(_SELECT_KEYS)})"
            )
        name_glob = select.get("name")
        if name_glob is not None and not isinstance(name_glob, str):
            raise self.fail(f"{prefix}.select.name", index, "must be a string (a glob such as 'etl *')")
        name_regex = None
        if "name_regex" in select:
            if not isinstance(select["name_regex"], str):
                raise self.fail(f"{prefix}.select.name_regex", index, "must be a string")
            try:
                name_regex = re.compile(select["name_regex"])
            except re.error as error:
                raise self.fail(
                    f"{prefix}.select.name_regex", index, f"not a valid regular expression: {error}"
                ) from error
        has_attributes = select.get("has_attributes", [])
        if isinstance(has_attributes, str):
            has_attributes = [has_attributes]
        if not isinstance(has_attributes, list) or not all(isinstance(k, str) for k in has_attributes):
            raise self.fail(f"{prefix}.select.has_attributes", index, "must be a list of attribute names")
        resource = select.get("resource", {})
        if not isinstance(resource, Mapping):
            raise self.fail(f"{prefix}.select.resource", index, "must be a table of resource attribute = value")
        columns = rule.get("columns")
        if not isinstance(columns, Mapping) or not columns:
            raise self.fail(f"{prefix}.columns", index, "missing: a rule must map at least columns.job_name")
        if "job_name" not in columns:
            raise self.fail(f"{prefix}.columns", index, "columns.job_name is required")
        mapped = []
        for column, spec in columns.items():
            if column not in COLUMN_ATTRIBUTES:
                raise self.fail(
                    f"{prefix}.columns.{column}",
                    index,
                    f"unknown column (expected one of {', '.join(COLUMN_ATTRIBUTES)})",
                )
            mapped.append((column, self.source(f"{prefix}.columns.{column}", index, spec)))
        failed_when = None
        if "failed_when" in rule:
            spec = rule["failed_when"]
            key = f"{prefix}.failed_when"
            if not isinstance(spec, Mapping) or not isinstance(spec.get("values"), list) or not spec["values"]:
                raise self.fail(key, index, "must be a table with a source and values = [...]")
            source = self.source(key, index, {k: v for k, v in spec.items() if k != "values"})
            failed_when = (key, source, frozenset(str(v) for v in spec["values"]))
        return _Rule(
            name_glob=name_glob,
            name_regex=name_regex,
            has_attributes=tuple(has_attributes),
            resource_equals=tuple(resource.items()),
            columns=tuple(mapped),
            failed_when=failed_when,
        )

    def source(self, key: str, index: int, spec: Any) -> _Source:
        if not isinstance(spec, Mapping):
            raise self.fail(key, index, 'must be a table such as { attribute = "name" }')
        kinds = [kind for kind in _SOURCES if kind in spec]
        unknown = sorted(set(spec) - set(_SOURCES))
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", index, f"unknown source (expected one of {', '.join(_SOURCES)})")
        if len(kinds) != 1:
            raise self.fail(key, index, f"needs exactly one of {', '.join(_SOURCES)}")
        kind = kinds[0]
        value = spec[kind]
        if kind != "constant" and not isinstance(value, str):
            raise self.fail(f"{key}.{kind}", index, "must be an attribute name (a string)")
        return _Source(kind, value)


# --- loading -------------------------------------------------------------------------------------------

BUILTIN_PROFILES: dict[str, Profile] = {
    "default": default_profile,
    "airflow": airflow_profile,
    "cicd": cicd_profile,
}


def load_profile(name_or_path: str | os.PathLike | None) -> Profile:
    """The profile named by an option or ``OTEL_EXPORTER_DATASINK_PROFILE``: a built-in name or a TOML file.

    Raises :class:`ProfileError` (a ValueError) for an unknown name or an invalid mapping file, so that a
    bad setting stops the processor, exporter, collector or replay when it starts.
    """
    if name_or_path is None:
        return DEFAULT_PROFILE
    text = os.fspath(name_or_path).strip()
    if text == "":
        return DEFAULT_PROFILE
    builtin = BUILTIN_PROFILES.get(text.lower())
    if builtin is not None:
        return builtin
    if text.endswith(".toml") or os.path.exists(text):
        return load_mapping_file(text)
    raise ProfileError(
        f"unknown mapping profile {text!r} (known: {', '.join(BUILTIN_PROFILES)}, or the path of a .toml mapping file)"
    )
