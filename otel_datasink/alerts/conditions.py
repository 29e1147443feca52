"""What holds now: the conditions of the views (and of ``job_runs`` for runs that never came), with their rules.

Each kind reads one view: ``stale_dataset`` a row of ``stale_datasets``; ``failing_job`` a job of
``recurring_failures`` whose ``current_streak`` reaches its rule's ``failure_streak``; ``hung_run`` a job with
rows in ``hung_runs``; ``volume_anomaly`` a job with a row of ``volume_anomalies`` that ended within its rule's
``volume_window``; ``missing_run`` a job with ``expected_every`` whose latest start is older than that (or that
never started, when its rule names it without a glob); ``failing_check`` a check of ``failing_checks`` (its subject
``<check> on <dataset>``, resolved once the check passes again). One condition per (kind, subject): the incident's
key. Each condition's facts carry ``owned_by``, the owners the data records for its subject, which ``owner`` rules
select by; stale datasets held up by an upstream incident are grouped under it (:mod:`.causes`).
"""

from __future__ import annotations

import datetime
import string
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from otel_datasink.alerts.causes import hold_up
from otel_datasink.alerts.escaping import fill_link
from otel_datasink.alerts.model import KINDS, Condition, age
from otel_datasink.alerts.rules import DEFAULT_VOLUME_WINDOW, JOB_KINDS, Rule, Rules
from otel_datasink.alerts.sla import Judgement, at_risk_summary, missed_summary

if TYPE_CHECKING:
    import duckdb

LINK_FIELDS = ("trace_id", "run_id", "job_name", "span_id", "dataset")
"""The fields a ``--trace-url`` or ``--run-url`` template may use."""


def check_template(template: str | None, flag: str) -> None:
    """ValueError naming ``flag`` when ``template`` uses a field other than :data:`LINK_FIELDS`."""
    if template is None:
        return
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise ValueError(f"{flag}: not a template: {error}") from None
    unknown = [name for name in fields if name not in LINK_FIELDS]
    if unknown:
        raise ValueError(f"{flag}: unknown field {{{unknown[0]}}} (expected {', '.join(LINK_FIELDS)})")


def evaluate(
    con: duckdb.DuckDBPyConnection,
    rules: Rules,
    now: datetime.datetime,
    *,
    trace_url: str | None = None,
    run_url: str | None = None,
    judged: Judgement | None = None,
) -> list[Condition]:
    """The conditions that hold at ``now`` (UTC), each with its rule's severity, owners, targets, suppression and
    grouping, and its links; muted ones (``enabled = false``) left out. Ordered by kind, then subject. ``judged``:
    the SLAs judged at ``now`` (:func:`.sla.judge`), whose ``missed_deadline`` and ``deadline_at_risk`` they are."""
    links = _Links(trace_url, run_url)
    job_owners = _job_owners(con)
    found: list[Condition] = []
    for kind, finder in {**_FINDERS, **(judged.finders() if judged is not None else {})}.items():
        for subject, job, facts in finder(con, rules, now):
            # A subject's own owners (a dataset's, a check's dataset's), else its job's.
            facts["owned_by"] = list(facts.get("owned_by") or job_owners.get(job or "") or ()) or None
            rule = rules.rule_for(kind, subject, job, facts["owned_by"] or (), facts.get("dataset"))
            if not rule.enabled or not _passes(kind, rule, facts, now):
                continue
            found.append(_condition(kind, subject, rule, rules, facts, links))
    return sorted(hold_up(found), key=lambda c: (KINDS.index(c.kind), c.subject))


Facts = dict[str, Any]
Finder = Callable[["duckdb.DuckDBPyConnection", Rules, datetime.datetime], Iterator[tuple[str, "str | None", Facts]]]


def _passes(kind: str, rule: Rule, facts: Facts, now: datetime.datetime) -> bool:
    """The rule's thresholds: a failure streak, a z-score, the window of volume anomalies."""
    if kind == "failing_job":
        return bool(facts["current_streak"] >= rule.failure_streak)
    if kind == "volume_anomaly":
        if _utc(facts["end_time"]) < now - rule.volume_window:
            return False
        z = facts.get("z_score")
        return rule.min_z is None or z is None or abs(z) >= rule.min_z
    return True


