"""SLA verification: the verdicts on the periods of the rules' SLAs, as rows of ``sla_results``, and the conditions
``missed_deadline`` and ``deadline_at_risk``.

Each job or dataset a rule with an SLA key selects (:meth:`.rules.Rule.covers`; a rule with ``dataset`` judges
datasets, any other jobs) is judged on each SLA key, taken from the first enabled rule selecting it that sets it:

- ``deadline`` (``"07:00"`` daily, ``"mon 07:00"`` weekly, in the rule's ``timezone``: :mod:`.deadlines`): each
  period (a day, a week) is met by a successful run of the job (a successful update of the dataset) that ended in
  it by its deadline. A backfill run (``job.run.type = backfill``) counts for the period of its logical date.
- ``within``: each run that is not a backfill is met by a successful run for its logical date (else: an attempt of
  its run id) that ended within this of it (else: of its run id's first start).
- ``max_duration``: each run (attempt) is met when it ended, failed or not, within this of its start.

A period's first verdict is written once its deadline passed: ``met`` (done by then, ``met_at``), or missed (not
done: ``met_at`` NULL). A later one only corrects it: the work done late (``met`` false, ``met_at``,
``late_by_minutes``: met late), or a replayed row showing it was done in time (``met``). So each period has one to
three rows whatever the number of evaluations, restarts or evaluators: each evaluation reads the verdicts recorded
(under the evaluation lock, :mod:`.engine`) and writes only what is better. Periods are judged over
:data:`LOOKBACK`, and from the first period the data shows the subject in (or its first verdict recorded): a job
named by a rule that never ran is judged from the period closed last when the rule is first evaluated.

``missed_deadline`` holds for a subject while the latest closed period of one of its SLAs is missed; it resolves
when the work is done (saying how late) or the next period is met. ``deadline_at_risk`` holds before a deadline
(``deadline``, and ``within`` of a running run) when the job (a dataset's: its last writer) usually cannot make it:
no run started by the deadline less its usual duration (the p50 of its successful runs of :data:`LOOKBACK`), or a
running run's start plus that duration (or now, when it has run longer) passes the deadline.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from otel_datasink.alerts.deadlines import Deadline, Period, span_text
from otel_datasink.alerts.model import RESOLVED, Send
from otel_datasink.alerts.rules import Rule, Rules
from otel_datasink.schema import SLA_RESULTS_TABLE, Rows

if TYPE_CHECKING:
    import duckdb

LOOKBACK = datetime.timedelta(days=7)
"""How far back periods are judged (and corrected by late rows): a week of verdicts is written on the first
evaluation of a rule, and a backfill of a period older than this changes no verdict."""
SLA_KINDS = ("deadline", "within", "max_duration")
"""``sla_results.kind``: the rule key the verdict judges."""
MISSED, LATE, MET = 0, 1, 2
"""A verdict's standing: a correction is a verdict of a higher standing."""
_UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)
_MINUTE = datetime.timedelta(minutes=1)
_BACKFILL = "backfill"


