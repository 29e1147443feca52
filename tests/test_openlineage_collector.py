"""``POST /api/v1/lineage``: openlineage-python's real HTTP transport against the real collector process, the
collector's answers to bad input (each its status, counted, the next request served), and durability."""

from __future__ import annotations

import datetime
import gzip
import json

import pytest
import requests
from collectors import TOKEN, CollectorProcess, get, gzip_bomb, metric_samples, post_lineage, rows, start_collector
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import RunState
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpCompression, HttpConfig, HttpTransport
from openlineage.client.uuid import generate_new_uuid
from openlineage_events import FIXTURES, event, now, run_event

from otel_datasink.local import connect


def client_for(port: int, token: str | None = TOKEN, compression: HttpCompression | None = None) -> OpenLineageClient:
    """openlineage-python's client with its HTTP transport, configured as Airflow's provider and dbt-ol configure it
    (``url`` + default ``endpoint`` ``api/v1/lineage``, ``auth`` type ``api_key``); no retries, so a refusal shows."""
    auth = ApiKeyTokenProvider({"apiKey": token}) if token else None
    config = HttpConfig.from_dict(
        {
            "url": f"http://127.0.0.1:{port}",
            "timeout": 10,
            "retry": {"total": 0},
            **({"compression": "gzip"} if compression else {}),
        }
    )
    if auth is not None:
        config.auth = auth
    return OpenLineageClient(transport=HttpTransport(config))


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_the_real_client_over_http_gives_rows_in_the_views(local_location, tmp_path):
    collector = CollectorProcess(
        local_location, tmp_path / "spool", tmp_path / "log", "--token", TOKEN, "--flush-age", "3600"
    )
    try:
        plain, gzipped = client_for(collector.port), client_for(collector.port, compression=HttpCompression.GZIP)
        ok, failed, parent = str(generate_new_uuid()), str(generate_new_uuid()), str(generate_new_uuid())
        started, later = now(), now() + datetime.timedelta(minutes=1)
        for client, one in [
            (plain, run_event(RunState.START, started, ok, parent=parent)),
            (gzipped, run_event(RunState.COMPLETE, started, ok, rows=1200, parent=parent)),
            (gzipped, run_event(RunState.START, started, failed, job="publish")),
            (plain, run_event(RunState.RUNNING, started, failed, job="publish")),
            (plain, run_event(RunState.FAIL, later, failed, job="publish", error="upstream table missing")),
        ]:
            client.emit(one)  # raises on an answer that is not 2xx
        with pytest.raises(requests.HTTPError) as refused:
            client_for(collector.port, token="wrong").emit(run_event(RunState.START, started, ok))
        assert refused.value.response.status_code == 401
        samples = metric_samples(get(collector.port, "/metrics")[1])
    finally:
        assert collector.stop() == 0, (tmp_path / "log").read_text()

    assert samples['otel_datasink_collector_requests_total{protocol="openlineage",status="200"}'] == 5
    assert samples['otel_datasink_collector_requests_total{protocol="openlineage",status="401"}'] == 1
    assert samples['otel_datasink_collector_openlineage_events_total{event_type="RUNNING"}'] == 1
    assert samples["otel_datasink_collector_openlineage_runs_total"] == 4
    with connect(local_location) as con:
        runs = con.execute(
            "select job_name, status, records_processed, error_message, attributes['openlineage.parent.run_id'] "
            "from job_runs_latest order by job_name"
        ).fetchall()
        datasets = con.execute("select dataset, last_status, last_run_id from dataset_status_latest").fetchall()
    assert runs == [
        ("load_orders", "SUCCESS", 1200, None, parent),
        ("publish", "FAILED", None, "upstream table missing", None),
    ]
    assert datasets == [("postgres://warehouse:5432/shop.public.orders", "FAILED", failed)]


def test_acknowledged_events_survive_sigkill_and_are_written_on_restart(local_location, tmp_path):
    spool = tmp_path / "spool"
    first = CollectorProcess(local_location, spool, tmp_path / "log", "--flush-age", "3600")
    run_id = str(generate_new_uuid())
    client = client_for(first.port, token=None)
    client.emit(run_event(RunState.START, now(), run_id))
    client.emit(run_event(RunState.COMPLETE, now(), run_id, rows=7))
    first.kill()
    assert rows(local_location, timeout=0) == []  # only in the spool

    second = CollectorProcess(local_location, spool, tmp_path / "log", "--flush-age", "0.2")
    try:
        written = rows(local_location, expect=2, timeout=10)
        updates = rows(local_location, "dataset_status", expect=1, timeout=10)
    finally:
        assert second.stop() == 0
    assert sorted(row["status"] for row in written) == ["STARTED", "SUCCESS"]
    assert [row["records_written"] for row in updates] == [7]


@pytest.fixture
def collector(local_location, tmp_path):
    running = start_collector(local_location, tmp_path / "spool", token=TOKEN, max_body_bytes=256 * 1024)
    yield running
    running.stop()