def _rows(con: duckdb.DuckDBPyConnection, sql: str, *parameters: Any) -> list[Facts]:
    cursor = con.execute(sql, list(parameters))
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _job_owners(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Each job's owners: those of its latest run naming any (``job_runs_latest.owners``)."""
    sql = """
        SELECT job_name, arg_max(owners, event_time) AS owners
        FROM job_runs_latest WHERE len(owners) > 0 GROUP BY job_name
    """
    return {job: owners for job, owners in con.execute(sql).fetchall()}


def _stale_datasets(con: duckdb.DuckDBPyConnection, rules: Rules, now: datetime.datetime) -> Iterator[Any]:
    # The trace of the run that last updated the dataset, for the trace link (its latest attempt).
    sql = """
        SELECT s.dataset, s.freshness_minutes, s.freshness_sla_minutes, s.data_as_of, s.last_success_at,
               s.last_status, s.last_update_at, s.last_job_name AS job_name, s.last_run_id AS run_id, r.trace_id,
               s.owners AS owned_by, s.root_cause_dataset, s.root_cause_job, s.root_cause, s.hops AS root_cause_hops
        FROM stale_datasets AS s
        LEFT JOIN job_runs_latest AS r ON r.job_name = s.last_job_name AND r.run_id = s.last_run_id
        QUALIFY row_number() OVER (PARTITION BY s.dataset ORDER BY r.attempt DESC NULLS LAST) = 1
        ORDER BY s.dataset
    """
    for row in _rows(con, sql):
        yield row["dataset"], row["job_name"], row


def _failing_jobs(con: duckdb.DuckDBPyConnection, rules: Rules, now: datetime.datetime) -> Iterator[Any]:
    # The streak's first failure (its "since") and the latest failure's run and trace (its links) come from
    # job_runs_latest: recurring_failures keeps only counts and the last error.
    sql = """
        WITH failed AS (
            SELECT r.job_name, r.end_time, r.run_id, r.trace_id, r.span_id,
                   row_number() OVER (PARTITION BY r.job_name ORDER BY r.end_time DESC, r.attempt DESC) AS recency
            FROM job_runs_latest AS r JOIN recurring_failures AS f ON f.job_name = r.job_name
            WHERE r.status = 'FAILED' AND r.end_time > coalesce(f.last_success_at, TIMESTAMPTZ '1970-01-01 00:00:00+00')
        ),
        streaks AS (
            SELECT job_name, min(end_time) AS streak_since FROM failed GROUP BY job_name
        )
        SELECT f.job_name, f.current_streak, f.recent_failures, f.recent_runs, f.last_failure_at,
               f.last_error_type, f.last_error_message, f.last_success_at, s.streak_since,
               l.run_id, l.trace_id, l.span_id
        FROM recurring_failures AS f
        LEFT JOIN streaks AS s ON s.job_name = f.job_name
        LEFT JOIN failed AS l ON l.job_name = f.job_name AND l.recency = 1
        WHERE f.current_streak > 0
        ORDER BY f.job_name
    """
    for row in _rows(con, sql):
        yield row["job_name"], row["job_name"], row


def _hung_runs(con: duckdb.DuckDBPyConnection, rules: Rules, now: datetime.datetime) -> Iterator[Any]:
    # A job with several hung runs is one incident: its oldest run says how bad, the count how many.
    sql = """
        SELECT job_name, count(*) AS hung_runs,
               arg_min(run_id, start_time) AS run_id, arg_min(trace_id, start_time) AS trace_id,
               arg_min(span_id, start_time) AS span_id, min(start_time) AS start_time,
               max(running_minutes) AS running_minutes, arg_min(threshold_minutes, start_time) AS threshold_minutes,
               arg_min(dataset, start_time) AS dataset
        FROM hung_runs GROUP BY job_name ORDER BY job_name
    """
    for row in _rows(con, sql):
        yield row["job_name"], row["job_name"], row


def _volume_anomalies(con: duckdb.DuckDBPyConnection, rules: Rules, now: datetime.datetime) -> Iterator[Any]:
    # The latest anomalous run of each job: the window and z-score of its rule are applied by _passes. The widest
    # window is filtered on here too: DuckDB pushes it below the view's self-join, which then judges a day of runs
    # instead of the view's week.
    widest = max([DEFAULT_VOLUME_WINDOW, *(rule.volume_window for rule in rules.rules)])
    sql = """
        SELECT v.job_name, v.run_id, v.attempt, v.run_type, v.start_time, v.end_time, v.records_processed,
               v.baseline_runs, v.baseline_mean, v.baseline_stddev, v.z_score, v.direction, r.trace_id, r.span_id
        FROM volume_anomalies AS v
        LEFT JOIN job_runs_latest AS r
            ON r.job_name = v.job_name AND r.run_id = v.run_id AND r.attempt = v.attempt
        WHERE v.end_time >= ?
        QUALIFY row_number() OVER (PARTITION BY v.job_name ORDER BY v.end_time DESC) = 1
        ORDER BY v.job_name
    """
    for row in _rows(con, sql, now - widest):
        yield row["job_name"], row["job_name"], row


def _missing_runs(con: duckdb.DuckDBPyConnection, rules: Rules, now: datetime.datetime) -> Iterator[Any]:
    expected = rules.expected_jobs()
    if not expected:
        return
    sql = """
        SELECT job_name, max(start_time) AS last_start, arg_max(run_id, start_time) AS run_id,
               arg_max(trace_id, start_time) AS trace_id, arg_max(status, start_time) AS last_status,
               arg_max(owners, event_time) FILTER (WHERE len(owners) > 0) AS owned_by
        FROM job_runs_latest GROUP BY job_name
    """
    latest = {row["job_name"]: row for row in _rows(con, sql)}
    # A rule naming one job (no glob) expects it even if it never ran, or not within the view's window.
    named = {glob for glob, _ in expected if not any(c in glob for c in "*?[")}
    for job in sorted(set(latest) | named):
        # The rule that decides is the job's own (the first selecting it), which may say nothing of intervals.
        rule = rules.rule_for("missing_run", job, job, latest.get(job, {}).get("owned_by") or ())
        if rule.expected_every is None:
            continue
        row = latest.get(job, {"job_name": job, "last_start": None, "run_id": None, "trace_id": None})
        last = row["last_start"]
        if last is None or _utc(last) < now - rule.expected_every:
            yield job, job, {**row, "expected_every_minutes": rule.expected_every.total_seconds() / 60}


def _failing_checks(con: duckdb.DuckDBPyConnection, rules: Rules, now: datetime.datetime) -> Iterator[Any]:
    # The dataset's owners (those of its latest update naming any): a check is the dataset's.
    sql = """
        SELECT c.dataset, c.check_name, c.assertion, c.column_name, c.actual, c.expected, c.severity AS check_severity,
               c.checked_at, c.job_name, c.run_id, c.trace_id, c.span_id, d.owners AS owned_by
        FROM failing_checks AS c LEFT JOIN dataset_status_latest AS d ON d.dataset = c.dataset
        ORDER BY c.dataset, c.check_name
    """
    for row in _rows(con, sql):
        yield f"{row['check_name']} on {row['dataset']}", row["job_name"], row


def subject_owners(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], tuple[str, ...]]:
    """The owners recorded in the data, by subject: ``("job", name)`` -> those an ``owner`` rule matches
    (:func:`_job_owners`), ``("dataset", name)`` -> its latest update's that names some
    (``dataset_status_latest.owners``). For selecting by owner (silences)."""
    found: dict[tuple[str, str], tuple[str, ...]] = {
        ("job", job): tuple(owners) for job, owners in _job_owners(con).items()
    }
    sql = "SELECT dataset, owners FROM dataset_status_latest WHERE len(owners) > 0"
    found.update((("dataset", dataset), tuple(owners)) for dataset, owners in con.execute(sql).fetchall())
    return found


