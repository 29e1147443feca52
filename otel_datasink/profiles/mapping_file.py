"""User mapping files: a TOML file of ``[[rule]]`` tables, each selecting spans and saying where each column comes from.

The file is checked when it is loaded against a declarative description of its tables (:data:`_FILE`): each
table lists its keys with the reader of each value, and a mistake raises :class:`ProfileError` naming the key
and the line it is on. Within a table, an unknown key is reported first: a misspelt required key is both
unknown and missing, and the unknown one is the mistake to fix.
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
from otel_datasink.mapping import STATUS_CODE_ERROR, SpanRecord, is_job_span
from otel_datasink.profiles.base import ProfileError, rewritten

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

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


class _Invalid(Exception):
    """A value its key does not take; ``path`` is the key below the one being read ("" for that key itself)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def under(self, key: str) -> _Invalid:
        """The same problem, seen from the table holding ``key`` (``[n]`` for an item of an array of tables)."""
        below = "" if not self.path else self.path if self.path.startswith("[") else f".{self.path}"
        return _Invalid(self.message, f"{key}{below}")


Reader = Callable[[Any], Any]
"""A key's value (None when the key is absent) -> what it becomes; raises :class:`_Invalid`."""


def _optional(reader: Reader, default: Any = None) -> Reader:
    """``reader`` for a key that may be absent: ``default`` then."""
    return lambda value: default if value is None else reader(value)


@dataclasses.dataclass(frozen=True)
class _Table:
    """A TOML table: its keys with their readers, what it becomes, and how each mistake in it is worded."""

    keys: Mapping[str, Reader]
    build: Callable[[dict[str, Any]], Any] = dict
    """The values read, every key of :attr:`keys` present (None if absent) -> what the table becomes."""
    required: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Keys that must be present -> the message when one is not (reported at the table's key)."""
    not_table: str = "must be a table"
    """The message for a value that is not a table (or an empty one, unless ``may_be_empty``)."""
    unknown: str = "unknown key (expected one of {expected})"
    """The message for a key not in :attr:`keys`; ``{expected}`` is replaced by their names."""
    may_be_empty: bool = True
    exactly_one: bool = False
    """Whether the table holds exactly one of its keys (a source: attribute, resource or constant)."""

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, Mapping) or not (value or self.may_be_empty):
            raise _Invalid(self.not_table)
        missing = [message for key, message in self.required.items() if key not in value]
        unknown = sorted(set(value) - set(self.keys))
        if unknown:  # before the missing keys: a misspelt key is both, and the misspelling is what to fix
            message = self.unknown.format(expected=", ".join(self.keys))
            raise _Invalid("; ".join([message, *missing]), unknown[0])
        if missing:
            raise _Invalid(missing[0])
        if self.exactly_one and len(value) != 1:
            raise _Invalid(f"needs exactly one of {', '.join(self.keys)}")
        read = {}
        for key in [*value, *(key for key in self.keys if key not in value)]:  # the file's order, then the rest
            try:
                read[key] = self.keys[key](value.get(key))
            except _Invalid as error:
                raise error.under(key) from None
        return self.build(read)


def _string(message: str) -> Reader:
    def read(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(message)
        return value

    return read


def _regex(value: Any) -> re.Pattern[str]:
    try:
        return re.compile(_string("must be a string")(value))
    except re.error as error:
        raise _Invalid(f"not a valid regular expression: {error}") from None


def _attribute_names(value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise _Invalid("must be a list of attribute names")
    return tuple(names)


def _resource_equals(value: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping):
        raise _Invalid("must be a table of resource attribute = value")
    return tuple(value.items())


_SOURCES = ("attribute", "resource", "constant")

_SOURCE = _Table(
    keys={
        "attribute": _optional(_string("must be an attribute name (a string)")),
        "resource": _optional(_string("must be an attribute name (a string)")),
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
        raise _Invalid(_FAILED_WHEN_FORM)
    return _SOURCE({key: item for key, item in value.items() if key != "values"}), frozenset(map(str, value["values"]))


_SELECT = _Table(
    keys={
        "name": _optional(_string("must be a string (a glob such as 'etl *')")),
        "name_regex": _optional(_regex),
        "has_attributes": _optional(_attribute_names, ()),
        "resource": _optional(_resource_equals, ()),
    },
)

_COLUMNS = _Table(
    keys={column: _optional(_SOURCE) for column in COLUMN_ATTRIBUTES},
    build=lambda read: tuple((column, source) for column, source in read.items() if source is not None),
    required={"job_name": "columns.job_name is required"},
    not_table="missing: a rule must map at least columns.job_name",
    unknown="unknown column (expected one of {expected})",
    may_be_empty=False,
)

_RULE = _Table(
    keys={"select": _optional(_SELECT, {}), "columns": _COLUMNS, "failed_when": _optional(_failed_when)},
    build=lambda read: _Rule(
        name_glob=read["select"].get("name"),
        name_regex=read["select"].get("name_regex"),
        has_attributes=read["select"].get("has_attributes", ()),
        resource_equals=read["select"].get("resource", ()),
        columns=read["columns"],
        failed_when=read["failed_when"],
    ),
)


def _rules(value: Any) -> list[_Rule]:
    if not isinstance(value, list) or not value:
        raise _Invalid("no [[rule]] table: a mapping file needs at least one")
    rules = []
    for index, rule in enumerate(value):
        try:
            rules.append(_RULE(rule))
        except _Invalid as error:
            raise error.under(f"[{index + 1}]") from None
    return rules


_FILE = _Table(
    keys={"rule": _rules},
    build=lambda read: read["rule"],
    unknown="unknown key (a mapping file has [[rule]] tables only)",
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
    try:
        rules = _FILE(document)
    except _Invalid as error:
        line = _line_of(text.splitlines(), error.path)
        where = f", line {line}" if line is not None else ""
        raise ProfileError(f"mapping file {path}{where}: {error.path}: {error.message}") from None
    return MappingFileProfile(path, rules)


_RULE_START = re.compile(r"\s*\[\[\s*rule\s*\]\]")
_RULE_KEY = re.compile(r"rule\[(\d+)\]")


def _line_of(lines: list[str], key: str) -> int | None:
    """The line (1-based) of a dotted key such as ``rule[2].select.name_regex``, looked up within its rule."""
    start, end, rule = 0, len(lines), _RULE_KEY.match(key)
    if rule is not None:
        # The lines of the rule's own [[rule]] table.
        starts = [index for index, line in enumerate(lines) if _RULE_START.match(line)]
        number = int(rule.group(1))
        if number <= len(starts):
            start = starts[number - 1]
            end = starts[number] if number < len(starts) else len(lines)
    # Try the most specific part of the dotted key first, then its parents.
    parts = [part for part in re.split(r"\.(?![^\[]*\])", key) if part and not part.startswith("rule[")]
    for part in reversed(parts):
        bare = re.escape(part.strip('"'))
        pattern = re.compile(rf'(^|[\s{{,.\[])"?{bare}"?\s*(=|\]|\.)')
        for index in range(start, end):
            if pattern.search(lines[index]):
                return index + 1
    return start + 1 if rule is not None and start < len(lines) else None
