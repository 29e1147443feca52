"""``otel-datasink serve``'s JSON API, through a real ``serve`` process: ``/api/views`` lists the views,
``/api/views/NAME`` answers a view's rows as JSON (ISO 8601 instants, bounded, filtered by column, read when
asked), an unknown view or a bad parameter is a JSON error, and the API is behind the page's Host and token checks.
"""

from __future__ import annotations

import http.client
import json
import re

import pytest
from job_spans import MINUTE_NS, job_span, now_ns, write_spans
from serve_process import serving

from otel_datasink import catalog
from otel_datasink.report.jsonapi import MAX_LIMIT

pytest.importorskip("vl_convert", reason="the report extra (vl-convert-python) is not installed")

ISO_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _run(job: str, failed: bool = False):
    end = now_ns()
    return job_span(job, end - MINUTE_NS, end, failed=failed, dataset=f"{job}_out")


def _get(line: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, object]:
    """Status, content type and body (parsed when JSON) of ``GET path`` to the server that printed ``line``."""
    port = int(re.search(r"http://\S+:(\d+)/", line).group(1))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read().decode()
    finally:
        connection.close()
    kind = response.getheader("Content-Type")
    return response.status, kind, json.loads(body) if kind == "application/json" else body


@pytest.fixture
def location(tmp_path) -> str:
    """An empty location: its page is quick to build; the tests write their runs once the server is up (which
    the API must see, read when asked)."""
    folder = tmp_path / "datasink"
    folder.mkdir()
    return str(folder)


def test_the_api_answers_the_views_as_json_with_what_was_written_since_it_started(location):
    with serving(location, "--listen", "127.0.0.1:0") as line:
        write_spans(location, [_run("extract"), _run("load", failed=True), _run("load")])

        status, kind, listing = _get(line, "/api/views")
        assert (status, kind) == (200, "application/json")
        assert [view["name"] for view in listing["views"]] == list(catalog.VIEWS)

        status, _, answer = _get(line, "/api/views/job_runs_latest?job_name=load&status=FAILED&limit=5")
        assert status == 200 and answer["view"] == "job_runs_latest" and answer["truncated"] is False
        (row,) = answer["rows"]
        assert (row["job_name"], row["status"], row["dataset"]) == ("load", "FAILED", "load_out")
        assert ISO_INSTANT.fullmatch(row["end_time"]) and set(row) == set(answer["columns"])

        status, _, answer = _get(line, "/api/views/job_runs_latest?limit=1&order=-end_time")
        assert status == 200 and len(answer["rows"]) == 1 and answer["truncated"] is True

        for path, expected, words in [
            ("/api/views/no_such_view", 404, "no view"),
            ("/api/views/job_runs;DROP%20TABLE%20job_runs", 404, "no view"),
            ("/api/views/job_runs", 404, "no view"),  # a table, not a view of catalog.VIEWS
            (f"/api/views/job_runs_latest?limit={MAX_LIMIT + 1}", 400, "limit"),
            ("/api/views/job_runs_latest?limit=ten", 400, "limit"),
            ('/api/views/job_runs_latest?job_name"%20OR%201=1--=x', 400, "no column"),
            ("/api/views/job_runs_latest?order=-nothing", 400, "no column"),
        ]:
            status, kind, answer = _get(line, path)
            assert (status, kind) == (expected, "application/json") and words in answer["error"], (path, answer)


def test_with_a_token_the_api_answers_only_those_who_hold_it_on_an_allowed_host(location, tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    with serving(location, "--listen", "127.0.0.1:0", "--token-file", str(tmp_path / "token")) as line:
        write_spans(location, [_run("extract")])
        assert _get(line, "/api/views/job_runs_latest")[0] == 401
        assert _get(line, "/api/views", {"Authorization": "Bearer wrong"})[0] == 401
        bearer = {"Authorization": "Bearer s3cret"}
        assert _get(line, "/api/views", {**bearer, "Host": "evil.example"})[0] == 403
        status, _, answer = _get(line, "/api/views/job_runs_latest", bearer)
        assert status == 200 and [row["job_name"] for row in answer["rows"]] == ["extract"]
