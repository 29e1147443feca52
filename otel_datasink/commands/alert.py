"""Evaluate the alert conditions over the views of ``--location`` and notify their incidents' owners.

One evaluation (for cron, a Kubernetes CronJob or an Airflow task): the conditions that hold now (stale
datasets, failing jobs, hung runs, volume anomalies, missing runs) open incidents, notified once to their targets
(``--notify`` and the rules file's), again after their suppression interval, and resolved when they clear. Every
notification event is a row of the ``alerts`` table at the location (view ``alerts_open``); a target that does not
take a notification is retried, waiting longer after each consecutive failure (1 min doubling to 1 h; 5 min at most
for an Alertmanager), and never stops the others. Evaluations of one location take a lock, so two at once never both
notify.

``--watch SECONDS`` evaluates in a loop until SIGTERM or Ctrl-C (the current evaluation finishes; exit 0), and
records the gauges datasink.dataset.freshness, datasink.dataset.stale, datasink.job.failure_streak,
datasink.runs.hung and datasink.alerts.open through the OpenTelemetry metrics API, exported by OTEL_METRICS_EXPORTER
(or run it under opentelemetry-instrument).

``--dry-run`` prints what would be sent, sends and writes nothing, and exits 1 when any incident is open: a CI gate.

Targets: Apprise URLs (slack://..., msteams://..., mailto://..., json://host/path) or an Alertmanager
(alertmanager://HOST:9093). Exit status: 0 done (incidents or not), 1 with --dry-run when an incident is open,
2 the evaluation could not run (a bad rules file, a location with no table).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from otel_datasink.alerts import conditions as conditions_module
from otel_datasink.alerts.model import DeliveryError, Outcome
from otel_datasink.alerts.rules import Rules, RulesError, load_rules
from otel_datasink.cli import EXIT_FOUND, EXIT_OK, CommandError, instant, store_options
from otel_datasink.commands._args import ALLOW_EMPTY_HINT, add_allow_empty_argument, add_view_arguments, view_parameters

if TYPE_CHECKING:
    from otel_datasink.alerts.incidents import Held
    from otel_datasink.alerts.metrics import HealthGauges
    from otel_datasink.alerts.model import Condition, Send
    from otel_datasink.config import Options

_logger = logging.getLogger(__name__)

NOW_VARIABLE = "OTEL_DATASINK_ALERT_NOW"
"""For tests and replays: the instant to evaluate at (ISO 8601), as ``--now``."""
DEFAULT_TIMEOUT = 10.0


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
        "--dry-run", action="store_true", help="print what would be sent; send and write nothing; exit 1 if any open"
    )
    parser.add_argument(
        "--trace-url", metavar="TEMPLATE", help="trace link, e.g. https://grafana/explore?traceId={trace_id}"
    )
    parser.add_argument("--run-url", metavar="TEMPLATE", help="run link, fields {run_id} {job_name} {trace_id}")
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"per delivery (default {DEFAULT_TIMEOUT:g})",
    )
    now = os.environ.get(NOW_VARIABLE)
    parser.add_argument("--now", type=instant, default=instant(now) if now else None, help=argparse.SUPPRESS)
    add_allow_empty_argument(parser)
    add_view_arguments(parser)


@dataclasses.dataclass
class Evaluation:
    """What one evaluation found and did."""

    now: datetime.datetime
    conditions: list[Condition]
    sends: list[Send]
    outcomes: list[Outcome] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Context:
    """What every evaluation of one command line uses."""

    options: Options
    args: argparse.Namespace
    rules: Rules
    gauges: HealthGauges | None = None


def run(args: argparse.Namespace) -> int:
    """One evaluation, or a loop of them with ``--watch``; see the module's docstring for the exit status."""
    context = Context(store_options(args), args, _rules(args))
    _check_targets(context.rules)
    conditions_module.check_template(args.trace_url, "--trace-url")
    conditions_module.check_template(args.run_url, "--run-url")
    if args.watch is not None:
        if args.now is not None:
            raise CommandError("--now is for one evaluation, not --watch")
        return _watch(context)
    try:
        evaluation = evaluate(context, args.now or _utcnow())
    except _busy() as error:
        # Another evaluation of the location is under way and notifies what holds: this round is not needed.
        print(f"otel-datasink alert: skipped: {error}", file=sys.stderr)
        return EXIT_OK
    _print(evaluation, args.dry_run)
    return EXIT_FOUND if args.dry_run and evaluation.conditions else EXIT_OK


def _rules(args: argparse.Namespace) -> Rules:
    if args.rules is None:
        return Rules(default_targets=tuple(args.notify))
    try:
        return load_rules(args.rules, args.notify)
    except RulesError as error:
        raise CommandError(str(error)) from error


def _check_targets(rules: Rules) -> None:
    """A mistyped ``--notify`` or ``notify`` fails the command at once, not every evaluation's delivery."""
    from otel_datasink.alerts import delivery

    for target in rules.all_targets():
        try:
            delivery.check_target(target)
        except ValueError as error:
            raise CommandError(str(error)) from error