@dataclasses.dataclass(frozen=True)
class Subject:
    """A job or dataset under an SLA, with what the rules select it by."""

    name: str
    is_dataset: bool
    job: str | None
    """The job itself, or the dataset's last writer: whose runs do the work."""
    owners: tuple[str, ...]
    dataset: str | None
    first_seen: datetime.datetime | None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What one period of one SLA of one subject came to, as far as the data tells now."""

    subject: str
    kind: str
    period_start: datetime.datetime
    deadline: datetime.datetime
    met_at: datetime.datetime | None
    """When the work was done (NULL: not yet)."""
    run_id: str | None
    rule: str

    @property
    def met(self) -> bool:
        return self.met_at is not None and self.met_at <= self.deadline

    @property
    def standing(self) -> int:
        return MET if self.met else LATE if self.met_at is not None else MISSED

    @property
    def late_by_minutes(self) -> int | None:
        if self.met_at is None:
            return None
        return max(0, (self.met_at - self.deadline) // _MINUTE)

    def row(self, now: datetime.datetime) -> dict[str, Any]:
        """The ``sla_results`` row of this verdict, evaluated at ``now``."""
        at = _ms(now)
        return {
            "subject": self.subject,
            "kind": self.kind,
            "period_start": _ms(self.period_start),
            "deadline": _ms(self.deadline),
            "met": self.met,
            "met_at": _ms(self.met_at) if self.met_at is not None else None,
            "late_by_minutes": self.late_by_minutes,
            "run_id": self.run_id,
            "rule": self.rule,
            "evaluated_at": at,
            "event_time": at,
            "ingested_at": at,
        }


Found = tuple[str, "str | None", dict[str, Any]]
"""A condition as :mod:`.conditions` finds it: subject, job, facts."""


@dataclasses.dataclass(frozen=True)
class Judgement:
    """The SLAs as judged at one instant: every closed period's verdict, those to write, the conditions."""

    verdicts: list[Verdict] = dataclasses.field(default_factory=list)
    new: list[Verdict] = dataclasses.field(default_factory=list)
    """The verdicts better than those recorded (or first): the rows to write."""
    missed: list[Found] = dataclasses.field(default_factory=list)
    at_risk: list[Found] = dataclasses.field(default_factory=list)

    def rows(self, now: datetime.datetime) -> Rows:
        """The ``sla_results`` rows of :attr:`new`, for :meth:`otel_datasink.writer.Writer.write`."""
        return {SLA_RESULTS_TABLE: [verdict.row(now) for verdict in self.new]}

    def finders(self) -> Mapping[str, Callable[..., Iterator[Found]]]:
        """The finders of ``missed_deadline`` and ``deadline_at_risk`` for :func:`.conditions.evaluate`."""
        return {"missed_deadline": lambda *_: iter(self.missed), "deadline_at_risk": lambda *_: iter(self.at_risk)}


# --- the data --------------------------------------------------------------------------------------------------


class _Run(NamedTuple):
    """A run of ``job_runs_latest`` (a tuple: a week of hourly runs of 500 jobs is 96,000 of them)."""

    run_id: str | None
    status: str
    start: datetime.datetime | None
    end: datetime.datetime | None
    logical_date: datetime.datetime | None
    backfill: bool
    trace_id: str | None


class _Done(NamedTuple):
    """A successful run or update: done ``at``, for the period containing ``for_at``."""

    at: datetime.datetime
    for_at: datetime.datetime
    run_id: str | None


_JOBS_SQL = """
SELECT job_name,
       arg_max(owners, event_time) FILTER (WHERE len(owners) > 0) AS owners,
       arg_max(dataset, event_time) FILTER (WHERE dataset IS NOT NULL) AS dataset,
       min(coalesce(start_time, end_time)) AS first_seen,
       quantile_disc(duration_ms, 0.5) FILTER (
           WHERE status = 'SUCCESS' AND coalesce(run_type, '') <> 'backfill' AND end_time >= ?
       ) AS p50_ms
FROM job_runs_latest GROUP BY job_name
"""
# Times as naive UTC timestamps (the session's time zone is UTC): DuckDB makes a time zone object per aware value,
# which costs most of reading a week of hourly runs of 500 jobs.
_RUNS_SQL = """
SELECT job_name, run_id, status, CAST(start_time AS TIMESTAMP), CAST(end_time AS TIMESTAMP),
       CAST(logical_date AS TIMESTAMP), coalesce(run_type, '') = 'backfill', trace_id
FROM job_runs_latest
WHERE list_contains(?, job_name) AND (coalesce(end_time, start_time) >= ? OR logical_date >= ?)
ORDER BY coalesce(end_time, start_time)
"""
_DATASETS_SQL = """
SELECT dataset, owners, last_job_name FROM dataset_status_latest
"""
# dataset_status itself: the views keep a dataset's latest update, and a period needs each. Future-dated updates
# are left out as the views leave them out (sql/views.sql's header); copies of an update change no minimum.
_UPDATES_SQL = """
SELECT dataset, updated_at, run_id
FROM dataset_status
WHERE dt >= ? AND list_contains(?, dataset) AND status = 'SUCCESS' AND updated_at >= ? AND updated_at <= ?
  AND NOT coalesce(updated_at > ingested_at + INTERVAL 1 DAY, FALSE)
ORDER BY updated_at
"""
_FIRST_UPDATES_SQL = """
SELECT dataset, min(updated_at) FROM dataset_status WHERE dt >= ? AND list_contains(?, dataset) GROUP BY dataset
"""
_RECORDED_SQL = """
SELECT subject, kind, epoch_ms(period_start), max(CASE WHEN met THEN 2 WHEN met_at IS NOT NULL THEN 1 ELSE 0 END)
FROM sla_results WHERE dt >= ? GROUP BY subject, kind, period_start
"""


