"""Stale datasets held up by an upstream incident: grouped under it, like Alertmanager's inhibition, but told.

A stale dataset's root cause (``stale_datasets``' ``root_cause_dataset``, ``root_cause_job``, ``root_cause``) is
upstream of it when its ``hops`` are above 0: a failing job, or the most upstream stale dataset. Its condition then
says so ("dataset mart.orders is stale because raw.orders is stale: load_raw failing 3 runs: source bucket
unreachable"). It is *held up* when the root's own condition holds in the same evaluation with a target: the
failing job's ``failing_job`` (its rule's ``failure_streak`` reached), or the root dataset's ``stale_dataset`` (a
root of its own). Then:

- the root's incident lists the datasets it holds up (``details.holds_up``, and its summary: "holds up 2 stale
  datasets: mart.orders, report.daily");
- the held-up dataset is told only to its targets that the root's incident does not reach (a team owning the root
  and the dataset hears of the root alone; with no target left the dataset is no incident of its own, and one
  open is closed saying by which incident it is held up), once: no reminder while it is held up (the root's
  incident reminds), and as a digest, so that a target hears of all the datasets of one evaluation in one message.

A stale dataset whose root has no condition (a streak below its rule's ``failure_streak``, a root muted or routed
nowhere, a cycle of stale datasets, each the other's root) is an incident of its own, with its cause in its summary.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence

from otel_datasink.alerts.model import Condition

HELD_SUPPRESS = datetime.timedelta(days=3650)
"""The suppression of a held-up dataset's incident: told once; the root's incident is the one that reminds."""
LISTED = 5
"""Held-up datasets named in the root's summary; all of them are in its ``details.holds_up``."""


def hold_up(found: Sequence[Condition]) -> list[Condition]:
    """``found`` with each stale dataset's cause in its summary, and those held up by another condition grouped
    under it (see the module)."""
    by_key = {condition.key: condition for condition in found}
    holds: dict[tuple[str, str], list[str]] = {}
    told: list[Condition] = []
    for condition in found:
        root = _holding(condition, by_key)
        if root is not None:
            holds.setdefault(root.key, []).append(condition.subject)
            told.append(_held(condition, root))
        elif _root_key(condition) is not None:
            told.append(_with_cause(condition))
        else:
            told.append(condition)
    return [_holder(condition, holds[condition.key]) if condition.key in holds else condition for condition in told]


def held_up_reason(condition: Condition) -> str | None:
    """Why a held-up condition with no target left is no incident of its own (``details.closed``), else None."""
    by = condition.details.get("held_up_by")
    return f"held up by {by}, whose incident tells of it" if by else None


def _root_key(condition: Condition) -> tuple[str, str] | None:
    """The (kind, subject) of a stale dataset's upstream root cause; None when it has none (its own root)."""
    facts = condition.details
    if condition.kind != "stale_dataset" or not facts.get("root_cause_hops"):
        return None
    if facts.get("root_cause_job"):
        return ("failing_job", facts["root_cause_job"])
    return ("stale_dataset", facts["root_cause_dataset"])


def _holding(condition: Condition, by_key: Mapping[tuple[str, str], Condition]) -> Condition | None:
    """The condition holding ``condition`` up: its root's, when that holds, has a target and is a root itself."""
    key = _root_key(condition)
    root = by_key.get(key) if key is not None else None
    if root is None or not root.targets or _root_key(root) is not None:
        return None
    return root


def _with_cause(condition: Condition) -> Condition:
    summary = f"dataset {condition.subject} is stale because {condition.details['root_cause']}"
    return dataclasses.replace(condition, summary=summary)


def _held(condition: Condition, root: Condition) -> Condition:
    caused = _with_cause(condition)
    return dataclasses.replace(
        caused,
        details={**caused.details, "held_up_by": f"{root.kind} of {root.subject}"},
        targets=tuple(target for target in condition.targets if target not in root.targets),
        suppress=HELD_SUPPRESS,
        group="digest",
    )


def _holder(root: Condition, held: list[str]) -> Condition:
    held = sorted(held)
    named = ", ".join(held[:LISTED]) + (f" and {len(held) - LISTED} more" if len(held) > LISTED else "")
    datasets = "dataset" if len(held) == 1 else "datasets"
    return dataclasses.replace(
        root,
        summary=f"{root.summary}; holds up {len(held)} stale {datasets}: {named}",
        details={**root.details, "holds_up": held},
    )
