"""The in-flight byte budget shared by the collector's receivers: holds, growth, waiting in order, timeouts; and the
estimate of what decoding a request takes, which it holds while the request is decoded."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import gc
import json
import multiprocessing
import random
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_datasink.collector.counters import Metrics
from otel_datasink.collector.ingest import Ingest
from otel_datasink.collector.server import _GC_THRESHOLD, ByteBudget, Collector
from otel_datasink.formats import Format
from otel_datasink.profiles import default_profile


def test_holds_grow_and_shrink_within_the_limit_and_give_everything_back():
    budget = ByteBudget(100)
    first = budget.hold(60)
    assert budget.hold(50) is None  # refused at once: 110 > 100
    assert first.grow_to(90) and not first.grow_to(101)
    first.shrink_to(10)
    second = budget.hold(90)
    assert budget.used == 100
    first.release()
    second.release()
    second.release()  # twice gives nothing back twice
    assert budget.used == 0


def test_waiters_are_served_in_order_and_a_timed_out_one_holds_nothing():
    async def scenario() -> tuple[list[str], int, int]:
        budget = ByteBudget(100)
        held = budget.hold(100)
        order: list[str] = []

        async def wait(name: str, size: int, timeout: float) -> None:
            hold = await budget.wait_hold(size, timeout)
            order.append(name if hold is not None else f"{name} timed out")
            if hold is not None:
                await asyncio.sleep(0.01)
                hold.release()

        tasks = [
            asyncio.ensure_future(wait("big", 80, 1.0)),
            asyncio.ensure_future(wait("small", 10, 1.0)),
            asyncio.ensure_future(wait("late", 50, 0.05)),
        ]
        await asyncio.sleep(0.02)
        during = budget.hold(0) is not None and budget.hold(1) is None  # an empty body never waits; others queue
        await asyncio.sleep(0.1)
        held.release()
        await asyncio.gather(*tasks)
        return order, budget.used, during

    order, used, during = asyncio.run(scenario())

    assert order == ["late timed out", "big", "small"]
    assert used == 0
    assert during


def test_a_cancelled_waiter_gives_back_what_it_was_granted():
    async def scenario() -> int:
        budget = ByteBudget(100)
        held = budget.hold(100)
        task = asyncio.ensure_future(budget.wait_hold(50, 5.0))
        await asyncio.sleep(0.01)
        held.release()  # grants the waiter its 50 bytes...
        task.cancel()  # ...but it is cancelled before it runs again
        try:
            await task
        except asyncio.CancelledError:
            pass
        return budget.used

    assert asyncio.run(scenario()) == 0


# --- the decoded size: what decoding a request takes, estimated before it is decoded ----------------------------


def _decoding_growth(kind: int, body: bytes) -> tuple[int, int]:
    """In a process of its own: (the estimate of decoding ``body``, what decoding it took), in bytes of resident memory
    (its peak, past what the process held before: decoding, mapping, converting to Arrow, freeing the rows)."""
    ingest = Ingest(default_profile, Metrics())
    collector = Collector.__new__(Collector)  # only its decoding step, not a running collector
    collector.ingest = ingest
    estimate = ingest.decoded_size(kind, body)
    # What a running collector loaded already.
    collector._rows_of(kind, body[:0] if kind == Format.OTLP_PROTOBUF else b"{}")
    collector._rows_of(Format.OTLP_PROTOBUF, _spans(10).SerializeToString())
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLD)  # the collector process's
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
    before = _status_bytes("VmRSS")
    collector._rows_of(kind, body)
    return estimate, _status_bytes("VmHWM") - before


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


def _spans(count: int, attributes: int = 0, events: int = 0) -> ExportTraceServiceRequest:
    """Job spans of ids, an end time and a short job name, with ``attributes`` of unique values and ``events``
    dataset updates each: the most objects per byte (every value new, so none is shared by the decoding's cache)."""
    rng = random.Random(count)
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for index in range(count):
        span = spans.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8), end_time_unix_nano=1)
        span.attributes.add(key="job.name").value.string_value = "j"
        for number in range(attributes):
            span.attributes.add(key=f"a{number}").value.string_value = f"{index}.{number}"
        for number in range(events):
            event = span.events.add(name="dataset.update")
            event.attributes.add(key="dataset.name").value.string_value = f"t{number}"
    return request


def _otlp_json(request: ExportTraceServiceRequest) -> bytes:
    document = json_format.MessageToDict(request)
    for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for field in ("traceId", "spanId"):
            span[field] = base64.b64decode(span[field]).hex()
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        pytest.param(Format.OTLP_PROTOBUF, lambda: _spans(40_000).SerializeToString(), id="small spans, counted"),
        pytest.param(Format.OTLP_PROTOBUF, lambda: _spans(8_000).SerializeToString(), id="small spans, under 1 MiB"),
        pytest.param(
            Format.OTLP_PROTOBUF, lambda: _spans(1_000, attributes=127).SerializeToString(), id="127 attributes"
        ),
        pytest.param(Format.OTLP_PROTOBUF, lambda: _spans(500, events=127).SerializeToString(), id="127 events"),
        pytest.param(Format.OTLP_JSON, lambda: _otlp_json(_spans(20_000)), id="small spans, OTLP JSON"),
    ],
)
def test_the_decoded_size_estimate_is_at_least_what_decoding_takes(kind, make):
    body = make()
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        estimate, took = process.submit(_decoding_growth, kind, body).result(timeout=120)

    assert took > 0
    assert estimate >= took, f"{len(body)} bytes: estimated {estimate / 2**20:.1f} MiB, took {took / 2**20:.1f} MiB"