def _utc(value: datetime.datetime | None) -> datetime.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)


def _day(moment: datetime.datetime) -> str:
    return moment.astimezone(_UTC).strftime("%Y-%m-%d")


# --- judging ---------------------------------------------------------------------------------------------------


def has_slas(rules: Rules) -> bool:
    """Whether any enabled rule sets an SLA key."""
    return any(_keys(rule) for rule in rules.rules if rule.enabled)


def _keys(rule: Rule) -> list[str]:
    return [key for key in SLA_KINDS if getattr(rule, key) is not None]


def judge(con: duckdb.DuckDBPyConnection, rules: Rules, now: datetime.datetime) -> Judgement:
    """The SLAs of ``rules`` judged at ``now`` over the views of ``con`` (pinned at ``now``) and ``sla_results``."""
    if not has_slas(rules):
        return Judgement()
    now = now.astimezone(_UTC)
    since = now - LOOKBACK
    info = _job_info(con, since)
    jobs, datasets = _subjects(con, rules, since, info)
    index = _RuleIndex(rules)
    slas = [(subject, key, rule) for subject in [*jobs.values(), *datasets.values()] for key, rule in index(subject)]
    if not slas:
        return Judgement()
    working = {s.job for s, _, _ in slas if s.job is not None}
    # A period began at most a day (a week, for a weekly deadline) before its deadline.
    weekly = any(rule.deadline is not None and rule.deadline.weekday is not None for _, _, rule in slas)
    runs = _runs(con, sorted(working), since - datetime.timedelta(days=7 if weekly else 1))
    updates = _updates(con, sorted({s.name for s, _, _ in slas if s.is_dataset}), since, now)
    recorded, first_recorded = _recorded(con, since)
    p50 = {job: facts["p50"] for job, facts in info.items()}
    judgement = Judgement()
    for subject, key, rule in slas:
        job_runs = runs.get(subject.job or "", [])
        if key == "deadline":
            assert rule.deadline is not None
            done = updates.get(subject.name, []) if subject.is_dataset else _successes(job_runs, now)
            floor = max(since, min(subject.first_seen or now, first_recorded.get((subject.name, key), now)))
            verdicts = _deadline_verdicts(subject, rule.deadline, done, floor, now)
            risk = _deadline_risk(subject, rule.deadline, done, job_runs, p50.get(subject.job or ""), now)
        elif key == "within":
            assert rule.within is not None
            verdicts, risk = _within(subject, rule.within, job_runs, p50.get(subject.job or ""), since, now)
        else:
            assert rule.max_duration is not None
            verdicts, risk = _max_duration(subject, rule.max_duration, job_runs, since, now), None
        judgement.verdicts.extend(verdicts)
        judgement.new.extend(
            v for v in verdicts if v.standing > recorded.get((v.subject, v.kind, _ms(v.period_start)), -1)
        )
        if verdicts and verdicts[-1].standing == MISSED:
            judgement.missed.append(_missed(subject, verdicts[-1], job_runs, now))
        if risk is not None:
            judgement.at_risk.append((subject.name, subject.job, {**_facts_of(subject), **risk}))
    # One condition per subject: its earliest deadline missed (at risk).
    return dataclasses.replace(
        judgement, missed=_first_per_subject(judgement.missed), at_risk=_first_per_subject(judgement.at_risk)
    )


