"""The collector's fast path gives the answers of decoding every span: the same rows, counters and truncation.

The collector skips a span that carries none of its profile's job keys without decoding it
(:func:`otel_datasink.otlp.records_from_protobuf` with ``job_keys``); the slow path here decodes every span and shows
each to the profile in :func:`~otel_datasink.mapping.map_records`. One mixed request holds every producer (the
contract, Airflow, Prefect's captured traces, CI/CD, a mapping file's spans) beside spans of none: whole scopes of
them, a request of nothing else, a span naming a job key only in a value, runs whose enclosing job span is reached
only through spans that are no runs, and a span past the attribute and event limits.
"""

from __future__ import annotations

import base64
import collections
import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits as SdkSpanLimits
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_payloads import checked_spans, job_spans, nightly_spans, otlp_json

from otel_datasink.collector.counters import Metrics
from otel_datasink.collector.ingest import Ingest
from otel_datasink.config import SpanLimits
from otel_datasink.formats import Format
from otel_datasink.mapping import Truncation, map_records, spans_of
from otel_datasink.otlp import records_from_json, records_from_protobuf
from otel_datasink.profiles import job_keys_of, load_profile

PREFECT = Path(__file__).parent / "fixtures" / "prefect"
LIMITS = SpanLimits(attributes=16, events=4)
RULES = """
[[rule]]
select.has_attributes = ["etl.pipeline"]
columns.job_name = { attribute = "etl.pipeline" }
"""
RESOURCE_RULES = """
[[rule]]
select.resource = { "service.name" = "loader" }
columns.job_name = { attribute = "load.table" }
"""


def _provider(service: str) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    # Beyond the collector's limits, so that they, not the SDK's, cut the big span.
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        span_limits=SdkSpanLimits(max_span_attributes=1000, max_events=1000),
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _platform_spans() -> list:
    """Runs nested through spans that are no runs, a big span, CI/CD, mapping-file spans and other producers'."""
    provider, memory = _provider("platform")
    jobs, web, ci = provider.get_tracer("etl"), provider.get_tracer("flask"), provider.get_tracer("github-actions")
    with jobs.start_as_current_span("outer", attributes={"job.name": "outer"}):
        with web.start_as_current_span("GET /orders", attributes={"http.route": "/orders"}):
            with web.start_as_current_span("SELECT", attributes={"db.system": "duckdb"}):
                jobs.start_span("inner", attributes={"job.name": "inner"}).end()
        with web.start_as_current_span("GET /?q=job.name", attributes={"url.query": "q=job.name&dag_id=x"}):
            jobs.start_span("named", attributes={"job.name": "named", "job.parent.name": "given"}).end()
    big = {f"extra.{i:03}": i for i in range(40)} | {"job.name": "big", "zz.after.limit": "dropped"}
    with jobs.start_as_current_span("big", attributes=big) as span:
        for i in range(10):
            span.add_event("dataset.update", {"dataset.name": f"table_{i}"})
    with ci.start_as_current_span("Build", attributes={"cicd.pipeline.name": "Build", "cicd.pipeline.result": "ok"}):
        ci.start_span("test", attributes={"cicd.pipeline.task.name": "test"}).end()
    provider.get_tracer("etl-runner").start_span("load", attributes={"etl.pipeline": "nightly"}).end()
    provider.shutdown()
    loader, loaded = _provider("loader")
    loader.get_tracer("loader").start_span("copy", attributes={"load.table": "orders"}).end()
    loader.shutdown()
    return list(memory.get_finished_spans()) + list(loaded.get_finished_spans())


def _airflow_spans() -> list:
    """An Airflow 3 DAG run and its task try, and Airflow 2.10 scheduler spans carrying ``dag_id`` that are no runs."""
    provider, memory = _provider("airflow")
    tracer = provider.get_tracer("airflow")
    run_id = "scheduled__2026-11-27T00:00:00+00:00"
    dag = {"airflow.dag_id": "etl_orders", "airflow.dag_run.run_id": run_id}
    with tracer.start_as_current_span("dag_run.etl_orders", attributes=dag):
        task = dag | {"airflow.task_id": "extract", "airflow.task_instance.try_number": 1}
        tracer.start_span("task_run.extract", attributes=task | {"airflow.task_instance.state": "success"}).end()
    tracer.start_span("_update_state", attributes={"dag_id": "etl_orders", "run_id": run_id, "state": "ok"}).end()
    provider.shutdown()
    return list(memory.get_finished_spans())


