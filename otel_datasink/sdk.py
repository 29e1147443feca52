"""The OpenTelemetry SDK adapter: SDK spans as :class:`~otel_datasink.mapping.SpanRecord` (:func:`from_readable_span`),
and the SDK's private fields that otel-datasink reads, in one place, each with a public fallback.

Why private fields at all: the public accessors copy, and they run where copies cost. ``span.attributes`` wraps
the SDK's ``BoundedAttributes`` (a MutableMapping whose every lookup runs Python code) in a MappingProxyType,
30 times slower to copy than the plain dict inside it, in the job's own thread (``on_start``/``on_end``);
``span.events`` copies the events under a lock into a tuple for every span mapped; and a TracerProvider has no
public list of its span processors, which the exit hook needs to flush only the ones holding our spans.

Each reader falls back to the public API when a field is missing or not of the expected type: an SDK that
renames one makes otel-datasink slower (or, at exit, flush the whole provider), never wrong.
``tests/test_sdk_adapter.py`` asserts that the installed SDK still takes the private path, so that a rename
fails a test instead of passing silently as a slowdown.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import attach, detach, set_value
from opentelemetry.trace import StatusCode

from otel_datasink.mapping import Event, SpanRecord

SUPPRESS_INSTRUMENTATION_KEY: str | None
try:  # the key OpenTelemetry's instrumentations check before making spans of their own
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as SUPPRESS_INSTRUMENTATION_KEY
except ImportError:  # pragma: no cover - an API that renamed it: the store's requests may then be traced
    SUPPRESS_INSTRUMENTATION_KEY = None


@contextlib.contextmanager
def instrumentation_suppressed() -> Iterator[None]:
    """Runs the body with OpenTelemetry's instrumentations off (private ``_SUPPRESS_INSTRUMENTATION_KEY``), so
    that the writer's own requests (botocore, aiohttp) do not become spans of the job."""
    if SUPPRESS_INSTRUMENTATION_KEY is None:
        yield
        return
    token = attach(set_value(SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        detach(token)


def bounded_dict(attributes: Any) -> dict[str, Any] | None:
    """The plain dict inside the SDK's ``BoundedAttributes`` (private ``_dict``), None for anything else."""
    if attributes.__class__ is not BoundedAttributes:
        return None
    inner = getattr(attributes, "_dict", None)
    return inner if inner.__class__ is dict else None


def plain(attributes: Any) -> Mapping[str, Any]:
    """Attributes (of a span, an event or a resource) as a plain dict where the SDK keeps one, read in place.

    The dict is the SDK's own: callers only read it (an ended span's or a resource's no longer changes).
    """
    inner = bounded_dict(attributes)
    return inner if inner is not None else (attributes or {})


def span_dict(span: Any) -> dict[str, Any] | None:
    """A span's own attribute dict (private ``span._attributes._dict``), None where the SDK keeps none."""
    # Inline rather than through bounded_dict: called twice per span in the job's thread (on_start, on_end).
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    return inner if inner.__class__ is dict else None


def span_attributes(span: Any) -> Mapping[str, Any]:
    """A span's attributes, read in place (not copied): the SDK's own dict, else ``span.attributes``.

    A live span's dict still changes: copy it (``dict.copy()``, one C call) to keep what it holds now.
    """
    return span_dict(span) or span.attributes or {}


def event_deque(span: Any) -> deque | None:
    """The deque of an SDK span's events (private ``span._events._dq``), None where the SDK keeps none."""
    events = getattr(getattr(span, "_events", None), "_dq", None)
    return events if events.__class__ is deque else None


def span_events(span: Any) -> Sequence[Any]:
    """An ended span's events, not copied (they no longer change): the SDK's deque, else ``span.events``."""
    events = event_deque(span)
    return events if events is not None else span.events


_STATUS_CODES = {code: code.value for code in StatusCode}


def from_readable_span(span: Any, *, started_attributes: Mapping[str, Any] | None = None) -> SpanRecord:
    """A :class:`~otel_datasink.mapping.SpanRecord` of an ended SDK span or, given the attributes it had then, of its
    start."""
    ctx = span.context
    parent = span.parent
    status = span.status
    resource = span.resource
    if started_attributes is None:
        # The SDK's own dict and deque, not the copies its public properties make (see the module's docstring).
        attributes = span_attributes(span)
        raw_events = span_events(span)
        events: Sequence[Event] = [(e.name, e.timestamp, plain(e.attributes)) for e in raw_events] if raw_events else ()
        end_time_ns = span.end_time
    else:
        attributes, events, end_time_ns = started_attributes, (), None
    code = status.status_code
    status_code = _STATUS_CODES.get(code)  # an Enum's .value is a descriptor call, 4x a dict lookup
    return SpanRecord(
        span.name,
        ctx.trace_id,
        ctx.span_id,
        parent.span_id if parent is not None else None,
        span.start_time or 0,
        end_time_ns,
        code.value if status_code is None else status_code,
        status.description or "",
        attributes,
        events,
        plain(resource.attributes) if resource is not None else {},
    )


def span_processors(provider: Any) -> tuple[Any, ...] | None:
    """The span processors of an SDK TracerProvider (private ``_active_span_processor._span_processors``), or
    None where they cannot be found (another provider, or a renamed field)."""
    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", None)
    return processors if isinstance(processors, tuple) else None