def _first_per_subject(found: list[Found]) -> list[Found]:
    chosen: dict[str, Found] = {}
    for item in sorted(found, key=lambda f: f[2]["deadline"]):
        chosen.setdefault(item[0], item)
    return list(chosen.values())


def _job_info(con: duckdb.DuckDBPyConnection, since: datetime.datetime) -> dict[str, dict[str, Any]]:
    rows = con.execute(_JOBS_SQL, [since]).fetchall()
    return {
        job: {
            "owners": tuple(owners or ()),
            "dataset": dataset,
            "first_seen": _utc(first),
            "p50": datetime.timedelta(milliseconds=p50) if p50 is not None else None,
        }
        for job, owners, dataset, first, p50 in rows
    }


def _subjects(
    con: duckdb.DuckDBPyConnection, rules: Rules, since: datetime.datetime, info: Mapping[str, dict[str, Any]]
) -> tuple[dict[str, Subject], dict[str, Subject]]:
    """The jobs (``info``: :func:`_job_info`) and datasets the data knows, and those the SLA rules name without a
    glob."""
    slas = [rule for rule in rules.rules if rule.enabled and _keys(rule)]
    jobs: dict[str, Subject] = {}
    datasets: dict[str, Subject] = {}
    if any(rule.dataset is None for rule in slas):
        named = {rule.job for rule in slas if rule.dataset is None and rule.job and not _is_glob(rule.job)}
        for job in sorted(set(info) | named):
            facts = info.get(job, {})
            jobs[job] = Subject(job, False, job, facts.get("owners", ()), facts.get("dataset"), facts.get("first_seen"))
    if any(rule.dataset is not None for rule in slas):
        latest = {row[0]: row for row in con.execute(_DATASETS_SQL).fetchall()}
        named = {rule.dataset for rule in slas if rule.dataset and not _is_glob(rule.dataset)}
        names = sorted(set(latest) | named)
        first = dict(con.execute(_FIRST_UPDATES_SQL, [_day(since - LOOKBACK), names]).fetchall())
        for name in names:
            _, owners, writer = latest.get(name, (name, None, None))
            seen = _utc(first.get(name)) or (since if name in latest else None)
            datasets[name] = Subject(name, True, writer, tuple(owners or ()), name, seen)
    return jobs, datasets


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


class _RuleIndex:
    """The enabled rules with SLA keys, those naming one job or dataset without a glob looked up by that name (a
    rule per job, 500 of them, is matched in a dictionary look-up, not 500 globs per job)."""

    def __init__(self, rules: Rules) -> None:
        self.named: dict[tuple[bool, str], list[tuple[int, Rule]]] = {}
        self.others: list[tuple[int, Rule]] = []
        for number, rule in enumerate(rules.rules):
            if not rule.enabled or not _keys(rule):
                continue
            name = rule.dataset if rule.dataset is not None else rule.job
            if name is not None and not _is_glob(name):
                self.named.setdefault((rule.dataset is not None, name), []).append((number, rule))
            else:
                self.others.append((number, rule))

    def __call__(self, subject: Subject) -> Iterator[tuple[str, Rule]]:
        """Each SLA key of the subject with the rule it is taken from: the first enabled one selecting it that sets
        it."""
        named = self.named.get((subject.is_dataset, subject.name), [])
        candidates = sorted([*named, *self.others], key=lambda item: item[0])
        for key in SLA_KINDS:
            for _, rule in candidates:
                if getattr(rule, key) is None or (rule.dataset is not None) != subject.is_dataset:
                    continue
                if rule.covers("missed_deadline", subject.name, subject.job, subject.owners, subject.dataset):
                    yield key, rule
                    break


def _runs(con: duckdb.DuckDBPyConnection, jobs: list[str], since: datetime.datetime) -> dict[str, list[_Run]]:
    runs: dict[str, list[_Run]] = {}
    if not jobs:
        return runs
    for job, run_id, status, start, end, logical, backfill, trace in con.execute(
        _RUNS_SQL, [jobs, since, since]
    ).fetchall():
        # The times are naive UTC (_RUNS_SQL): made aware here, not through _utc (a call per time costs a third).
        runs.setdefault(job, []).append(
            _Run(
                run_id,
                status,
                start and start.replace(tzinfo=_UTC),
                end and end.replace(tzinfo=_UTC),
                logical and logical.replace(tzinfo=_UTC),
                backfill,
                trace,
            )
        )
    return runs


