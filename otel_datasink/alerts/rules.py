"""The rules file: who owns which job or dataset, where to notify, how severe, and the thresholds.

A TOML file of ``[[rule]]`` tables, checked when it is loaded with the declarative checker of the mapping files
(:mod:`otel_datasink.profiles.mapping_file`), so a mistake raises :class:`RulesError` naming the key and the line
it is on. For each condition the first rule that selects it applies (write the specific rules first); a condition
no rule selects gets the defaults, so no file at all means every condition, to the ``--notify`` targets::

    [[rule]]
    job = "ingest_*"                  # a glob on the job name (or dataset = "orders*"; neither: everything)
    owner = "team-payments*"          # a glob on the owners the data records (job.owners); with job/dataset: both
    kinds = ["failing_job", "missing_run"]   # default: every kind
    owners = ["@data-eng", "oncall@example.com"]
    notify = ["slack://T000/B000/XXXX"]      # default: the --notify targets
    severity = "critical"             # default: critical for failing_job and missing_run, warning, info for volume
    failure_streak = 3                # failing_job: consecutive failures before it fires (default 1)
    expected_every = "1h"             # missing_run: a job not started within this is missing
    min_z = 4.0                       # volume_anomaly: fire only beyond this |z| (default: the view's)
    volume_window = "24h"             # volume_anomaly: anomalous runs that ended within this (default 24h)
    suppress = "4h"                   # re-notify an incident still open only after this (default 4h)
    group = "digest"                  # "incident": a message each (default); "digest": one per target and run
    enabled = false                   # mute what the rule selects
    deadline = "07:00"                # SLA: a successful run (dataset: update) by 07:00 daily ("mon 07:00": weekly)
    timezone = "Europe/Berlin"        # the deadline's wall clock (default UTC; daylight saving time included)
    within = "2h"                     # SLA: each run succeeds within this of its logical date (else its start)
    max_duration = "45m"              # SLA: no run of the job takes longer than this

A ``job`` rule also selects the ``stale_dataset`` conditions of the datasets its jobs last updated, and the
``failing_check`` conditions of the checks its jobs ran; a ``dataset`` rule selects the ``failing_check`` conditions
of its datasets. An ``owner`` rule selects what one of the owners recorded in the data matches: a job's are those
of its latest run that names any (``job_runs_latest.owners``), a dataset's those of its latest update that names any
(``dataset_status_latest.owners``), else its last writer's; a check's are its dataset's, else its job's.

The SLA keys (``deadline``, ``within``, ``max_duration``) make a rule an SLA of what it selects, whatever its
``kinds``: each subject takes each of them from the first enabled rule selecting it that sets it; their verdicts are
rows of ``sla_results`` and their alerts ``missed_deadline`` and ``deadline_at_risk`` (:mod:`.sla`).
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from otel_datasink.alerts.deadlines import Deadline, parse_deadline, parse_timezone
from otel_datasink.alerts.model import KINDS, SEVERITIES
from otel_datasink.tomlcheck import Invalid, Table, optional, read_rule_file, string

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - exercised on Python 3.10 only
    pass

JOB_KINDS = ("failing_job", "hung_run", "volume_anomaly", "missing_run")
"""Kinds whose subject is a job; ``stale_dataset``'s is a dataset."""
DEFAULT_SEVERITY = {
    "stale_dataset": "warning",
    "failing_job": "critical",
    "hung_run": "warning",
    "volume_anomaly": "info",
    "missing_run": "critical",
    "failing_check": "warning",
    "missed_deadline": "critical",
    "deadline_at_risk": "warning",
}
DEFAULT_SUPPRESS = datetime.timedelta(hours=4)
DEFAULT_VOLUME_WINDOW = datetime.timedelta(hours=24)
GROUPS = ("incident", "digest")


class RulesError(ValueError):
    """A rules file that cannot be read or is wrong; the message names the file, the line and the key."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """One ``[[rule]]``: what it selects and what it says of the conditions it selects. None: the default."""

    job: str | None = None
    dataset: str | None = None
    owner: str | None = None
    kinds: tuple[str, ...] = KINDS
    owners: tuple[str, ...] = ()
    notify: tuple[str, ...] | None = None
    severity: str | None = None
    failure_streak: int = 1
    expected_every: datetime.timedelta | None = None
    min_z: float | None = None
    volume_window: datetime.timedelta = DEFAULT_VOLUME_WINDOW
    suppress: datetime.timedelta = DEFAULT_SUPPRESS
    group: str = "incident"
    enabled: bool = True
    deadline: Deadline | None = None
    within: datetime.timedelta | None = None
    max_duration: datetime.timedelta | None = None

    def selects(
        self,
        kind: str,
        subject: str,
        job: str | None = None,
        owners: Sequence[str] = (),
        dataset: str | None = None,
    ) -> bool:
        """Whether the rule applies to ``kind`` on ``subject``; ``job`` is the job that last updated a dataset (or
        ran a check), ``owners`` those the data records for the subject, ``dataset`` a check's dataset (default:
        the subject of a dataset kind)."""
        return kind in self.kinds and self.covers(kind, subject, job, owners, dataset)

    def covers(
        self,
        kind: str,
        subject: str,
        job: str | None = None,
        owners: Sequence[str] = (),
        dataset: str | None = None,
    ) -> bool:
        """:meth:`selects` but for ``kinds``: whether the rule's globs select the subject (its SLA keys apply)."""
        if self.owner is not None and not any(fnmatch.fnmatchcase(owner, self.owner) for owner in owners):
            return False
        if self.job is not None:
            name = subject if kind in JOB_KINDS else job
            return name is not None and fnmatch.fnmatchcase(name, self.job)
        if self.dataset is not None:
            return kind not in JOB_KINDS and fnmatch.fnmatchcase(dataset or subject, self.dataset)
        return True

    def severity_of(self, kind: str) -> str:
        return self.severity or DEFAULT_SEVERITY[kind]