def _busy() -> type[Exception]:
    from otel_datasink.alerts.incidents import EvaluationBusy

    return EvaluationBusy


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def evaluate(context: Context, now: datetime.datetime) -> Evaluation:
    """Conditions -> incidents -> deliveries -> rows, under the location's lock (not taken by a dry run, which
    changes nothing)."""
    if context.args.dry_run:
        return _evaluate_unlocked(context, now)
    from otel_datasink.alerts import incidents

    with incidents.evaluation_lock(context.options) as held:
        return _evaluate_unlocked(context, now, held)


def _evaluate_unlocked(context: Context, now: datetime.datetime, held: Held | None = None) -> Evaluation:
    """One evaluation; ``held``: the lock, checked before sending (an S3 lease taken over while the conditions were
    read means another evaluator sends this round: :class:`~otel_datasink.alerts.incidents.LeaseLost`)."""
    from otel_datasink import local
    from otel_datasink.alerts import incidents
    from otel_datasink.catalog import pin_time

    args = context.args
    parameters = view_parameters(args)
    try:
        con = local.connect(
            context.options.location,
            parameters=parameters,
            must_exist=not args.allow_empty,
            s3_endpoint_url=context.options.s3_endpoint_url,
        )
    except local.NoTablesError as error:
        raise CommandError(f"{error} ({ALLOW_EMPTY_HINT})") from error
    try:
        pin_time(con, now, parameters)
        found = conditions_module.evaluate(con, context.rules, now, trace_url=args.trace_url, run_url=args.run_url)
        sends = incidents.plan(found, con, now, targets=context.rules.all_targets())
        if context.gauges is not None:
            from otel_datasink.alerts.metrics import read_health

            context.gauges.update(read_health(con, found))
    finally:
        con.close()
    evaluation = Evaluation(now, found, sends)
    if not args.dry_run and sends:
        repeat = datetime.timedelta(seconds=args.watch) if args.watch is not None else None
        if held is not None:
            held.check()  # lost: nothing sent, nothing written; the evaluator that holds the lease sends
        holding = held.held if held is not None else _always
        evaluation.outcomes = deliver(sends, _grouping(found, context.rules), args.timeout, repeat, holding)
        # Incidents none of whose targets is configured any more: their RESOLVED rows close them, nobody is told.
        evaluation.outcomes += incidents.to_nobody(sends)
        # Written even if the lease was lost meanwhile: these messages went out, and a history without them would
        # have the next evaluation send them again.
        _write(context.options, incidents.rows(evaluation.outcomes, now))
    return evaluation


def _grouping(found: Sequence[Condition], rules: Rules) -> Callable[[Send], str]:
    """A send's grouping: its condition's, or (a resolved incident, whose condition is gone) its rule's."""
    groups = {condition.key: condition.group for condition in found}

    def group(send: Send) -> str:
        n = send.notification
        job = n.details.get("job_name")
        return groups.get((n.kind, n.subject)) or rules.rule_for(n.kind, n.subject, job).group

    return group


def _always() -> bool:
    return True


def deliver(
    sends: Sequence[Send],
    group: Callable[[Send], str],
    timeout: float,
    repeat: datetime.timedelta | None = None,
    holding: Callable[[], bool] = _always,
) -> list[Outcome]:
    """Sends each target its notifications, targets in parallel (a slow one delays no other): one send per
    incident, and one for all of a target's ``digest`` notifications. A :class:`DeliveryError` fails only
    the notifications of that send. ``repeat``: the time to the next evaluation (``--watch``), so that
    Alertmanager keeps a firing alert until it is posted again. ``holding``: whether the evaluation still holds
    its lock, asked before each send; once it does not, what is left is not sent (and has no outcome). A send with
    no target (a closing: :func:`~otel_datasink.alerts.incidents.to_nobody`) is not sent, and has no outcome here."""
    by_target: dict[str, list[Send]] = {}
    for send in sends:
        if send.target is not None:
            by_target.setdefault(send.target, []).append(send)
    with ThreadPoolExecutor(max_workers=min(8, len(by_target)) or 1, thread_name_prefix="alert-send") as pool:
        results = pool.map(
            lambda item: _deliver_to(item[0], item[1], group, timeout, repeat, holding), by_target.items()
        )
        return [outcome for outcomes in results for outcome in outcomes]