def _updates(
    con: duckdb.DuckDBPyConnection, names: list[str], since: datetime.datetime, now: datetime.datetime
) -> dict[str, list[_Done]]:
    done: dict[str, list[_Done]] = {}
    if not names:
        return done
    start = since - datetime.timedelta(days=7)  # a weekly period began up to a week before its deadline
    for name, at, run_id in con.execute(_UPDATES_SQL, [_day(start), names, start, now]).fetchall():
        moment = _utc(at)
        assert moment is not None
        done.setdefault(name, []).append(_Done(moment, moment, run_id))
    return done


def _successes(runs: Sequence[_Run], now: datetime.datetime) -> list[_Done]:
    """A job's successful runs that ended by ``now``, each for the period it ended in (a backfill: of its logical
    date)."""
    return [
        _Done(run.end, run.logical_date if run.backfill and run.logical_date else run.end, run.run_id)
        for run in runs
        if run.status == "SUCCESS" and run.end is not None and run.end <= now
    ]


def _recorded(
    con: duckdb.DuckDBPyConnection, since: datetime.datetime
) -> tuple[dict[tuple[str, str, int], int], dict[tuple[str, str], datetime.datetime]]:
    """The best standing recorded per period (its start in epoch milliseconds), and each SLA's first period
    recorded."""
    standing: dict[tuple[str, str, int], int] = {}
    first_ms: dict[tuple[str, str], int] = {}
    for subject, kind, start, best in con.execute(_RECORDED_SQL, [_day(since)]).fetchall():
        standing[(subject, kind, start)] = best
        first_ms[(subject, kind)] = min(first_ms.get((subject, kind), start), start)
    first = {key: _EPOCH + datetime.timedelta(milliseconds=ms) for key, ms in first_ms.items()}
    return standing, first


def _deadline_verdicts(
    subject: Subject, deadline: Deadline, done: list[_Done], floor: datetime.datetime, now: datetime.datetime
) -> list[Verdict]:
    """The verdicts of the periods whose deadline passed within :data:`LOOKBACK` and that end after ``floor``."""
    verdicts = []
    for period in deadline.periods(now - LOOKBACK, now + datetime.timedelta(microseconds=1)):
        if period.end <= floor:
            continue
        first = _first_done(done, period, now)
        verdicts.append(
            Verdict(
                subject.name,
                "deadline",
                period.start,
                period.deadline,
                first.at if first else None,
                first.run_id if first else None,
                f"deadline {deadline}",
            )
        )
    return verdicts


def _first_done(done: list[_Done], period: Period, now: datetime.datetime) -> _Done | None:
    """The earliest of ``done`` for ``period`` by ``now``."""
    found = [d for d in done if period.start <= d.for_at < period.end and d.at <= now]
    return min(found, key=lambda d: d.at) if found else None


def _deadline_risk(
    subject: Subject,
    deadline: Deadline,
    done: list[_Done],
    runs: Sequence[_Run],
    p50: datetime.timedelta | None,
    now: datetime.datetime,
) -> dict[str, Any] | None:
    """The facts of a deadline at risk, None when it is not."""
    period = deadline.period_at(now)
    if now >= period.deadline or p50 is None or _first_done(done, period, now) is not None:
        return None
    running = [r for r in runs if r.status == "STARTED" and r.start is not None and period.start <= r.start <= now]
    facts = {
        "sla": "deadline",
        "rule": f"deadline {deadline}",
        "period_start": period.start,
        "deadline": period.deadline,
        "usual_minutes": p50 / _MINUTE,
    }
    if running:
        run = min(running, key=lambda r: r.start or now)
        assert run.start is not None
        expected = max(run.start + p50, now)
        if expected <= period.deadline:
            return None
        return {
            **facts,
            "run_id": run.run_id,
            "trace_id": run.trace_id,
            "start_time": run.start,
            "expected_end": expected,
        }
    if now < period.deadline - p50:
        return None
    return {**facts, "latest_start": period.deadline - p50}


