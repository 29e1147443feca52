"""Mapping profiles: which spans are job runs, and how their attributes read in the contract's conventions.

A profile is a callable ``SpanRecord -> SpanRecord | None``: None for a span that is not a job run, else
the span rewritten so that the default mapping reads it (``job.name``, ``job.run.attempt``, ...).
"""

from __future__ import annotations

from collections.abc import Callable

from otel_datasink.mapping import SpanRecord, is_job_span

Profile = Callable[[SpanRecord], "SpanRecord | None"]


def default_profile(record: SpanRecord) -> SpanRecord | None:
    """The contract's conventions: a span is a job run when it carries ``job.name``."""
    return record if is_job_span(record) else None


DEFAULT_PROFILE: Profile = default_profile


def load_profile(name: str | None) -> Profile:
    """The profile named by an option or ``OTEL_EXPORTER_DATASINK_PROFILE``; raises ValueError if unknown."""
    if name in (None, "", "default"):
        return DEFAULT_PROFILE
    raise ValueError(f"unknown mapping profile {name!r} (known: default)")