_FINDERS: Mapping[str, Finder] = {
    "stale_dataset": _stale_datasets,
    "failing_job": _failing_jobs,
    "hung_run": _hung_runs,
    "volume_anomaly": _volume_anomalies,
    "missing_run": _missing_runs,
    "failing_check": _failing_checks,
}


# --- what a condition says ---------------------------------------------------------------------------------


class _Links:
    """The ``--trace-url`` and ``--run-url`` templates, filled from a condition's facts."""

    def __init__(self, trace_url: str | None, run_url: str | None) -> None:
        check_template(trace_url, "--trace-url")
        check_template(run_url, "--run-url")
        self.templates = {"trace": trace_url, "run": run_url}

    def __call__(self, facts: Facts) -> dict[str, str]:
        links = {}
        for name, template in self.templates.items():
            link = fill_link(template, facts) if template is not None else None
            if link is not None:
                links[name] = link
        return links


def _condition(kind: str, subject: str, rule: Rule, rules: Rules, facts: Facts, links: _Links) -> Condition:
    summary, since = _SUMMARIES[kind](subject, facts)
    return Condition(
        kind=kind,
        subject=subject,
        severity=rule.severity_of(kind),
        since=since,
        summary=summary,
        details={key: _json(value) for key, value in facts.items() if value is not None},
        owners=rule.owners,
        targets=rules.targets(rule),
        suppress=rule.suppress,
        group=rule.group,
        links=links(facts),
    )


