"""otel_datasink.sdk: the SDK's private fields are still where the adapter reads them, and the fallback maps alike.

The first tests fail when an OpenTelemetry SDK upgrade renames a field the adapter reads: the code would then
take its public fallback and stay correct but slower, which no other test would notice.
"""

from __future__ import annotations

import types
from collections import deque

import pytest
from opentelemetry import context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

from otel_datasink import sdk
from otel_datasink.sdk import from_readable_span


@pytest.fixture
def provider():
    provider = TracerProvider(resource=Resource.create({"service.name": "orders-etl"}))
    yield provider
    provider.shutdown()


def _ended_span(provider):
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("ingest", attributes={"job.name": "ingest"}) as span:
        span.add_event("dataset.update", {"dataset.name": "orders", "dataset.records_written": 3})
    (ended,) = exporter.get_finished_spans()
    return ended


def test_the_installed_sdk_takes_the_private_path_for_a_spans_attributes_and_events(provider):
    span = _ended_span(provider)

    attributes = sdk.span_dict(span)
    events = sdk.event_deque(span)

    assert attributes.__class__ is dict and attributes == {"job.name": "ingest"}
    assert events.__class__ is deque and [event.name for event in events] == ["dataset.update"]
    assert sdk.bounded_dict(events[0].attributes) == {"dataset.name": "orders", "dataset.records_written": 3}
    assert sdk.bounded_dict(span.resource.attributes)["service.name"] == "orders-etl"
    # The mapping reads them in place, not a copy.
    record = from_readable_span(span)
    assert record.attributes is attributes
    assert record.events[0][2] is sdk.bounded_dict(events[0].attributes)


def test_the_installed_sdk_takes_the_private_path_for_a_live_spans_attributes(provider):
    with provider.get_tracer("test").start_as_current_span("ingest", attributes={"job.name": "ingest"}) as span:
        live = sdk.span_dict(span)
        assert live.__class__ is dict and live == {"job.name": "ingest"}
        span.set_attribute("job.records_processed", 5)
        assert live["job.records_processed"] == 5  # the span's own dict: on_start copies it


def test_the_installed_sdk_takes_the_private_path_for_a_providers_span_processors(provider):
    ours = BatchSpanProcessor(InMemorySpanExporter())
    provider.add_span_processor(ours)

    assert sdk.span_processors(provider) == (ours,)


def test_the_installed_api_has_the_key_that_suppresses_instrumentation():
    assert sdk.SUPPRESS_INSTRUMENTATION_KEY is not None
    with sdk.instrumentation_suppressed():
        assert context.get_value(sdk.SUPPRESS_INSTRUMENTATION_KEY) is True
    assert context.get_value(sdk.SUPPRESS_INSTRUMENTATION_KEY) is None


def test_without_the_private_fields_the_public_api_gives_the_same_record(provider):
    span = _ended_span(provider)
    # A ReadableSpan built with plain containers has neither BoundedAttributes nor a BoundedList.
    public = ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=dict(span.attributes),
        events=tuple(span.events),
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
    )
    assert sdk.span_dict(public) is None and sdk.event_deque(public) is None

    assert from_readable_span(public) == from_readable_span(span)


def test_objects_without_the_private_fields_fall_back_to_their_public_api():
    span = types.SimpleNamespace(attributes={"job.name": "x"}, events=("event",))

    assert sdk.span_attributes(span) == {"job.name": "x"}
    assert sdk.span_events(span) == ("event",)
    assert sdk.plain(None) == {} and sdk.plain({"a": 1}) == {"a": 1}
    assert sdk.span_processors(NoOpTracerProvider()) is None
