"""User mapping files: a TOML file of ``[[rule]]`` tables, each selecting spans and saying where each column comes from.

The file is checked when it is loaded against a declarative description of its tables (:data:`_RULE`, read by
:mod:`otel_datasink.tomlcheck`): a mistake raises :class:`ProfileError` naming the key and the line it is on.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Mapping
from typing import Any

from otel_datasink import semconv
from otel_datasink.mapping import STATUS_CODE_ERROR, SpanRecord, is_job_span
from otel_datasink.profiles.base import ProfileError, rewritten
from otel_datasink.tomlcheck import Invalid, Table, optional, read_rule_file, string

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


# --- what a mapping file becomes -------------------------------------------------------------------------


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
    failed_when: tuple[_Source, frozenset[str]] | None

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
            source, values = self.failed_when
            value = source.read(record)
            if value is not None and str(value) in values:
                status_code = STATUS_CODE_ERROR
                if contract.get(semconv.ERROR_TYPE) is None:
                    contract[semconv.ERROR_TYPE] = str(value)
        return rewritten(record, contract, status_code=status_code)


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


# --- the file's description: tables of keys, each read (and checked) by a reader ------------------------


def _regex(value: Any) -> re.Pattern[str]:
    try:
        return re.compile(string("must be a string")(value))
    except re.error as error:
        raise Invalid(f"not a valid regular expression: {error}") from None


def _attribute_names(value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise Invalid("must be a list of attribute names")
    return tuple(names)


def _resource_equals(value: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping):
        raise Invalid("must be a table of resource attribute = value")
    return tuple(value.items())


_SOURCES = ("attribute", "resource", "constant")

_SOURCE = Table(
    keys={
        "attribute": optional(string("must be an attribute name (a string)")),
        "resource": optional(string("must be an attribute name (a string)")),
        "constant": lambda value: value,
    },
    build=lambda read: next(_Source(kind, read[kind]) for kind in _SOURCES if read[kind] is not None),
    not_table='must be a table such as { attribute = "name" }',
    unknown="unknown source (expected one of {expected})",
    exactly_one=True,
)
"""Where a value comes from: ``{ attribute = "name" }``, ``{ resource = "name" }`` or ``{ constant = value }``."""

_FAILED_WHEN_FORM = "must be a table with a source and values = [...]"


def _failed_when(value: Any) -> tuple[_Source, frozenset[str]]:
    if not isinstance(value, Mapping) or not isinstance(value.get("values"), list) or not value["values"]:
        raise Invalid(_FAILED_WHEN_FORM)
    return _SOURCE({key: item for key, item in value.items() if key != "values"}), frozenset(map(str, value["values"]))


_SELECT = Table(
    keys={
        "name": optional(string("must be a string (a glob such as 'etl *')")),
        "name_regex": optional(_regex),
        "has_attributes": optional(_attribute_names, ()),
        "resource": optional(_resource_equals, ()),
    },
)

_COLUMNS = Table(
    keys={column: optional(_SOURCE) for column in COLUMN_ATTRIBUTES},
    build=lambda read: tuple((column, source) for column, source in read.items() if source is not None),
    required={"job_name": "columns.job_name is required"},
    not_table="missing: a rule must map at least columns.job_name",
    unknown="unknown column (expected one of {expected})",
    may_be_empty=False,
)

_RULE = Table(
    keys={"select": optional(_SELECT, {}), "columns": _COLUMNS, "failed_when": optional(_failed_when)},
    build=lambda read: _Rule(
        name_glob=read["select"].get("name"),
        name_regex=read["select"].get("name_regex"),
        has_attributes=read["select"].get("has_attributes", ()),
        resource_equals=read["select"].get("resource", ()),
        columns=read["columns"],
        failed_when=read["failed_when"],
    ),
)


# --- loading -----------------------------------------------------------------------------------------------


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
    return MappingFileProfile(os.fspath(path), read_rule_file(path, _RULE, "mapping file", ProfileError))
