"""One alert evaluation: the conditions that hold now -> the incidents' messages -> their delivery -> the ``alerts``
rows that record it, under the location's evaluation lock, so that two evaluations never tell of one event twice.

An :class:`Evaluator` is what every evaluation of one configuration uses (the location, the rules, the views'
parameters, the link templates, how long a delivery may take), checked when it is made;
:meth:`Evaluator.evaluate` runs one evaluation at an instant and returns what it found and did
(:class:`Evaluation`). ``otel-datasink alert`` makes one of its options and calls it, once or every ``--watch``
seconds.

:func:`evaluation_lock` is the location's lock (:mod:`otel_datasink.lease`: a flock on a local folder, a renewed
lease object on S3); :func:`deliver` sends each target its messages, targets in parallel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from otel_datasink import local
from otel_datasink.alerts import conditions, delivery, holds, incidents, sla
from otel_datasink.alerts.gauges import HealthGauges, read_health
from otel_datasink.alerts.model import Condition, DeliveryError, Outcome, Send
from otel_datasink.alerts.rules import Rules
from otel_datasink.catalog import ViewParameters, pin_time
from otel_datasink.config import Options
from otel_datasink.lease import DEFAULT_LEASE, Held, Lock, hold
from otel_datasink.writer import Writer

_logger = logging.getLogger(__name__)

LOCK_NAME = "_alerts.lock"
"""The lock file (local) or lease object (S3) under the location; a leading ``_`` hides it from readers."""
EVALUATION_LOCK = Lock(LOCK_NAME, what="evaluation", who="evaluator")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What one evaluation found and did."""

    now: datetime.datetime
    conditions: list[Condition]
    """The conditions that hold (one per open incident)."""
    sends: list[Send]
    """The messages they called for (those of a dry run were not sent)."""
    outcomes: list[Outcome] = dataclasses.field(default_factory=list)
    """What became of each message sent, and of each closing with no target; none in a dry run."""
    verdicts: list[sla.Verdict] = dataclasses.field(default_factory=list)
    """The SLA verdicts written (new periods and corrections); none in a dry run."""

    @property
    def failed(self) -> int:
        """The messages a target did not take."""
        return sum(1 for send, delivered, _ in self.outcomes if send.target is not None and not delivered)


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """What every evaluation of one configuration uses; a target or link template that cannot work raises
    ValueError when it is made (a command line fails at once, not every evaluation's delivery)."""

    options: Options
    """The location and how to reach it."""
    rules: Rules = Rules()
    parameters: ViewParameters = ViewParameters()
    trace_url: str | None = None
    """The trace link's template (fields :data:`.conditions.LINK_FIELDS`)."""
    run_url: str | None = None
    """The run link's template."""
    timeout: float = delivery.DEFAULT_TIMEOUT
    """Seconds a delivery to one target may take."""
    every: datetime.timedelta | None = None
    """The time between evaluations when they run in a loop (``--watch``): Alertmanager keeps a firing alert
    until it is posted again (:func:`.delivery.send`'s ``repeat``)."""
    dry_run: bool = False
    """Find and plan only: nothing is sent or written, and no lock taken."""
    allow_empty: bool = False
    """A location with no table is empty tables, not :class:`otel_datasink.local.NoTablesError`."""

    def __post_init__(self) -> None:
        for target in self.rules.all_targets():
            delivery.check_target(target)
        conditions.check_template(self.trace_url, "--trace-url")
        conditions.check_template(self.run_url, "--run-url")

    def evaluate(self, now: datetime.datetime, gauges: HealthGauges | None = None) -> Evaluation:
        """One evaluation at ``now``, under the location's lock (a dry run, which changes nothing, takes none);
        ``gauges`` get what it saw. Raises :class:`otel_datasink.lease.Busy` when another evaluation holds the
        lock: that one tells of what holds."""
        if self.dry_run:
            return self._evaluate(now, gauges)
        with evaluation_lock(self.options) as held:
            return self._evaluate(now, gauges, held)

    @property
    def targeted(self) -> bool:
        """Whether the configuration names any target (``--notify``, a rule's ``notify``): an evaluation with none
        plans nothing and changes no incident (a person trying ``otel-datasink alert`` without ``--notify`` closes
        nothing that the cron job's evaluations opened)."""
        return bool(self.rules.all_targets())

    def _evaluate(self, now: datetime.datetime, gauges: HealthGauges | None, held: Held | None = None) -> Evaluation:
        found, sends, judged = self._plan(now, gauges)
        if self.dry_run:
            return Evaluation(now, found, sends)
        if judged.new:  # read under the lock (in _plan) and written before it is let go: each verdict once
            Writer(self.options).write(judged.rows(now))
        if not any(send.target is not None or send.record for send in sends):
            return Evaluation(now, found, sends, verdicts=judged.new)
        outcomes = self._notify(found, sends, held, now)
        # Written even if the lease was lost meanwhile: these messages went out, and a history without them would
        # have the next evaluation send them again.
        Writer(self.options).write(incidents.rows(outcomes, now))
        return Evaluation(now, found, sends, outcomes, judged.new)

    def _plan(
        self, now: datetime.datetime, gauges: HealthGauges | None
    ) -> tuple[list[Condition], list[Send], sla.Judgement]:
        """The conditions that hold at ``now`` and the messages they call for, from the views as seen at ``now``."""
        con = local.connect(
            self.options.location,
            parameters=self.parameters,
            must_exist=not self.allow_empty,
            s3_endpoint_url=self.options.s3_endpoint_url,
        )
        try:
            pin_time(con, now, self.parameters)
            judged = sla.judge(con, self.rules, now)
            found = conditions.evaluate(
                con, self.rules, now, trace_url=self.trace_url, run_url=self.run_url, judged=judged
            )
            # No target at all: nobody to tell of any incident, so none is opened, resolved or closed (the next
            # evaluation with targets finds them as they were). SLA verdicts are data, written all the same.
            sends = (
                sla.with_resolutions(
                    incidents.plan(
                        found,
                        con,
                        now,
                        targets=self.rules.all_targets(),
                        holds=holds.read(con, now, lambda: conditions.subject_owners(con)),
                    ),
                    judged,
                )
                if self.targeted
                else []
            )
            if gauges is not None:
                gauges.update(read_health(con, found))
        finally:
            con.close()
        return found, sends, judged

    def texts(self, evaluation: Evaluation) -> list[tuple[str, str]]:
        """(target, text) of each message ``evaluation`` sends or would send (a dry run's), as :func:`deliver`
        makes them (one per incident, a digest of a target's ``digest`` sends), without contacting any target."""
        by_target: dict[str, list[Send]] = {}
        for send in evaluation.sends:
            if send.target is not None:
                by_target.setdefault(send.target, []).append(send)
        group = _grouping(evaluation.conditions, self.rules)
        return [
            (target, text)
            for target, sends in by_target.items()
            for batch in batches(sends, group)
            for text in delivery.texts(target, [send.notification for send in batch], evaluation.now)
        ]

    def _notify(
        self, found: Sequence[Condition], sends: Sequence[Send], held: Held | None, now: datetime.datetime
    ) -> list[Outcome]:
        """Delivers ``sends`` while ``held`` (an S3 lease taken over while the conditions were read means another
        evaluator sends this round: :class:`otel_datasink.lease.LeaseLost`, nothing sent)."""
        if held is not None:
            held.check()
        holding = held.held if held is not None else _always
        outcomes = deliver(sends, _grouping(found, self.rules), self.timeout, self.every, holding, now)
        # Incidents none of whose targets is configured any more: their RESOLVED rows close them, nobody is told;
        # a silence's first hold of an incident: its FIRING row with no target.
        return outcomes + incidents.to_nobody(sends)