def _deliver_to(
    target: str,
    sends: list[Send],
    group: Callable[[Send], str],
    timeout: float,
    repeat: datetime.timedelta | None,
    holding: Callable[[], bool],
) -> list[Outcome]:
    from otel_datasink.alerts import delivery

    digest = [send for send in sends if group(send) == "digest"]
    batches = [[send] for send in sends if group(send) != "digest"] + ([digest] if digest else [])
    outcomes: list[Outcome] = []
    for batch in batches:
        if not holding():  # another evaluator took the lock over: it sends these now
            _logger.warning(
                "lost the evaluation lock: %d notification(s) to %s not sent", len(batch), delivery.redact(target)
            )
            continue
        try:
            delivery.send(target, [send.notification for send in batch], timeout=timeout, repeat=repeat)
        except DeliveryError as error:
            _logger.warning("%s did not take %d notification(s): %s", delivery.redact(target), len(batch), error)
            outcomes.extend(Outcome(send, False, str(error)) for send in batch)
        else:
            outcomes.extend(Outcome(send, True, None) for send in batch)
    return outcomes


def _write(options: Options, rows: Any) -> None:
    from otel_datasink.writer import Writer

    Writer(options).write(rows)


# --- what is printed ---------------------------------------------------------------------------------------


def _print(evaluation: Evaluation, dry_run: bool) -> None:
    """One line per condition, one per notification (sent, failed, or would be sent), then a count line: a subject
    or summary with line breaks or terminal escapes in it stays on its line, inert (:func:`.escaping.one_line`)."""
    from otel_datasink.alerts import delivery
    from otel_datasink.alerts.escaping import one_line

    stamp = evaluation.now.isoformat(timespec="seconds")
    for condition in evaluation.conditions:
        owners = f" (owners {', '.join(condition.owners)})" if condition.owners else ""
        what = f"{condition.kind} {one_line(condition.subject)}: {one_line(condition.summary)}"
        print(f"{stamp} {condition.severity.upper()} {what}{owners}")
    if dry_run:
        for send in evaluation.sends:
            n = send.notification
            if send.target is None:
                print(f"{stamp} would close {n.kind} {one_line(n.subject)}: {n.details.get('closed')}")
            else:
                print(f"{stamp} would send {n.state} {n.kind} {one_line(n.subject)} to {delivery.redact(send.target)}")
    for send, delivered, error in evaluation.outcomes:
        n = send.notification
        if send.target is None:
            print(f"{stamp} closed: {n.kind} {one_line(n.subject)}: {n.details.get('closed')}")
            continue
        outcome = "sent" if delivered else f"FAILED ({error})"
        print(f"{stamp} {outcome}: {n.state} {n.kind} {one_line(n.subject)} to {delivery.redact(send.target)}")
    sent = sum(1 for send, delivered, _ in evaluation.outcomes if send.target is not None and delivered)
    failed = sum(1 for send, delivered, _ in evaluation.outcomes if send.target is not None and not delivered)
    done = evaluation.sends if dry_run else [send for send, _, _ in evaluation.outcomes]
    closed = sum(1 for send in done if send.target is None)
    to_send = len(evaluation.sends) - closed
    what = f"{to_send} to send (dry run)" if dry_run else f"{sent} sent, {failed} failed"
    if closed:  # said only when there are some: the count line's usual form is unchanged
        what += f", {closed} closed with no target to tell"
    print(f"{stamp} {len(evaluation.conditions)} open incident(s); notifications: {what}")
    sys.stdout.flush()


# --- --watch -----------------------------------------------------------------------------------------------


def _watch(context: Context) -> int:
    """Evaluates every ``--watch`` seconds until SIGTERM or SIGINT, which let the current evaluation finish."""
    from otel_datasink.alerts.metrics import HealthGauges, configure_from_environment

    provider = configure_from_environment()
    context = dataclasses.replace(context, gauges=HealthGauges())
    stop = threading.Event()
    try:
        with _stopped_by_signals(stop):
            print(f"watching {context.options.location} every {context.args.watch:g}s", flush=True)
            while not stop.is_set():
                _evaluate_in_loop(context)
                stop.wait(context.args.watch)
        print("stopped", flush=True)
    finally:
        if provider is not None:
            provider.shutdown()  # the last collection is exported, not lost
    return EXIT_OK


def _evaluate_in_loop(context: Context) -> None:
    """One evaluation of the loop: a failure (a store briefly unreachable) is reported and the loop goes on."""
    try:
        _print(evaluate(context, _utcnow()), context.args.dry_run)
    except _busy() as error:  # another evaluator of the location notifies this round
        print(f"otel-datasink alert: skipped: {error}", file=sys.stderr, flush=True)
    except Exception as error:  # noqa: BLE001 - the next evaluation may succeed; the loop must outlive this one
        from otel_datasink.cli import describe

        _logger.debug("evaluation failed", exc_info=True)
        print(f"otel-datasink alert: evaluation failed: {describe(error)}", file=sys.stderr, flush=True)


class _stopped_by_signals:  # noqa: N801 - used as a context manager, named like one
    """SIGTERM and SIGINT set ``stop`` (instead of raising mid-evaluation) while inside; handlers restored after."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        for number in (signal.SIGTERM, signal.SIGINT):
            self.previous[number] = signal.signal(number, self._handle)

    def _handle(self, number: int, frame: Any) -> None:
        _logger.info("%s: stopping after the current evaluation", signal.Signals(number).name)
        self.stop.set()

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