def _json(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return _utc(value).isoformat()
    if isinstance(value, float):
        return round(value, 3)
    return value


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value.replace(tzinfo=datetime.timezone.utc) if value.tzinfo is None else value


def _when(value: datetime.datetime | None) -> str:
    return _utc(value).strftime("%Y-%m-%d %H:%M UTC") if value is not None else "never"


def _error(facts: Facts) -> str:
    """``; last error Type: message`` with the message's first line that says something: the summary is one line
    (all of the message's lines are the notification's ``Last error``)."""
    kind, message = facts.get("last_error_type"), facts.get("last_error_message")
    first = next((line for line in str(message or "").splitlines() if line.strip()), None)
    text = ": ".join(str(part) for part in (kind, first) if part)
    return f"; last error {text}" if text else ""


Headline = tuple[str, "datetime.datetime | None"]
"""What an incident says in one line, and since when it holds (None: not known)."""


def _stale_summary(dataset: str, facts: Facts) -> Headline:
    by = f" (last updated by {facts['job_name']})" if facts.get("job_name") else ""
    if facts.get("last_success_at") is None:
        status = facts.get("last_status") or "no"
        return f"dataset {dataset} has never been updated successfully: last update {status}{by}", facts.get(
            "last_update_at"
        )
    old, sla, as_of = facts.get("freshness_minutes"), facts.get("freshness_sla_minutes"), facts.get("data_as_of")
    if old is not None and sla is not None:
        since = _utc(as_of) + datetime.timedelta(minutes=sla) if as_of is not None else None
        return (
            f"dataset {dataset} is stale: data {age(old)} old, SLA {age(sla)}, late since {_when(since)}{by}",
            since,
        )
    return f"dataset {dataset} is stale: no successful update since {_when(facts['last_success_at'])}{by}", as_of


def _failing_summary(job: str, facts: Facts) -> Headline:
    streak = facts["current_streak"]
    since = facts.get("streak_since") or facts.get("last_failure_at")
    runs = "run" if streak == 1 else "runs in a row"
    return f"job {job} failed {streak} {runs} since {_when(since)}{_error(facts)}", since


def _hung_summary(job: str, facts: Facts) -> Headline:
    count = facts["hung_runs"]
    runs = f"{count} runs" if count > 1 else f"run {facts['run_id']}"
    return (
        f"job {job}: {runs} started {_when(facts['start_time'])} still running after "
        f"{age(facts['running_minutes'])} (hung after {age(facts['threshold_minutes'])})",
        facts["start_time"],
    )


def _volume_summary(job: str, facts: Facts) -> Headline:
    z = facts.get("z_score")
    how = f"z-score {z:+.1f}" if z is not None else "against a constant baseline"
    return (
        f"job {job}: run {facts['run_id']} processed {facts['records_processed']} records, a {facts['direction']} "
        f"({how}; baseline mean {facts['baseline_mean']:.0f} of {facts['baseline_runs']} runs)",
        facts["end_time"],
    )


def _missing_summary(job: str, facts: Facts) -> Headline:
    every = age(facts["expected_every_minutes"])
    last = facts.get("last_start")
    if last is None:
        return f"job {job} has not run: expected every {every}, no run seen", None
    since = _utc(last) + datetime.timedelta(minutes=facts["expected_every_minutes"])
    return f"job {job} has not run since {_when(last)}: expected every {every}", since


def _check_summary(subject: str, facts: Facts) -> Headline:
    what = f": {facts['assertion']}" if facts.get("assertion") else ""
    values = [f"{name} {facts[name]}" for name in ("actual", "expected") if facts.get(name) is not None]
    measured = f" ({', '.join(values)})" if values else ""
    return f"check {subject} failed{what}{measured} at {_when(facts['checked_at'])}", facts["checked_at"]


_SUMMARIES: Mapping[str, Callable[[str, Facts], Headline]] = {
    "stale_dataset": _stale_summary,
    "failing_job": _failing_summary,
    "hung_run": _hung_summary,
    "volume_anomaly": _volume_summary,
    "missing_run": _missing_summary,
    "failing_check": _check_summary,
    "missed_deadline": missed_summary,
    "deadline_at_risk": at_risk_summary,
}

__all__ = ["JOB_KINDS", "LINK_FIELDS", "check_template", "evaluate", "subject_owners"]