def _within(
    subject: Subject,
    within: datetime.timedelta,
    runs: Sequence[_Run],
    p50: datetime.timedelta | None,
    since: datetime.datetime,
    now: datetime.datetime,
) -> tuple[list[Verdict], dict[str, Any] | None]:
    """The verdicts of the runs due within ``within`` of their logical date (else their run id's first start), and
    the facts of the first running one at risk."""
    first_start: dict[str | None, datetime.datetime] = {}
    for run in runs:
        if run.start is not None:
            first_start[run.run_id] = min(first_start.get(run.run_id, run.start), run.start)

    def key(run: _Run) -> datetime.datetime | None:
        return run.logical_date or first_start.get(run.run_id) or run.start

    periods = sorted({k for run in runs if not run.backfill and (k := key(run)) is not None})
    done: dict[datetime.datetime, _Run] = {}
    for run in runs:
        k = key(run)
        if k is not None and run.status == "SUCCESS" and run.end is not None and run.end <= now:
            if k not in done or (done[k].end or now) > run.end:
                done[k] = run
    rule = f"within {span_text(within)}"
    verdicts, risk = [], None
    for start in periods:
        due = start + within
        finished = done.get(start)
        if due <= now and due >= since:
            met_at = finished.end if finished else None
            verdicts.append(
                Verdict(subject.name, "within", start, due, met_at, finished.run_id if finished else None, rule)
            )
        elif due > now and finished is None and p50 is not None and risk is None:
            running = [r for r in runs if r.status == "STARTED" and key(r) == start and r.start is not None]
            expected = max([r.start + p50 for r in running if r.start is not None] + [now]) if running else None
            if expected is not None and expected > due:
                run = running[0]
                risk = {
                    "sla": "within",
                    "rule": rule,
                    "period_start": start,
                    "deadline": due,
                    "usual_minutes": p50 / _MINUTE,
                    "run_id": run.run_id,
                    "trace_id": run.trace_id,
                    "start_time": run.start,
                    "expected_end": expected,
                }
    return verdicts, risk


def _max_duration(
    subject: Subject,
    longest: datetime.timedelta,
    runs: Sequence[_Run],
    since: datetime.datetime,
    now: datetime.datetime,
) -> list[Verdict]:
    """The verdicts of the runs that ended, or ran past ``longest``, started within :data:`LOOKBACK`."""
    rule = f"max_duration {span_text(longest)}"
    verdicts = []
    for run in sorted((r for r in runs if r.start is not None and r.start >= since), key=lambda r: r.start or now):
        assert run.start is not None
        due = run.start + longest
        ended = run.end if run.status != "STARTED" and run.end is not None and run.end <= now else None
        if ended is not None or due <= now:
            verdicts.append(Verdict(subject.name, "max_duration", run.start, due, ended, run.run_id, rule))
    return verdicts


def _facts_of(subject: Subject) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "job_name": subject.job,
        "owned_by": list(subject.owners) or None,
        "subject_type": "dataset" if subject.is_dataset else "job",
    }
    if subject.dataset is not None:
        facts["dataset"] = subject.dataset
    return facts


