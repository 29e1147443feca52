"""Evaluate the alert conditions over the views of ``--location`` and notify their incidents' owners.

One evaluation (for cron, a Kubernetes CronJob or an Airflow task): the conditions that hold now (stale
datasets, failing jobs, hung runs, volume anomalies, missing runs) open incidents, notified once to their targets
(``--notify`` and the rules file's), again after their suppression interval, and resolved when they clear. Every
notification event is a row of the ``alerts`` table at the location (view ``alerts_open``); a target that does not
take a notification is retried, waiting longer after each consecutive failure (1 min doubling to 1 h; 5 min at most
for an Alertmanager), and never stops the others. Evaluations of one location take a lock, so two at once never both
notify.

Rules with SLA keys (``deadline``, ``within``, ``max_duration``) make each evaluation record the verdict of every
period that closed as rows of ``sla_results`` (once per period, corrections as rows of their own; with no target
too), and add the conditions ``missed_deadline`` and ``deadline_at_risk``.

``--watch SECONDS`` evaluates in a loop until SIGTERM (the current evaluation finishes; exit 0) or Ctrl-C (the
same, then exit 130), and records the gauges datasink.dataset.freshness, datasink.dataset.stale,
datasink.job.failure_streak, datasink.runs.hung and datasink.alerts.open through the OpenTelemetry metrics API,
exported by OTEL_METRICS_EXPORTER (or run it under opentelemetry-instrument).

``--dry-run`` prints what would be sent, each message's text as its target would get it, sends and writes
nothing (no target is contacted: a target is checked for its form only), and exits 1 when any incident is open: a
CI gate.

With no target at all (no --notify, no rule's notify) an evaluation changes no incident: it opens, resolves and
closes none, says so on one line on stderr, and prints what holds.

  otel-datasink alert ack INCIDENT [--until TIME] [--by NAME]
      acknowledge an open incident (an id of alerts_open): no reminder of it until TIME, or while it is open;
      its RESOLVED is still sent, and a later incident of the same condition is not acknowledged
  otel-datasink alert silence --job/--dataset/--owner GLOB --until TIME [--by NAME]
      notify nobody of the conditions of the jobs, datasets, or owners recorded in the data, that GLOB matches,
      open incidents or new ones, until TIME (new ones are recorded, and listed by alerts_open, silenced)

TIME is ISO 8601 (2026-12-08T18:00Z) or from now (90m, 2h, 1d, 1h30m). Both are rows of the alerts table (states
ACKNOWLEDGED and SILENCED), honoured by every evaluation and shown in alerts_open (acknowledged_by,
acknowledged_until, silenced_by, silenced_until).

Targets: Apprise URLs (slack://..., msteams://..., mailto://..., json://host/path) or an Alertmanager
(alertmanager://HOST:9093). Exit status: 0 done (incidents or not), 1 a notification a target did not take (each
said once, on its FAILED line; it is retried at later evaluations), or with --dry-run an incident open, 2 the
evaluation could not run (a bad rules file, a location with no table) or ack names no open incident.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import getpass
import logging
import os
import sys
from typing import TYPE_CHECKING

from otel_datasink.alerts import delivery
from otel_datasink.alerts.escaping import one_line
from otel_datasink.alerts.rules import Rules, load_rules, parse_duration
from otel_datasink.commands._args import (
    ALLOW_EMPTY_HINT,
    add_allow_empty_argument,
    add_location_arguments,
    add_view_arguments,
    instant,
    store_options,
    view_parameters,
)
from otel_datasink.commands._errors import EXIT_FOUND, EXIT_OK, CommandError, describe
from otel_datasink.commands._signals import StopSignals, raise_if_interrupted
from otel_datasink.tomlcheck import Invalid

if TYPE_CHECKING:
    import duckdb

    from otel_datasink.alerts.engine import Evaluation, Evaluator
    from otel_datasink.alerts.gauges import HealthGauges
    from otel_datasink.config import Options
    from otel_datasink.schema import Rows

_logger = logging.getLogger(__name__)

NOW_VARIABLE = "OTEL_DATASINK_ALERT_NOW"
"""For tests and replays: the instant to evaluate at (ISO 8601), as ``--now``."""


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above zero, not {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink alert``."""
    parser.add_argument("--rules", metavar="FILE", help="TOML rules file (owners, targets, thresholds); default none")
    parser.add_argument(
        "--notify",
        metavar="URL",
        action="append",
        default=[],
        help="where to notify what no rule routes elsewhere: an Apprise URL or alertmanager://HOST:PORT (repeatable)",
    )
    parser.add_argument(
        "--watch", metavar="SECONDS", type=_positive_seconds, help="evaluate every SECONDS until SIGTERM or Ctrl-C"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print each message as its target would get it; send, write, contact nothing; exit 1 if any open",
    )
    parser.add_argument(
        "--trace-url", metavar="TEMPLATE", help="trace link, e.g. https://grafana/explore?traceId={trace_id}"
    )
    parser.add_argument("--run-url", metavar="TEMPLATE", help="run link, fields {run_id} {job_name} {trace_id}")
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=delivery.DEFAULT_TIMEOUT,
        help=f"per delivery (default {delivery.DEFAULT_TIMEOUT:g})",
    )
    now = os.environ.get(NOW_VARIABLE)
    parser.add_argument("--now", type=instant, default=instant(now) if now else None, help=argparse.SUPPRESS)
    add_allow_empty_argument(parser)
    add_view_arguments(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", title="actions (none: evaluate)")
    ack = actions.add_parser("ack", help="acknowledge an open incident: no reminder of it until --until")
    ack.add_argument("incident", metavar="INCIDENT", help="the incident's id (alerts_open.incident_id)")
    ack.add_argument("--until", metavar="TIME", help="ISO 8601, or from now: 2h, 1d (default: while it is open)")
    _add_by(ack)
    silence = actions.add_parser("silence", help="notify nobody of what a job, dataset or owner glob selects")
    which = silence.add_mutually_exclusive_group(required=True)
    for match in ("job", "dataset", "owner"):
        which.add_argument(f"--{match}", metavar="GLOB", help=f"the {match}s it silences (a glob: 'ingest_*')")
    silence.add_argument("--until", metavar="TIME", required=True, help="ISO 8601, or from now: 2h, 1d")
    _add_by(silence)
    for action in (ack, silence):
        add_location_arguments(
            action, "local path or fsspec URL (s3://bucket/prefix) of the tables", store=True, maps_spans=False
        )
        # Given before the action (`alert --location X ack ...`) they stay: the action's defaults must not win.
        for option in action._actions:  # noqa: SLF001 - argparse has no public way to change a default to SUPPRESS
            if option.dest in ("location", "s3_endpoint_url"):
                option.default = argparse.SUPPRESS


def _add_by(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", metavar="NAME", help="who (default: the user name)")


def run(args: argparse.Namespace) -> int:
    """One evaluation, or a loop of them with ``--watch``, or the action ``ack`` or ``silence``; see the module's
    docstring for the exit status."""
    if args.action is not None:
        return _ACTIONS[args.action](args)
    evaluator = _evaluator(args)
    if not evaluator.targeted and not evaluator.dry_run:  # a dry run changes nothing anyway
        print(f"otel-datasink alert: {NO_TARGET}", file=sys.stderr, flush=True)
    if args.watch is not None:
        if args.now is not None:
            raise CommandError("--now is for one evaluation, not --watch")
        return _watch(evaluator, args.watch)
    evaluation = _evaluate(evaluator, args.now or _utcnow())
    if evaluation is None:
        return EXIT_OK
    _print(evaluation, evaluator)
    if evaluator.dry_run:
        return EXIT_FOUND if evaluation.conditions else EXIT_OK
    return EXIT_FOUND if evaluation.failed else EXIT_OK


NO_TARGET = "no target configured (--notify URL, or notify in a rule): no incident opened, resolved or closed"


def _evaluator(args: argparse.Namespace) -> Evaluator:
    """The evaluator of the command line; a mistyped ``--notify``, rule target or link template fails here."""
    from otel_datasink.alerts.engine import Evaluator  # DuckDB: imported to evaluate, not for --help

    options = store_options(args)
    rules = load_rules(args.rules, args.notify) if args.rules is not None else Rules(default_targets=tuple(args.notify))
    return Evaluator(
        options,
        rules,
        view_parameters(args),
        trace_url=args.trace_url,
        run_url=args.run_url,
        timeout=args.timeout,
        every=datetime.timedelta(seconds=args.watch) if args.watch is not None else None,
        dry_run=args.dry_run,
        allow_empty=args.allow_empty,
    )


def _evaluate(evaluator: Evaluator, now: datetime.datetime, gauges: HealthGauges | None = None) -> Evaluation | None:
    """One evaluation, or None when another evaluation of the location is under way: it notifies what holds, this
    round is not needed (said on stderr)."""
    from otel_datasink.lease import Busy
    from otel_datasink.local import NoTablesError

    try:
        return evaluator.evaluate(now, gauges)
    except Busy as error:
        print(f"otel-datasink alert: skipped: {error}", file=sys.stderr, flush=True)
        return None
    except NoTablesError as error:
        raise CommandError(f"{error} ({ALLOW_EMPTY_HINT})") from error


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# --- what is printed ---------------------------------------------------------------------------------------


def _print(evaluation: Evaluation, evaluator: Evaluator) -> None:
    """One line per condition, one per notification (sent, failed, held, or would be sent; a dry run's text after
    them), then a count line: a subject or summary with line breaks or terminal escapes in it stays on its line,
    inert (:func:`.escaping.one_line`)."""
    dry_run = evaluator.dry_run
    stamp = evaluation.now.isoformat(timespec="seconds")
    for condition in evaluation.conditions:
        owners = f" (owners {', '.join(condition.owners)})" if condition.owners else ""
        what = f"{condition.kind} {one_line(condition.subject)}: {one_line(condition.summary)}"
        print(f"{stamp} {condition.severity.upper()} {what}{owners}")
    for send in evaluation.sends:
        if send.held is not None:
            n = send.notification
            print(f"{stamp} held: {n.state} {n.kind} {one_line(n.subject)}: {send.held}")
    if dry_run:
        for send in evaluation.sends:
            n = send.notification
            if send.held is not None:
                continue
            if send.target is None:
                print(f"{stamp} would close {n.kind} {one_line(n.subject)}: {n.details.get('closed')}")
            else:
                print(f"{stamp} would send {n.state} {n.kind} {one_line(n.subject)} to {delivery.redact(send.target)}")
        for target, text in evaluator.texts(evaluation):
            print(f"{stamp} message to {delivery.redact(target)}:")
            print("\n".join(f"    {one_line(line)}" for line in text.splitlines()))
    for send, delivered, error in evaluation.outcomes:
        n = send.notification
        if send.held is not None:
            continue
        if send.target is None:
            print(f"{stamp} closed: {n.kind} {one_line(n.subject)}: {n.details.get('closed')}")
            continue
        outcome = "sent" if delivered else f"FAILED ({error})"
        print(f"{stamp} {outcome}: {n.state} {n.kind} {one_line(n.subject)} to {delivery.redact(send.target)}")
    if evaluation.verdicts:  # said only when there are some: the first evaluation of a rule judges a week
        from otel_datasink.alerts.sla import LATE, MET, MISSED

        verdicts = [verdict.standing for verdict in evaluation.verdicts]
        print(
            f"{stamp} SLA verdicts recorded: {verdicts.count(MET)} met, {verdicts.count(LATE)} met late, "
            f"{verdicts.count(MISSED)} missed"
        )
    sent = sum(1 for send, delivered, _ in evaluation.outcomes if send.target is not None and delivered)
    done = evaluation.sends if dry_run else [send for send, _, _ in evaluation.outcomes]
    closed = sum(1 for send in done if send.target is None and send.held is None)
    held = sum(1 for send in evaluation.sends if send.held is not None)
    to_send = sum(1 for send in evaluation.sends if send.target is not None)
    what = f"{to_send} to send (dry run)" if dry_run else f"{sent} sent, {evaluation.failed} failed"
    if closed:  # said only when there are some: the count line's usual form is unchanged
        what += f", {closed} closed with no target to tell"
    if held:
        what += f", {held} held (acknowledged or silenced)"
    print(f"{stamp} {len(evaluation.conditions)} open incident(s); notifications: {what}")
    sys.stdout.flush()


# --- --watch -----------------------------------------------------------------------------------------------


def _watch(evaluator: Evaluator, seconds: float) -> int:
    """Evaluates every ``seconds`` until SIGTERM (0) or SIGINT (130), which let the current evaluation finish."""
    from otel_datasink.alerts.gauges import HealthGauges, configure_from_environment

    provider = configure_from_environment()
    gauges = HealthGauges()
    evaluations = 0
    try:
        with StopSignals(finishing="the current evaluation") as stop:
            print(f"watching {evaluator.options.location} every {seconds:g}s", flush=True)
            while not stop.event.is_set():
                _evaluate_in_loop(evaluator, gauges)
                evaluations += 1
                stop.event.wait(seconds)
        print("stopped", flush=True)
    finally:
        if provider is not None:
            provider.shutdown()  # the last collection is exported, not lost
    raise_if_interrupted(stop.received, f"stopped after {evaluations} evaluation(s), none cut short")
    return EXIT_OK


def _evaluate_in_loop(evaluator: Evaluator, gauges: HealthGauges) -> None:
    """One evaluation of the loop: a failure (a store briefly unreachable) is reported and the loop goes on."""
    try:
        evaluation = _evaluate(evaluator, _utcnow(), gauges)
        if evaluation is not None:
            _print(evaluation, evaluator)
    except Exception as error:  # noqa: BLE001 - the next evaluation may succeed; the loop must outlive this one
        _logger.debug("evaluation failed", exc_info=True)
        print(f"otel-datasink alert: evaluation failed: {describe(error)}", file=sys.stderr, flush=True)


# --- ack and silence ---------------------------------------------------------------------------------------


def until(text: str, now: datetime.datetime) -> datetime.datetime:
    """A ``--until TIME``: an ISO 8601 instant, or a duration from ``now`` (``90m``, ``2h``, ``1d``, ``1h30m``);
    CommandError for neither, or for a time not after ``now``."""
    try:
        moment = now + parse_duration(text)
    except Invalid:
        try:
            moment = instant(text)
        except argparse.ArgumentTypeError:
            raise CommandError(f"--until: not an ISO 8601 time nor a duration (2h, 1d): {text!r}") from None
    if moment <= now:
        raise CommandError(f"--until {text}: that time is past ({moment.isoformat(timespec='seconds')})")
    return moment


def _by(args: argparse.Namespace) -> str:
    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database (a container)
        return "unknown"


def _ack(args: argparse.Namespace) -> int:
    """``alert ack INCIDENT``: an ACKNOWLEDGED row of an open incident; CommandError for an unknown or resolved one."""
    from otel_datasink.alerts import holds

    options, now = store_options(args), args.now or _utcnow()
    moment = until(args.until, now) if args.until is not None else None
    with _connected(options) as con:
        incident = holds.incident_state(con, args.incident, now)
    if incident is None:
        raise CommandError(f"no incident {args.incident!r} at {options.location} (its ids: SELECT * FROM alerts_open)")
    what = f"{incident.incident_id} ({incident.kind} {one_line(incident.subject)})"
    if not holds.is_open(incident):
        raise CommandError(f"incident {what} is resolved: nothing to acknowledge")
    by = _by(args)
    _write(options, holds.ack_rows(incident, by, moment, now))
    to = f"until {moment.isoformat(timespec='minutes')}" if moment is not None else "while it is open"
    print(f"{now.isoformat(timespec='seconds')} acknowledged {what} by {one_line(by)} {to}", flush=True)
    return EXIT_OK


def _silence(args: argparse.Namespace) -> int:
    """``alert silence --job/--dataset/--owner GLOB --until TIME``: a SILENCED row."""
    from otel_datasink.alerts import holds

    options, now = store_options(args), args.now or _utcnow()
    match = next(name for name in holds.MATCHES if getattr(args, name) is not None)
    glob, moment, by = getattr(args, match), until(args.until, now), _by(args)
    _write(options, holds.silence_rows(match, glob, by, moment, now))
    print(
        f"{now.isoformat(timespec='seconds')} silenced {match} {one_line(glob)!r} by {one_line(by)} "
        f"until {moment.isoformat(timespec='minutes')}",
        flush=True,
    )
    return EXIT_OK


def _connected(options: Options) -> contextlib.closing[duckdb.DuckDBPyConnection]:
    from otel_datasink import local

    return contextlib.closing(local.connect(options.location, s3_endpoint_url=options.s3_endpoint_url))


def _write(options: Options, rows: Rows) -> None:
    from otel_datasink.writer import Writer

    Writer(options).write(rows)


_ACTIONS = {"ack": _ack, "silence": _silence}
