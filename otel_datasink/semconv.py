"""The span conventions otel-datasink reads: one constant per attribute and event name.

A span is a job span when it carries :data:`JOB_NAME` (or when a mapping profile says so).
"""

JOB_NAME = "job.name"
"""string: the job's identity, e.g. ``ingest_orders``."""

JOB_TYPE = "job.type"
"""string: ``batch`` (default) or ``streaming`` (one span per micro-batch or checkpoint)."""

JOB_RUN_ID = "job.run.id"
"""string, optional: the run's id; by default derived from the trace id and span id."""

JOB_RUN_ATTEMPT = "job.run.attempt"
"""int: retry number, 1 by default."""

JOB_RUN_LOGICAL_DATE = "job.run.logical_date"
"""ISO 8601 string or int (epoch ns): the scheduled/nominal time the run is for (backfills)."""

JOB_RUN_TYPE = "job.run.type"
"""string: ``scheduled``, ``manual``, ``backfill`` or ``replay``."""

JOB_RECORDS_PROCESSED = "job.records_processed"
"""int: records the run processed."""

JOB_OWNERS = "job.owners"
"""string[]: the job's owners (team names, ``@handles``, e-mails); a single string is one owner."""

JOB_INPUTS = "job.inputs"
"""string[]: the datasets the run read (lineage); a single string is one dataset."""

JOB_PARENT_NAME = "job.parent.name"
"""string: the job of the run this run belongs to (a pipeline or DAG run); by default the nearest enclosing job
span's."""

JOB_PARENT_RUN_ID = "job.parent.run.id"
"""string: the run id of the run this run belongs to; by default the nearest enclosing job span's."""

DATASET_NAME = "dataset.name"
"""string: the dataset the run affects (its primary output); also on :data:`DATASET_UPDATE_EVENT`."""

DATASET_UPDATE_EVENT = "dataset.update"
"""Span event name: one update of a dataset by the run; any number per job span."""

DATASET_RECORDS_WRITTEN = "dataset.records_written"
"""int, on :data:`DATASET_UPDATE_EVENT`: records written by this update."""

DATASET_RECORD_COUNT = "dataset.record_count"
"""int, on :data:`DATASET_UPDATE_EVENT`: total records of the dataset after the update."""

DATASET_WATERMARK = "dataset.watermark"
"""ISO 8601 string or int (epoch ns), on :data:`DATASET_UPDATE_EVENT`: time of the newest data."""

DATASET_FRESHNESS_SLA_MINUTES = "dataset.freshness_sla_minutes"
"""int, on :data:`DATASET_UPDATE_EVENT`: minutes after which the dataset counts as stale."""

DATASET_CHECK_EVENT = "dataset.check"
"""Span event name: one result of a data-quality check of a dataset (its :data:`DATASET_NAME`, else the run's);
any number per job span."""

CHECK_NAME = "check.name"
"""string, on :data:`DATASET_CHECK_EVENT`, required: the check's name, unique per dataset (``not_null_orders_id``)."""

CHECK_PASSED = "check.passed"
"""bool, on :data:`DATASET_CHECK_EVENT`, required: whether the check passed (``"true"``/``"false"``, 1/0 read too)."""

CHECK_ASSERTION = "check.assertion"
"""string, on :data:`DATASET_CHECK_EVENT`: the kind of check (``not_null``, ``unique``, ``row_count`` ...)."""

CHECK_COLUMN = "check.column"
"""string, on :data:`DATASET_CHECK_EVENT`: the column checked; none for a check of the whole dataset."""

CHECK_ACTUAL = "check.actual"
"""any, on :data:`DATASET_CHECK_EVENT`: the value the check observed (kept as text)."""

CHECK_EXPECTED = "check.expected"
"""any, on :data:`DATASET_CHECK_EVENT`: the value or threshold the check expected (kept as text)."""

CHECK_SEVERITY = "check.severity"
"""string, on :data:`DATASET_CHECK_EVENT`: the check's configured severity (``error``, ``warn``)."""

JOB_TYPES = ("batch", "streaming")
RUN_TYPES = ("scheduled", "manual", "backfill", "replay")

# Standard OpenTelemetry names the mapping reads too.
ERROR_TYPE = "error.type"
EXCEPTION_EVENT = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_ESCAPED = "exception.escaped"
SERVICE_NAME = "service.name"

# Reserved keys of the ``attributes`` column: set by otel-datasink on a row whose span the span limits cut
# (``max_attributes``, ``max_events``, ``max_attribute_length``), after OpenTelemetry's ``dropped_*_count``.
DROPPED_ATTRIBUTES_COUNT = "otel_datasink.dropped_attributes_count"
"""Attributes of the span dropped past ``max_attributes``."""
DROPPED_EVENTS_COUNT = "otel_datasink.dropped_events_count"
"""Events of the span dropped past ``max_events``."""
TRUNCATED_VALUES_COUNT = "otel_datasink.truncated_values_count"
"""Values of the row's ``attributes`` cut to ``max_attribute_length`` characters."""
