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

The run id is Prefect's run id, and each try Prefect made is a run of its own: attempt 1, 2, ... of that run id and
job name, all with the flow run as their parent. Prefect keeps one span over a task run's tries, and its task
engine (``prefect/task_engine.py``) marks them with the run's states: each try starts with a state of type
``RUNNING`` (``Running`` from ``begin_run``, ``Retrying`` for a retry: ``handle_retry`` sets it at once for a retry
without delay, ``wait_until_ready`` after the delay), and a try that fails while retries are left records its
exception (``handle_exception`` calls ``RunTelemetry.record_exception`` before ``handle_retry``) and then enters
``AwaitingRetry`` (type ``SCHEDULED``, a retry with a delay) or ``Retrying``. So a span with the events
``Running``, ``exception``, ``AwaitingRetry``, ``Retrying``, ``Completed`` is two runs:

- attempt 1, FAILED, from the span's start to its ``AwaitingRetry`` (else the next try's ``Retrying``) event, with
  the error of its own ``exception`` event (type and message; a try that failed by a timeout or a returned Failed
  state records none, and has no error text) or of its state message when it has one;
- attempt 2, from its ``Retrying`` event to the span's end, with the span's status (a failed last try's error
  message is Prefect's terminal state message: the span's own description may be a bare ``Run failed``), and the
  run's records and datasets (``dataset.name``, ``job.records_processed``, and the ``dataset.update`` events of
  that try), so a dataset is updated once, by the try that wrote it.

Each try keeps the events of its own time (its ``dataset.check`` events are its checks). A span without a retry is
one run, attempt 1, from its start to its end.

A retried *flow* run's span (Prefect 3.9.1) ends when its first try fails: ``flow_engine.py``'s
``handle_exception`` proposes Failed, the server answers ``AwaitingRetry``, the engine enters ``Running`` again and
only then records the exception and ends the span (ERROR ``Run failed``); no span tells of the later tries. A try
whose end its span does not show is not a run: such a span is attempt 1, FAILED, with that try's error (the
``AwaitingRetry`` state's message), and the later tries are not recorded.
"""

from __future__ import annotations

import dataclasses
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
JOB_NAME_TAG = "job.name:"
"""The prefix of the Prefect tag that names a flow's job: ``job.name:<name>``."""

# Prefect's task run names: f"{task.name}-{key[:3]}" (hex), f"{task.name}-{key}" (a counter, or a UUID).
_TASK_RUN_SUFFIX = re.compile(r"-(?:[0-9a-f]{3}|[0-9]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
# A try starts with a state of type RUNNING: "Running" for the first, "Retrying" for each retry.
_TRY_STATE_TYPE = "RUNNING"
# A failed try waiting for its retry's delay: "AwaitingRetry".
_AWAITING_STATE_TYPE = "SCHEDULED"
_LAST_TRY_ONLY = frozenset((semconv.DATASET_NAME, semconv.JOB_RECORDS_PROCESSED, semconv.ERROR_TYPE))


@takes_only_spans_with(PREFECT_RUN_TYPE)
def prefect_profile(record: SpanRecord) -> SpanRecord | list[SpanRecord] | None:
    """Prefect 3's flow-run and task-run spans as job runs, one per try (see the module's docstring)."""
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
    contract: dict[str, Any] = {semconv.JOB_NAME: name, semconv.JOB_RUN_ID: given(a.get(PREFECT_RUN_ID))}
    starts = _try_starts(record.events)
    if len(starts) <= 1:
        message = _state_message(record.events) if record.status_code == STATUS_CODE_ERROR else None
        return rewritten(record, contract, status_message=message)
    return [_try(record, contract, starts, number) for number in range(1, len(starts) + 1)]


def _try_starts(events: Sequence[Event]) -> list[int]:
    """The indices in ``events`` of the state events that start a try (type ``RUNNING``) whose end the span shows:
    a retried flow's span ends in its next try's ``Running`` state, of which it shows no end."""
    starts = []
    running = False  # whether the last state seen started a try
    for index, (_, _, attributes) in enumerate(events):
        state_type = attributes.get(PREFECT_STATE_TYPE)
        if state_type is not None:
            running = state_type == _TRY_STATE_TYPE
            if running:
                starts.append(index)
    if running and len(starts) > 1:
        starts.pop()
    return starts


def _try(record: SpanRecord, contract: Mapping[str, Any], starts: Sequence[int], number: int) -> SpanRecord:
    """Try ``number`` (from 1) of a span whose tries start at the events ``starts``: its events, times and status
    (an earlier try failed; the last has the span's)."""
    events = record.events
    begin = 0 if number == 1 else starts[number - 1]  # the first try also holds the events before its Running
    tried = {**contract, semconv.JOB_RUN_ATTEMPT: number}
    if number == len(starts):
        message = _state_message(events[begin:]) if record.status_code == STATUS_CODE_ERROR else None
        last = rewritten(record, tried, status_message=message)
        return dataclasses.replace(last, start_time_ns=events[begin][1], events=events[begin:])
    mine = events[begin : starts[number]]
    waits = [time for _, time, attributes in mine if attributes.get(PREFECT_STATE_TYPE) == _AWAITING_STATE_TYPE]
    earlier = rewritten(record, tried)
    return dataclasses.replace(
        earlier,
        # The run's records and datasets are the last try's (it wrote them): a failed try must not update them too.
        attributes={key: value for key, value in earlier.attributes.items() if key not in _LAST_TRY_ONLY},
        start_time_ns=record.start_time_ns if number == 1 else events[begin][1],
        end_time_ns=waits[0] if waits else events[starts[number]][1],
        status_code=STATUS_CODE_ERROR,
        status_message=_state_message(mine) or "",
        events=mine,
    )


def _state_message(events: Sequence[Event]) -> str | None:
    """The last non-empty Prefect state message of ``events`` (a failed run's is its error text), or None."""
    for _, _, attributes in reversed(events):
        message = given(attributes.get(PREFECT_STATE_MESSAGE))
        if message:
            return str(message)
    return None


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