def evaluation_lock(
    where: Writer | Options | str | os.PathLike,
    *,
    wait: float = 0.0,
    lease: datetime.timedelta = DEFAULT_LEASE,
    **options: Any,
) -> contextlib.AbstractContextManager[Held]:
    """Holds the location's evaluation lock for the block (:func:`otel_datasink.lease.hold`: a flock on a local
    folder, a renewed lease object on S3); raises :class:`otel_datasink.lease.Busy` when another evaluation holds it
    for longer than ``wait`` seconds (0 by default: ``otel-datasink alert`` under cron skips a round, it does not
    queue behind a slow one).

    Plan, send and write the rows inside the block: the next evaluation then reads this one's rows, so two
    evaluations never tell a target of one event twice. The block gets a :class:`~otel_datasink.lease.Held`: call
    its :meth:`~otel_datasink.lease.Held.check` (or ``held()``) before sending. ``lease`` is how long a crashed
    evaluator's S3 lease blocks the next ones.

    ``where`` is the location (with ``options`` of :class:`~otel_datasink.config.Options`), its Options, or a
    Writer of it.
    """
    return hold(where, EVALUATION_LOCK, wait=wait, lease=lease, **options)


def _grouping(found: Sequence[Condition], rules: Rules) -> Callable[[Send], str]:
    """A send's grouping: its condition's, or (a resolved incident, whose condition is gone) its rule's."""
    groups = {condition.key: condition.group for condition in found}

    def group(send: Send) -> str:
        n = send.notification
        job, owners = n.details.get("job_name"), n.details.get("owned_by") or ()
        return (
            groups.get((n.kind, n.subject))
            or rules.rule_for(n.kind, n.subject, job, owners, n.details.get("dataset")).group
        )

    return group