def _prefect_request(path: Path) -> ExportTraceServiceRequest:
    """A captured Prefect trace file (OTLP JSON lines: Prefect's spans and its server's own) as one request."""
    request = ExportTraceServiceRequest()
    for line in path.read_text().splitlines():
        document = json.loads(line)
        for resource_spans in document["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                for span in scope_spans["spans"]:
                    for field in ("traceId", "spanId", "parentSpanId"):
                        if span.get(field):
                            span[field] = base64.b64encode(bytes.fromhex(span[field])).decode()
        request.MergeFrom(json_format.ParseDict(document, ExportTraceServiceRequest(), ignore_unknown_fields=True))
    return request


@pytest.fixture(scope="module")
def mixed_request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for spans in (job_spans(3), nightly_spans(1), checked_spans(), _airflow_spans(), _platform_spans()):
        request.MergeFrom(encode_spans(spans))
    for path in sorted(PREFECT.glob("*.jsonl")):
        request.MergeFrom(_prefect_request(path))
    return request


def _comparable(rows: dict) -> dict:
    return {
        table: [{k: v for k, v in row.items() if k != "ingested_at"} for row in table_rows]
        for table, table_rows in rows.items()
    }


def _slow(body: bytes, profile) -> tuple[dict, Truncation, int]:
    """Every span decoded and shown to the profile: rows, truncation, spans."""
    records, rejected, spans = records_from_protobuf(body, limits=LIMITS)
    assert not rejected
    truncation = Truncation()
    return map_records(records, profile, limits=LIMITS, counts=truncation), truncation, spans


@pytest.mark.parametrize("profile_name", ["default", "contract,airflow", "etl.toml", "loader.toml"])
def test_the_fast_path_gives_the_rows_counters_and_truncation_of_decoding_every_span(
    mixed_request, profile_name, tmp_path
):
    (tmp_path / "etl.toml").write_text(RULES)
    (tmp_path / "loader.toml").write_text(RESOURCE_RULES)
    profile = load_profile(str(tmp_path / profile_name) if profile_name.endswith(".toml") else profile_name)
    body = mixed_request.SerializeToString()
    ingest = Ingest(profile, Metrics(), limits=LIMITS)

    fast = ingest.decode(Format.OTLP_PROTOBUF, body)
    fast_json = ingest.decode(Format.OTLP_JSON, json.dumps(otlp_json(mixed_request)).encode())
    rows, truncation, spans = _slow(body, profile)

    for result in (fast, fast_json):
        assert _comparable(result.rows) == _comparable(rows)
        assert result.truncation == truncation
        assert (result.spans, result.job_spans, int(result.rejected)) == (spans, spans_of(rows["job_runs"]), 0)
    assert fast.unrecognised == fast_json.unrecognised  # the JSON path decodes every span, then skips
    runs = {run["job_name"]: run for run in rows["job_runs"]}
    if profile_name == "default":  # what the mixed request is there to exercise
        assert (runs["inner"]["parent_job_name"], runs["named"]["parent_job_name"]) == ("outer", "given")
        assert truncation.dropped_attributes and truncation.dropped_events
        assert {"Build", "test", "etl_orders", "etl_orders.extract", "ingest_orders", "big"} <= set(runs)
        assert any(name.startswith("prefect-flow-") for name in runs)
        assert fast.unrecognised["flask"] == 3  # the one naming job keys in its values too
    if job_keys_of(profile) is None:  # a rule selecting by resource: every span is shown to the profile
        assert "orders" in runs


def test_a_request_of_no_job_span_is_counted_per_scope_and_makes_no_rows(mixed_request):
    request = ExportTraceServiceRequest()
    for resource_spans in mixed_request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            if scope_spans.scope.name in ("flask", "fastapi", "docket.worker"):
                kept = request.resource_spans.add(resource=resource_spans.resource)
                kept.scope_spans.append(scope_spans)
    body = request.SerializeToString()
    fast = Ingest(load_profile(None), Metrics()).decode(Format.OTLP_PROTOBUF, body)

    scopes: collections.Counter[str] = collections.Counter()
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            scopes[scope_spans.scope.name] += len(scope_spans.spans)
    from_json: collections.Counter[str] = collections.Counter()
    records_from_json(otlp_json(request), job_keys=job_keys_of(load_profile(None)), unrecognised=from_json)
    assert (fast.row_count, fast.job_spans, fast.spans) == (0, 0, sum(scopes.values()))
    assert fast.unrecognised == scopes == from_json


def test_a_request_of_no_job_span_is_counted_unread_so_a_malformed_attribute_in_it_fails_nothing():
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    scope_spans.scope.name = "flask"
    span = scope_spans.spans.add(trace_id=b"\1" * 16, span_id=b"\2" * 8, end_time_unix_nano=1, name="GET /")
    span.attributes.add(key="url.path").value.string_value = "PPPP"
    body = request.SerializeToString().replace(b"PPPP", b"\xff" * 4)  # not UTF-8: a full parse fails
    with pytest.raises(DecodeError):
        records_from_protobuf(body)

    unrecognised: collections.Counter[str] = collections.Counter()
    records, rejected, spans = records_from_protobuf(body, job_keys=frozenset({"job.name"}), unrecognised=unrecognised)

    assert (records, int(rejected), spans, unrecognised) == ([], 0, 1, {"flask": 1})
