"""The profile protocol, and the helpers every profile shares (the built-in ones and mapping files)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from otel_datasink import semconv
from otel_datasink.mapping import MappedSpan, SpanRecord, is_job_span

Profile = Callable[[SpanRecord], MappedSpan]
"""``SpanRecord -> SpanRecord | Sequence[SpanRecord] | None`` (:data:`~otel_datasink.mapping.MappedSpan`): None for
a span that is not a job run, else the span in the contract's conventions, or a record for each run of a span that
reports several (a retried Prefect task's tries). It may declare ``job_keys`` (see :func:`job_keys_of`)."""


class ProfileError(ValueError):
    """A profile that cannot be loaded: an unknown name, or a mapping file that is not valid."""


def job_keys_of(profile: Profile) -> frozenset[str] | None:
    """The attribute keys of which a span must carry at least one for ``profile`` to take it, or None.

    None means the profile cannot tell from attribute keys alone (it may select a span by its name or resource
    only): every span must then be decoded and shown to it. A span carrying none of the keys is never a run.
    """
    return getattr(profile, "job_keys", None)


def takes_only_spans_with(*keys: str) -> Callable[[Profile], Profile]:
    """Declares a built-in profile's ``job_keys``: ``job.name`` (every profile takes contract spans) and ``keys``."""

    def declare(profile: Profile) -> Profile:
        profile.job_keys = frozenset((semconv.JOB_NAME, *keys))  # type: ignore[attr-defined]
        return profile

    return declare


@takes_only_spans_with()
def default_profile(record: SpanRecord) -> SpanRecord | None:
    """The contract's conventions: a span is a job run when it carries ``job.name``."""
    return record if is_job_span(record) else None


def rewritten(
    record: SpanRecord,
    contract: Mapping[str, Any],
    *,
    status_code: int | None = None,
    status_message: str | None = None,
) -> SpanRecord:
    """``record`` with the contract's attributes a profile read (None values left out) and its status."""
    # The span's own attributes stay (the mapping keeps them in the attributes column); what the profile
    # read wins over a contract attribute of the same name.
    attributes = dict(record.attributes)
    attributes.update((key, value) for key, value in contract.items() if value is not None)
    changes: dict[str, Any] = {"attributes": attributes}
    if status_code is not None:
        changes["status_code"] = status_code
    if status_message:
        changes["status_message"] = status_message
    return dataclasses.replace(record, **changes)


def given(value: Any) -> Any:
    """A value really set, else None: Airflow writes ``str(None)`` for missing dates and ids."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null")):
        return None
    return value