def _always() -> bool:
    return True


def deliver(
    sends: Sequence[Send],
    group: Callable[[Send], str],
    timeout: float,
    repeat: datetime.timedelta | None = None,
    holding: Callable[[], bool] = _always,
    now: datetime.datetime | None = None,
) -> list[Outcome]:
    """Sends each target its notifications, targets in parallel (a slow one delays no other): one send per
    incident, and one for all of a target's ``digest`` notifications. A :class:`DeliveryError` fails only
    the notifications of that send. ``repeat``: the time to the next evaluation (``--watch``), so that
    Alertmanager keeps a firing alert until it is posted again. ``holding``: whether the evaluation still holds
    its lock, asked before each send; once it does not, what is left is not sent (and has no outcome). A send with
    no target (a closing: :func:`~otel_datasink.alerts.incidents.to_nobody`) is not sent, and has no outcome here.
    ``now``: the evaluation's instant, the one clock of the messages' text."""
    by_target: dict[str, list[Send]] = {}
    for send in sends:
        if send.target is not None:
            by_target.setdefault(send.target, []).append(send)
    with ThreadPoolExecutor(max_workers=min(8, len(by_target)) or 1, thread_name_prefix="alert-send") as pool:
        results = pool.map(
            lambda item: _deliver_to(item[0], item[1], group, timeout, repeat, holding, now), by_target.items()
        )
        return [outcome for outcomes in results for outcome in outcomes]


def batches(sends: Sequence[Send], group: Callable[[Send], str]) -> list[list[Send]]:
    """The messages of one target's ``sends``: one per incident, and one for all of its ``digest`` sends."""
    digest = [send for send in sends if group(send) == "digest"]
    return [[send] for send in sends if group(send) != "digest"] + ([digest] if digest else [])


def _deliver_to(
    target: str,
    sends: list[Send],
    group: Callable[[Send], str],
    timeout: float,
    repeat: datetime.timedelta | None,
    holding: Callable[[], bool],
    now: datetime.datetime | None,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for batch in batches(sends, group):
        if not holding():  # another evaluator took the lock over: it sends these now
            _logger.warning(
                "lost the evaluation lock: %d notification(s) to %s not sent", len(batch), delivery.redact(target)
            )
            continue
        try:
            delivery.send(target, [send.notification for send in batch], timeout=timeout, repeat=repeat, now=now)
        except DeliveryError as error:
            # Said once, by the caller's report of the outcome (the command's FAILED line), not here too.
            _logger.debug("%s did not take %d notification(s): %s", delivery.redact(target), len(batch), error)
            outcomes.extend(Outcome(send, False, str(error)) for send in batch)
        else:
            outcomes.extend(Outcome(send, True, None) for send in batch)
    return outcomes
