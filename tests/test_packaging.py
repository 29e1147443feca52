"""Installs that fit the user: what importing the package costs, and what a front door says without its extra.

Each check runs in a fresh interpreter (``sys.modules`` of this test session already holds everything), and a
missing module is simulated there with ``sys.modules[name] = None``, which makes ``import name`` raise
``ModuleNotFoundError`` as if the distribution were not installed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_datasink.extras import EXTRAS, MissingExtraError, import_extra, needs

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
OPTIONAL = ("duckdb", "sqlglot", "aiohttp", "grpc", "s3fs", "google.protobuf", "opentelemetry.proto")
"""Modules of the extras: none may be imported by the package alone."""
HEAVY = ("pyarrow", "opentelemetry.sdk", *OPTIONAL)
"""What the pytest plugin, loaded by every pytest session, may not import."""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh interpreter of this environment."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def imported_after(statement: str, watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` are in ``sys.modules`` after ``statement``, in a fresh interpreter."""
    result = run_python(
        f"""
        import json, sys
        {statement}
        print(json.dumps([m for m in {list(watched)!r} if m in sys.modules]))
        """
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def error_without(module: str, statement: str) -> str:
    """The ``Type: message`` line of what ``statement`` raises with ``module`` missing (fresh interpreter)."""
    result = run_python(
        f"""
        import sys
        sys.modules[{module!r}] = None  # "import {module}" now raises ModuleNotFoundError
        try:
            {statement}
        except BaseException as error:
            print(f"{{type(error).__name__}}: {{error}}")
            print(isinstance(error, ImportError))
        else:
            print("no error")
        """
    )
    assert result.returncode == 0, result.stderr
    line, is_import_error = result.stdout.splitlines()
    assert is_import_error == "True", line
    return line


def test_importing_the_package_imports_no_extra_and_not_the_sdk_path() -> None:
    # Only the public names pull in the SDK path (a job configures the sink); the CLI and plugin import less.
    assert imported_after("import otel_datasink", HEAVY) == []


def test_the_public_names_still_import_from_the_package() -> None:
    statement = "from otel_datasink import DatasinkSpanExporter, DatasinkSpanProcessor, JobRun, configure, job_run"
    assert imported_after(statement, OPTIONAL) == []
    import otel_datasink

    assert set(otel_datasink.__all__) <= set(dir(otel_datasink))
    for name in otel_datasink.__all__:
        assert getattr(otel_datasink, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        otel_datasink.not_a_name  # noqa: B018 - the access is the test


def test_the_pytest_plugin_imports_neither_pyarrow_nor_the_sdk() -> None:
    assert imported_after("import pytest, otel_datasink.pytest_plugin", HEAVY) == []


def test_a_local_job_needs_no_extra() -> None:
    # The core install: the processor writing to a local folder, with every optional module missing.
    result = run_python(
        f"""
        import sys, tempfile
        for module in {list(OPTIONAL)!r}:
            sys.modules[module] = None
        from opentelemetry.sdk.trace import TracerProvider
        from otel_datasink import DatasinkSpanProcessor, job_run

        provider = TracerProvider()
        processor = DatasinkSpanProcessor(tempfile.mkdtemp(), timeout=10.0)
        provider.add_span_processor(processor)
        with job_run("nightly", tracer=provider.get_tracer("t")) as run:
            run.add_records(3)
        provider.shutdown()
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("module", ["duckdb", "sqlglot"])
def test_querying_without_the_query_extra_says_what_to_install(module: str) -> None:
    line = error_without(module, "from otel_datasink.local import connect")
    assert line == f"MissingExtraError: {module} is not installed: pip install 'otel-datasink[query]'"


def test_an_s3_location_without_the_s3_extra_says_what_to_install() -> None:
    # Raised where the location is opened, before any request: configure() fails at once, not at the first flush.
    line = error_without("s3fs", "from otel_datasink import DatasinkSpanProcessor; DatasinkSpanProcessor('s3://b/p')")
    assert line == "MissingExtraError: s3fs is not installed: pip install 'otel-datasink[s3]'"


def test_the_datasink_db_fixture_without_the_query_extra_says_what_to_install(tmp_path: Path) -> None:
    line = error_without(
        "duckdb",
        f"""from opentelemetry.sdk.trace import TracerProvider
            from otel_datasink.pytest_plugin import DatasinkDB
            DatasinkDB(TracerProvider(), {str(tmp_path)!r})""",
    )
    assert line == "MissingExtraError: duckdb is not installed: pip install 'otel-datasink[query]'"


def test_needs_names_the_distribution_and_the_extra() -> None:
    with pytest.raises(MissingExtraError) as caught, needs("collector"):
        raise ModuleNotFoundError("No module named 'grpc'", name="grpc")
    assert str(caught.value) == "grpcio is not installed: pip install 'otel-datasink[collector]'"
    assert isinstance(caught.value, ImportError) and caught.value.extra == "collector"
    # A missing parent package ("google" when nothing of Google's is installed) is the module missing too.
    with pytest.raises(MissingExtraError, match=r"^protobuf is not installed: pip install 'otel-datasink\[replay\]'$"):
        with needs("replay"):
            raise ModuleNotFoundError("No module named 'google'", name="google")


def test_needs_leaves_other_import_errors_alone() -> None:
    # A module outside the extra, or one installed but broken: its own error is clearer than "install the extra".
    with pytest.raises(ModuleNotFoundError, match="aiobotocore"), needs("s3"):
        raise ModuleNotFoundError("No module named 'aiobotocore'", name="aiobotocore")
    with pytest.raises(ImportError, match="cannot import name") as caught, needs("query"):
        raise ImportError("cannot import name 'exp' from 'sqlglot'", name="sqlglot")
    assert not isinstance(caught.value, MissingExtraError)
    with pytest.raises(ValueError, match="unknown extra 'sql'"), needs("sql"):
        pass


def test_import_extra_returns_the_module() -> None:
    assert import_extra("duckdb", "query") is sys.modules["duckdb"]


def optional_dependencies() -> dict[str, list[str]]:
    """``[project.optional-dependencies]`` of pyproject.toml."""
    with PYPROJECT.open("rb") as file:
        return tomllib.load(file)["project"]["optional-dependencies"]


def distributions(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """The distribution names an extra brings, through ``otel-datasink[...]`` references too."""
    names: set[str] = set()
    for requirement in extras[extra]:
        match = re.match(r"([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", requirement)
        assert match, requirement
        name, rest = match.groups()
        if name == "otel-datasink" and rest:
            for included in rest.split(","):
                names |= distributions(included.strip(), extras)
        else:
            names.add(name.lower())
    return names


def test_the_error_messages_and_pyproject_name_the_same_extras() -> None:
    # A message saying "pip install 'otel-datasink[query]'" must install what the front door imports.
    extras = optional_dependencies()
    for extra, modules in EXTRAS.items():
        assert set(modules.values()) <= distributions(extra, extras), extra
    assert set(EXTRAS) <= set(extras)
    assert {d for e in EXTRAS for d in EXTRAS[e].values()} <= distributions("all", extras)
    assert distributions("all", extras) <= distributions("test", extras)


@pytest.mark.parametrize(
    ("command", "module", "extra"),
    [
        (["query", "SELECT 1"], "duckdb", "query"),
        (["status"], "duckdb", "query"),
        (["ddl", "--location", "s3://bucket/prefix"], "sqlglot", "query"),
        (["demo"], "duckdb", "query"),
        (["replay", "traces.jsonl"], "google.protobuf", "replay"),
        (["collector"], "aiohttp", "collector"),
    ],
)
def test_a_command_without_its_extra_fails_in_one_line_naming_it(
    tmp_path: Path, command: list[str], module: str, extra: str
) -> None:
    result = run_python(
        f"""
        import sys
        sys.modules[{module!r}] = None
        from otel_datasink.cli import main
        sys.exit(main({[*command, "--location", str(tmp_path / "datasink")] if command[0] != "ddl" else command!r}))
        """
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [
        f"otel-datasink {command[0]}: {EXTRAS[extra][module]} is not installed: pip install 'otel-datasink[{extra}]'"
    ]
    assert not (tmp_path / "datasink").exists()  # the demo failed before any job wrote a row