def _missed(subject: Subject, verdict: Verdict, runs: Sequence[_Run], now: datetime.datetime) -> Found:
    facts = {
        **_facts_of(subject),
        "sla": verdict.kind,
        "rule": verdict.rule,
        "period_start": verdict.period_start,
        "deadline": verdict.deadline,
        "late_by_minutes": max(0, (now - verdict.deadline) // _MINUTE),
    }
    running = [r for r in runs if r.status == "STARTED" and r.start is not None and r.start >= verdict.period_start]
    if verdict.run_id is not None or running:
        facts["run_id"] = verdict.run_id or running[0].run_id
        facts["trace_id"] = next((r.trace_id for r in runs if r.run_id == facts["run_id"]), None)
    return subject.name, subject.job, facts


# --- what the alerts say ---------------------------------------------------------------------------------------


def _when(value: Any) -> str:
    moment = _utc(datetime.datetime.fromisoformat(value) if isinstance(value, str) else value)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "never"


def _what(subject: str, facts: Mapping[str, Any]) -> str:
    return f"{facts.get('subject_type') or 'job'} {subject}"


def missed_summary(subject: str, facts: Mapping[str, Any]) -> tuple[str, datetime.datetime | None]:
    """``job x missed its SLA deadline 07:00 UTC: due 2026-03-29 07:00 UTC, no successful run 95 min later``."""
    kind = facts["sla"]
    if kind == "max_duration":
        what = f"run {facts.get('run_id')} started {_when(facts['period_start'])} is still running"
    elif kind == "within":
        what = f"the run for {_when(facts['period_start'])} has not succeeded"
    else:
        what = "no successful " + ("update" if facts.get("subject_type") == "dataset" else "run")
    late = facts["late_by_minutes"]
    return (
        f"{_what(subject, facts)} missed its SLA {facts['rule']}: due {_when(facts['deadline'])}, {what} "
        f"{late} min later",
        facts["deadline"],
    )


def at_risk_summary(subject: str, facts: Mapping[str, Any]) -> tuple[str, datetime.datetime | None]:
    """``job x may miss its SLA deadline 07:00 UTC due 2026-03-29 07:00 UTC: no run started by 2026-03-29 06:20 UTC
    (a usual run takes 40 min)``, or: run r started ..., expected to end ... (...)."""
    usual = f"a usual run takes {facts['usual_minutes']:.0f} min"
    if facts.get("expected_end") is not None:
        expected = _when(facts["expected_end"])
        why = f"run {facts.get('run_id')} started {_when(facts['start_time'])}, expected to end {expected}"
    else:
        why = f"no run started by {_when(facts['latest_start'])}"
    return (
        f"{_what(subject, facts)} may miss its SLA {facts['rule']} due {_when(facts['deadline'])}: {why} ({usual})",
        facts.get("latest_start") or facts.get("start_time"),
    )


def with_resolutions(sends: Sequence[Send], judgement: Judgement) -> list[Send]:
    """``sends`` with each RESOLVED ``missed_deadline`` saying what resolved it: the work of its period done late
    (how late), or shown done in time by a row that came late, or a later period met (the incident's details name
    the period)."""
    verdicts = {(v.subject, v.kind, v.period_start.isoformat()): v for v in judgement.verdicts}
    latest = {(v.subject, v.kind): v for v in judgement.verdicts}  # in period order: the last one stays
    result = []
    for send in sends:
        n = send.notification
        kind = str(n.details.get("sla"))
        verdict = verdicts.get((n.subject, kind, str(n.details.get("period_start"))))
        if n.kind != "missed_deadline" or n.state != RESOLVED or verdict is None:
            result.append(send)
            continue
        details = dict(n.details)
        if verdict.met_at is not None:
            how = "in time after all (its row came late)" if verdict.met else f"late by {verdict.late_by_minutes} min"
            summary = f"{_what(n.subject, n.details)} met its SLA {verdict.rule} due {_when(verdict.deadline)} {how}"
            details |= {"met_at": verdict.met_at.isoformat(), "late_by_minutes": verdict.late_by_minutes}
        elif (later := latest.get((n.subject, kind))) is not None and later is not verdict and later.met:
            summary = (
                f"{_what(n.subject, n.details)} met its SLA {later.rule} due {_when(later.deadline)}; "
                f"the period due {_when(verdict.deadline)} stays missed"
            )
        else:
            result.append(send)
            continue
        result.append(dataclasses.replace(send, notification=dataclasses.replace(n, summary=summary, details=details)))
    return result


def _ms(moment: datetime.datetime) -> int:
    return (moment.astimezone(_UTC) - _EPOCH) // datetime.timedelta(milliseconds=1)


__all__ = [
    "LATE",
    "LOOKBACK",
    "MET",
    "MISSED",
    "SLA_KINDS",
    "Judgement",
    "Verdict",
    "at_risk_summary",
    "has_slas",
    "judge",
    "missed_summary",
    "with_resolutions",
]