def _good() -> bytes:
    return json.dumps(event(RunState.START, now(), str(generate_new_uuid()))).encode()


def _huge_facet(size: int) -> bytes:
    one = event(RunState.COMPLETE, now(), str(generate_new_uuid()))
    one["run"]["facets"]["spark_logicalPlan"] = {"plan": [{"node": "x" * 100, "id": i} for i in range(size // 120)]}
    return json.dumps(one).encode()


def _with(change) -> bytes:
    one = event(RunState.START, now(), str(generate_new_uuid()))
    change(one)
    return json.dumps(one).encode()


BAD_REQUESTS = {
    "not json": (400, b"{not json", "application/json", {}, "undecodable OpenLineage JSON"),
    "not utf-8": (400, b'{"eventType": "' + bytes([0xFF, 0xFE]) + b'"}', "application/json", {}, "undecodable"),
    "empty body": (400, b"", "application/json", {}, "undecodable OpenLineage JSON"),
    "not an object": (400, b'"START"', "application/json", {}, "event: must be a JSON object"),
    "schema-invalid": (400, _with(lambda one: one.update(eventTime=17)), "application/json", {}, "eventTime: not an"),
    "missing run id": (400, _with(lambda one: one["run"].pop("runId")), "application/json", {}, "run.runId: missing"),
    "unknown event type": (400, _with(lambda one: one.update(eventType="DONE")), "application/json", {}, "eventType"),
    "bad event in a batch": (
        400,
        json.dumps([json.loads(_good()), {"eventType": "START"}]).encode(),
        "application/json",
        {},
        "[1].eventTime: missing",
    ),
    "deeply nested": (400, b"[" * 100_000 + b"]" * 100_000, "application/json", {}, "OpenLineage"),
    "huge facet over the limit": (413, _huge_facet(300 * 1024), "application/json", {}, "over"),
    "gzip bomb": (413, None, "application/json", {"Content-Encoding": "gzip"}, "over"),
    "wrong content type": (415, _good(), "text/plain", {}, "content type"),
    "protobuf": (415, bytes([0x0A, 0x00]), "application/x-protobuf", {}, "content type"),
    "missing token": (401, _good(), "application/json", {"Authorization": None}, "token"),
    "wrong token": (401, _good(), "application/json", {"Authorization": "Bearer nope"}, "token"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_input_gets_its_status_is_counted_and_the_next_request_is_served(collector, local_location, case):
    status, body, content_type, headers, message = BAD_REQUESTS[case]
    headers = {k: v for k, v in {**auth(), **headers}.items() if v is not None}
    got, _, answer = post_lineage(collector.http_port, gzip_bomb() if body is None else body, content_type, **headers)

    assert got == status
    assert message in json.loads(answer)["message"]
    samples = metric_samples(get(collector.http_port, "/metrics")[1])
    assert samples[f'otel_datasink_collector_requests_total{{protocol="openlineage",status="{status}"}}'] == 1
    assert post_lineage(collector.http_port, _good(), **auth())[0] == 200
    assert len(rows(local_location, expect=1)) == 1


def test_a_huge_facet_within_the_limit_and_gzip_and_a_batch_are_taken(collector, local_location):
    huge = _huge_facet(200 * 1024)
    assert 200 * 1024 - 1024 < len(huge) < 256 * 1024
    assert post_lineage(collector.http_port, huge, **auth())[:1] == (200,)
    assert post_lineage(collector.http_port, gzip.compress(huge), **{**auth(), "Content-Encoding": "gzip"})[0] == 200
    run_id = str(generate_new_uuid())
    batch = [event(RunState.START, now(), run_id), event(RunState.COMPLETE, now(), run_id, rows=3)]
    assert post_lineage(collector.http_port, json.dumps(batch).encode(), **auth())[0] == 200
    written = rows(local_location, expect=4)
    assert sorted(row["status"] for row in written) == ["STARTED", "SUCCESS", "SUCCESS", "SUCCESS"]
    # Only the fields the mapping reads are kept: a huge facet costs the request, not the row.
    assert max(len(json.dumps(row["attributes"])) for row in written) < 2048


def test_the_dbt_ol_fixtures_posted_one_event_a_request_are_the_rows_replay_writes(collector, local_location):
    sent = 0
    for line in (FIXTURES / "dbt" / "dbt-ol-run-structured-logs.jsonl").read_text().splitlines():
        assert post_lineage(collector.http_port, line.encode(), **auth())[0] == 200
        sent += 1
    written = rows(local_location, expect=sent, timeout=10)
    assert len(written) == sent  # every event of this file is a START, COMPLETE or FAIL
    failed = sorted(row["job_name"] for row in written if row["status"] == "FAILED")
    assert failed == ["dbt-run-shop", "model.shop.order_status", "model.shop.order_status.sql.2"]
