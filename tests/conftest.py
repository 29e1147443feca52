"""The fixtures the test modules share: a real S3 API (moto's server, in its own process on 127.0.0.1), clean
locations and a reader of their tables.

Fixtures only: the helpers the tests call live in the helper modules beside (``network``, ``disks``,
``collectors``, ...), which a test imports by name; no test module imports another, or anything from here
(``test_architecture`` checks).
"""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from report_scenario import build_platform_report, build_report
from s3_server import MotoServer
from table_reader import TableReader


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto S3 server for the session, with fake credentials in the environment."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    os.environ.pop("AWS_PROFILE", None)
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_location(moto_server: MotoServer) -> str:
    """``s3://<fresh bucket>/datasink`` on the moto server.

    Pass ``s3_endpoint_url=moto_server.endpoint_url`` to whatever writes or reads it.
    """
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/datasink"


@pytest.fixture
def local_location(tmp_path) -> str:
    """A fresh local folder for the tables."""
    return str(tmp_path / "datasink")


@pytest.fixture
def read_tables() -> Callable[..., TableReader]:
    """``read_tables(location, endpoint_url=None)``: a :class:`TableReader` of a location."""
    return TableReader


@pytest.fixture(scope="module")
def seeded_report(tmp_path_factory) -> tuple[str, datetime.datetime, Path]:
    """The report tests' scenario at a fresh location, its instant, and the page ``otel-datasink report`` built of
    it (:func:`report_scenario.build_report`): once for each module that asks."""
    return build_report(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def platform_report(tmp_path_factory) -> tuple[str, datetime.datetime, Path]:
    """A platform of pipelines, owners, lineage and checks (:func:`report_scenario.seed_platform`), its instant,
    and its page (:func:`report_scenario.build_platform_report`): once for each module that asks."""
    return build_platform_report(tmp_path_factory.mktemp("platform"))
