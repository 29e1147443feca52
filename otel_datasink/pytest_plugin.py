"""pytest fixtures for testing one's own instrumented jobs locally (entry point ``pytest11``, always active).

- ``datasink_location``: a fresh folder for the tables (``str``).
- ``datasink_tracer_provider``: a ``TracerProvider`` with a :class:`DatasinkSpanProcessor` writing to that
  folder; hand it (or ``provider.get_tracer(...)``) to the job under test. Shut down after the test.
- ``datasink_db``: a :class:`DatasinkDB`; each query first flushes the provider, then runs on a fresh
  :func:`otel_datasink.local.connect` of the folder, so it sees everything the job did until then.

``datasink_db`` needs the ``query`` extra (DuckDB); without it the test errors at setup with the line to install
it, and the other fixtures still work.

Imports are deferred to the fixtures (the package's own ``__init__`` imports nothing either): pytest loads this
module in every session of every environment with otel-datasink installed, most of which never use it, so it
must cost them neither pyarrow nor the OpenTelemetry SDK nor DuckDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    import duckdb
    from opentelemetry.sdk.trace import TracerProvider


class DatasinkDB:
    """The tables and views of a test's location, flushed from its TracerProvider before each query."""

    def __init__(self, provider: TracerProvider, location: str) -> None:
        # Imported here, when the fixture is set up: without the query extra the test errors before it runs,
        # with the one line that says what to install (otel_datasink.extras.MissingExtraError).
        from otel_datasink.local import connect

        self._connect = connect
        self.provider = provider
        self.location = location
        self._connection: duckdb.DuckDBPyConnection | None = None

    def connect(self) -> duckdb.DuckDBPyConnection:
        """Flushes the provider and returns a new DuckDB connection with the tables and views."""
        if not self.provider.force_flush():
            raise TimeoutError("the DatasinkSpanProcessor could not write its rows in time")
        self.close()
        self._connection = self._connect(self.location)
        return self._connection

    def sql(self, query: str, parameters: list[Any] | None = None) -> list[tuple]:
        """The rows of a query (after a flush), as tuples."""
        return self.connect().execute(query, parameters).fetchall()

    def rows(self, query: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
        """The rows of a query (after a flush), as dicts keyed by column."""
        cursor = self.connect().execute(query, parameters)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        """Closes the last connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@pytest.fixture
def datasink_location(tmp_path: Path) -> str:
    """A fresh local folder for the ``job_runs`` and ``dataset_status`` tables of one test."""
    return str(tmp_path / "datasink")


@pytest.fixture
def datasink_tracer_provider(datasink_location: str) -> Iterator[TracerProvider]:
    """A TracerProvider whose job spans land in ``datasink_location`` (a DatasinkSpanProcessor)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from otel_datasink.processor import DatasinkSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "pytest"}))
    provider.add_span_processor(DatasinkSpanProcessor(datasink_location, schedule_delay=0.1, timeout=10.0))
    yield provider
    provider.shutdown()


@pytest.fixture
def datasink_db(datasink_tracer_provider: TracerProvider, datasink_location: str) -> Iterator[DatasinkDB]:
    """Queries over what the test's jobs wrote: ``datasink_db.rows("SELECT * FROM job_runs_latest")``."""
    db = DatasinkDB(datasink_tracer_provider, datasink_location)
    yield db
    db.close()