DEFAULT_RULE = Rule()


@dataclasses.dataclass(frozen=True)
class Rules:
    """The rules of a file (or none), and the ``--notify`` targets of the rules that name none."""

    rules: tuple[Rule, ...] = ()
    default_targets: tuple[str, ...] = ()
    path: str | None = None

    def rule_for(
        self,
        kind: str,
        subject: str,
        job: str | None = None,
        owners: Sequence[str] = (),
        dataset: str | None = None,
    ) -> Rule:
        """The first rule selecting ``kind`` on ``subject`` (see :meth:`Rule.selects`), else the defaults."""
        return next((rule for rule in self.rules if rule.selects(kind, subject, job, owners, dataset)), DEFAULT_RULE)

    def targets(self, rule: Rule) -> tuple[str, ...]:
        return rule.notify if rule.notify is not None else self.default_targets

    def all_targets(self) -> tuple[str, ...]:
        """Every target the configuration names (a resolved incident's targets are among them)."""
        named = [*self.default_targets, *(t for rule in self.rules for t in rule.notify or ())]
        return tuple(dict.fromkeys(named))

    def expected_jobs(self) -> list[tuple[str, Rule]]:
        """The rules with ``expected_every`` for ``missing_run``, as (job glob, rule)."""
        return [
            (rule.job or "*", rule)
            for rule in self.rules
            if rule.expected_every is not None and "missing_run" in rule.kinds and rule.enabled
        ]

    def with_targets(self, targets: Sequence[str]) -> Rules:
        return dataclasses.replace(self, default_targets=tuple(targets))


# --- the readers of the values ------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_HANDLE = re.compile(r"@[A-Za-z0-9][A-Za-z0-9._/-]*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def parse_duration(value: Any) -> datetime.timedelta:
    """``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"``, ``"1w"`` as a positive timedelta; :class:`Invalid` else."""
    text = value.strip() if isinstance(value, str) else ""
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise Invalid('must be a duration such as "90s", "15m", "1h30m", "2d" or "1w"')
    seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise Invalid("must be a duration above zero")
    return datetime.timedelta(seconds=seconds)


def _glob(value: Any) -> str:
    text = string("must be a glob (a string such as 'ingest_*')")(value)
    # fnmatch takes any text; an unclosed [ is a typo that would match nothing the user meant.
    if not text or text.count("[") != text.count("]"):
        raise Invalid("must be a glob such as 'ingest_*' (non-empty, brackets closed)")
    return text


def _list_of(check: Any, message: str) -> Any:
    def read(value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise Invalid(message)
        for item in items:
            check(item)
        return tuple(items)

    return read


def _kind(item: str) -> None:
    if item not in KINDS:
        raise Invalid(f"unknown kind {item!r} (expected one of {', '.join(KINDS)})")


def _owner(item: str) -> None:
    if not (_HANDLE.fullmatch(item) or _EMAIL.fullmatch(item)):
        raise Invalid(f"{item!r} is neither an @handle nor an e-mail address")


def _target(item: str) -> None:
    if not _URL.fullmatch(item):
        raise Invalid(f"{item!r} is not a URL (scheme://...: an Apprise URL or an Alertmanager URL)")


def _choice(choices: Sequence[str]) -> Any:
    def read(value: Any) -> str:
        if value not in choices:
            raise Invalid(f"must be one of {', '.join(choices)}")
        return str(value)

    return read


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid("must be a whole number of at least 1")
    return value


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise Invalid("must be a number above zero")
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


def _build_rule(read: dict[str, Any]) -> Rule:
    if read["job"] is not None and read["dataset"] is not None:
        raise Invalid("give job or dataset, not both", "dataset")
    if read["expected_every"] is not None and read["dataset"] is not None:
        raise Invalid("expected_every is for jobs: select them with job = ...", "expected_every")
    for key in ("within", "max_duration"):
        if read[key] is not None and read["dataset"] is not None:
            raise Invalid(f"{key} is for runs: select their jobs with job = ... or owner = ...", key)
    timezone = read.pop("timezone")
    if timezone is not None:
        if read["deadline"] is None:
            raise Invalid("timezone is the deadline's: give deadline = ... too", "timezone")
        read["deadline"] = dataclasses.replace(read["deadline"], timezone=timezone)
    return Rule(**{key: value for key, value in read.items() if value is not None})


_RULE = Table(
    keys={
        "job": optional(_glob),
        "dataset": optional(_glob),
        "owner": optional(_glob),
        "kinds": optional(_list_of(_kind, "must be a list of kinds")),
        "owners": optional(_list_of(_owner, "must be a list of @handles and e-mail addresses")),
        "notify": optional(_list_of(_target, "must be a list of URLs")),
        "severity": optional(_choice(SEVERITIES)),
        "failure_streak": optional(_positive_int),
        "expected_every": optional(parse_duration),
        "min_z": optional(_positive_number),
        "volume_window": optional(parse_duration),
        "suppress": optional(parse_duration),
        "group": optional(_choice(GROUPS)),
        "enabled": optional(_boolean),
        "deadline": optional(parse_deadline),
        "timezone": optional(parse_timezone),
        "within": optional(parse_duration),
        "max_duration": optional(parse_duration),
    },
    build=_build_rule,
)


def load_rules(path: str | os.PathLike, default_targets: Sequence[str] = ()) -> Rules:
    """Reads and checks a rules file; :class:`RulesError` naming the line and key of a mistake."""
    path = os.fspath(path)
    rules = read_rule_file(path, _RULE, "rules file", RulesError)
    return Rules(tuple(rules), tuple(default_targets), path)
