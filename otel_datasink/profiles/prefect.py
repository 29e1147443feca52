"""The ``prefect`` profile: Prefect 3's own flow-run and task-run spans.

Prefect 3 (``prefect/telemetry/run_telemetry.py``) starts one span per flow run and per task run, of
instrumentation scope ``prefect``, whenever an OpenTelemetry tracer provider is set (``opentelemetry-instrument``),
with the attributes ``prefect.run.type`` (``flow`` | ``task``), ``prefect.run.name``, ``prefect.run.id``,
``prefect.tags`` and the run's labels (a flow run's ``prefect.flow.id``); each state the run enters is an event
named after it (``Running``, ``AwaitingRetry``, ``Retrying``, ``Completed``, ``Failed``) with
``prefect.state.type``, and each exception a try raises an ``exception`` event. The span ends OK, or ERROR with
Prefect's terminal state message (``Task run encountered an exception ValueError: ...``), which becomes the
run's error message; ``error.type`` is the last exception's type.

Job names are stable across runs:

- a task run's is its task's name: Prefect names task runs ``<task name>-<key>`` (the key 3 hex digits, a
  counter or a UUID), and the suffix is taken off (a ``task_run_name`` of your own is kept whole, unless it ends
  in ``-<digits>`` or ``-<3 hex digits>`` too); the span carries no flow, so a task called by two flows is one job;
- a flow run's span carries neither the flow's name nor anything stable but the flow's id (its run names are
  random, ``sparkling-woodlouse``): the job name is a Prefect tag ``job.name:<name>`` on the run
  (``with prefect.tags("job.name:orders-etl"): orders_etl()``, or a deployment's tags), else
  ``prefect-flow-<flow id>`` (the id the Prefect server gave the flow, stable for its name on that server).

The run id is Prefect's run id. A span is one run, whatever its retries: its attempt is the number of tries
Prefect made (the ``Running`` and ``Retrying`` states), its status the final state's, and the failures of
the earlier tries are kept in its attributes: ``prefect.failed_tries`` (their count) and
``prefect.failed_tries.errors`` (``<type>: <message>`` of each). A failed run's error message is Prefect's
state message (the span's own description may be a bare ``Run failed``).

A retried *flow* run's span (Prefect 3.9.1) ends when its first try fails, after the next try's ``Running``
state, with ERROR ``Run failed``; no span tells of the later tries. A try whose end its span does not show is not
counted: such a span is attempt 1, FAILED, with that try's error, and the later tries are not recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from otel_datasink import semconv
from otel_datasink.mapping import STATUS_CODE_ERROR, Event, SpanRecord, is_job_span
from otel_datasink.profiles.base import given, rewritten, takes_only_spans_with

PREFECT_RUN_TYPE = "prefect.run.type"
PREFECT_RUN_NAME = "prefect.run.name"
PREFECT_RUN_ID = "prefect.run.id"
PREFECT_FLOW_ID = "prefect.flow.id"
PREFECT_TAGS = "prefect.tags"
PREFECT_STATE_TYPE = "prefect.state.type"
PREFECT_STATE_MESSAGE = "prefect.state.message"
PREFECT_FAILED_TRIES = "prefect.failed_tries"
PREFECT_FAILED_TRIES_ERRORS = "prefect.failed_tries.errors"
JOB_NAME_TAG = "job.name:"
"""The prefix of the Prefect tag that names a flow's job: ``job.name:<name>``."""

# Prefect's task run names: f"{task.name}-{key[:3]}" (hex), f"{task.name}-{key}" (a counter, or a UUID).
_TASK_RUN_SUFFIX = re.compile(r"-(?:[0-9a-f]{3}|[0-9]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
# A try starts with a state of type RUNNING: "Running" for the first, "Retrying" for each retry.
_TRY_STATE_TYPE = "RUNNING"


@takes_only_spans_with(PREFECT_RUN_TYPE)
def prefect_profile(record: SpanRecord) -> SpanRecord | None:
    """Prefect 3's flow-run and task-run spans as job runs (see the module's docstring)."""
    if is_job_span(record):
        return record
    a = record.attributes
    run_type = a.get(PREFECT_RUN_TYPE)
    if run_type == "task":
        name = _task_name(a.get(PREFECT_RUN_NAME))
    elif run_type == "flow":
        name = _flow_name(a)
    else:
        return None
    if name is None:
        return None
    tries, failed, message = _tries(record.events)
    contract: dict[str, Any] = {
        semconv.JOB_NAME: name,
        semconv.JOB_RUN_ID: given(a.get(PREFECT_RUN_ID)),
        semconv.JOB_RUN_ATTEMPT: tries or None,
    }
    if failed:
        contract[PREFECT_FAILED_TRIES] = len(failed)
        contract[PREFECT_FAILED_TRIES_ERRORS] = failed
    return rewritten(record, contract, status_message=message if record.status_code == STATUS_CODE_ERROR else None)


def _task_name(run_name: Any) -> str | None:
    text = given(run_name)
    return None if text is None else _TASK_RUN_SUFFIX.sub("", str(text)) or str(text)


def _flow_name(a: Mapping[str, Any]) -> str | None:
    tags = a.get(PREFECT_TAGS)
    for tag in tags if isinstance(tags, (list, tuple)) else ():
        named = tag[len(JOB_NAME_TAG) :].strip() if isinstance(tag, str) and tag.startswith(JOB_NAME_TAG) else ""
        if named:
            return named
    flow_id = given(a.get(PREFECT_FLOW_ID))
    return None if flow_id is None else f"prefect-flow-{flow_id}"


def _tries(events: Sequence[Event]) -> tuple[int, list[str], str | None]:
    """The number of tries whose end the run's state events show, ``<type>: <message>`` of each of them that
    failed before the last one (its exception is followed by a later try), and the last state message."""
    tries = 0
    failed: list[str] = []
    pending: str | None = None  # the exception of the current try, until a later try shows it was retried
    message: str | None = None
    running = False  # whether the last state seen started a try
    for name, _, attributes in events:
        if name == semconv.EXCEPTION_EVENT:
            pending = f"{attributes.get(semconv.EXCEPTION_TYPE)}: {attributes.get(semconv.EXCEPTION_MESSAGE)}"
            continue
        state_type = attributes.get(PREFECT_STATE_TYPE)
        if state_type is None:
            continue
        message = given(attributes.get(PREFECT_STATE_MESSAGE)) or message
        running = state_type == _TRY_STATE_TYPE
        if running:
            if tries and pending is not None:
                failed.append(pending)
            tries += 1
            pending = None
    if running and tries > 1:
        # A retried flow's span ends as its next try starts: that try's end, and its outcome, are not on it.
        tries -= 1
        if failed:
            failed.pop()
    return tries, failed, message
