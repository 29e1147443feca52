"""Collector settings: flags win over ``OTEL_EXPORTER_DATASINK_COLLECTOR_*``, which win over the defaults."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from otel_datasink.cli import main
from otel_datasink.collector.settings import CollectorSettings, default_spool_dir, parse_endpoint


def test_environment_variables_set_what_flags_leave_unset(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COLLECTOR_HTTP_ENDPOINT", "0.0.0.0:9318")
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COLLECTOR_GRPC_ENDPOINT", "none")
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN", "from-env")
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_AGE", "2500")
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_ROWS", "many")  # ignored with a warning

    settings = CollectorSettings.resolve(token="from-flag", spool_dir="~/spool")

    assert settings.http == ("0.0.0.0", 9318)
    assert settings.grpc is None
    assert settings.token == "from-flag"
    assert settings.flush_age == 2.5
    assert settings.flush_rows == CollectorSettings.flush_rows
    assert settings.spool_dir == Path("~/spool").expanduser()


def test_defaults_listen_on_localhost_and_spool_per_location(monkeypatch):
    for name in ("HTTP_ENDPOINT", "GRPC_ENDPOINT"):
        monkeypatch.delenv(f"OTEL_EXPORTER_DATASINK_COLLECTOR_{name}", raising=False)
    settings = CollectorSettings.resolve()

    assert (settings.http, settings.grpc) == (("127.0.0.1", 4318), ("127.0.0.1", 4317))
    assert default_spool_dir("s3://a/x") != default_spool_dir("s3://b/x")


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [("127.0.0.1:4318", ("127.0.0.1", 4318)), ("[::1]:4317", ("::1", 4317)), (":4318", ("0.0.0.0", 4318))],
)
def test_endpoints_parse(text, endpoint):
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize("argv", [["--http", "localhost"], ["--http", "none", "--grpc", "none"], ["--profile", "?"]])
def test_bad_command_lines_exit_2_with_a_message(argv, tmp_path, capsys):
    assert main(["collector", "--location", str(tmp_path), "--spool-dir", str(tmp_path / "spool"), *argv]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("otel-datasink collector: ")


def test_a_port_in_use_exits_with_a_message_not_a_traceback(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A process of its own: the collector tunes the garbage collector of the interpreter it runs in.
        command = [sys.executable, "-m", "otel_datasink.cli", "collector", "--location", str(tmp_path / "tables")]
        command += ["--spool-dir", str(tmp_path / "spool"), "--http", f"127.0.0.1:{port}", "--grpc", "none"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "otel-datasink collector: " in done.stderr and "address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_token_can_come_from_a_file_given_by_flag_or_environment(monkeypatch, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.delenv("OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN", raising=False)

    assert CollectorSettings.resolve(token_file=str(token_file)).token == "from-file"
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE", str(token_file))
    assert CollectorSettings.resolve().token == "from-file"
    assert CollectorSettings.resolve(token="from-flag").token == "from-flag"  # a flag beats either variable


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"token": "a", "token_file": "b"}, "not both"),
        ({"token_file": "/nonexistent/token"}, "cannot read the token file"),
        ({"max_inflight_bytes": 1024, "max_body_bytes": 2048}, "below max-body-bytes"),
        ({"header_timeout": 0}, "header-timeout must be more than 0"),
        ({"max_connections": 0}, "max-connections must be at least 1"),
    ],
)
def test_bad_limits_and_tokens_are_refused_once_with_a_message(values, message):
    with pytest.raises(ValueError, match=message):
        CollectorSettings.resolve(**values)


def test_an_empty_token_file_is_refused(tmp_path):
    (tmp_path / "token").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        CollectorSettings.resolve(token_file=str(tmp_path / "token"))


def test_limits_come_from_the_environment_in_milliseconds(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COLLECTOR_HEADER_TIMEOUT", "1500")
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COLLECTOR_BODY_TIMEOUT", "0")  # ignored with a warning
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_CONNECTIONS", "50")
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_INFLIGHT_BYTES", "33554432")

    settings = CollectorSettings.resolve(idle_timeout=2.0)

    assert (settings.header_timeout, settings.body_timeout, settings.idle_timeout) == (1.5, 30.0, 2.0)
    assert (settings.max_connections, settings.max_inflight_bytes) == (50, 32 * 1024 * 1024)


def test_the_token_file_flag_of_the_command_line_is_read(tmp_path, capsys):
    (tmp_path / "token").write_text("")
    assert main(["collector", "--location", str(tmp_path), "--token-file", str(tmp_path / "token")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("otel-datasink collector: ") and "is empty" in line
