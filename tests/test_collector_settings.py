"""Collector settings: flags win over ``OTEL_EXPORTER_DATASINK_COLLECTOR_*``, which win over the defaults."""

from __future__ import annotations

import argparse
import ast
import itertools
import logging
import os
import re
import socket
from pathlib import Path

import pytest
from command_line import assert_one_line_failure, cli

from otel_datasink import config
from otel_datasink import environment_variables as env
from otel_datasink.cli import main
from otel_datasink.collector.settings import SETTINGS, CollectorSettings, default_spool_dir, flag_name, parse_endpoint
from otel_datasink.commands.collector import FLAGS, add_arguments

DEPLOY = Path(__file__).parent.parent / "deploy"


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


@pytest.mark.parametrize("option", ["--http", "--grpc"])
def test_a_port_in_use_fails_in_one_line_naming_the_address_and_its_option(tmp_path, option):
    # It logged "collector stopped; every batch written", then the bare "[Errno 98] ..." (gRPC: its own log line
    # and "RuntimeError: Failed to bind"), with no word of the option to change. The other receiver is on: its
    # address is not announced as listening when the collector does not start.
    other = "--grpc" if option == "--http" else "--http"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        # A process of its own: the collector tunes the garbage collector of the interpreter it runs in.
        done = cli(
            "collector", "--location", str(tmp_path / "tables"), "--spool-dir", str(tmp_path / "spool"),
            option, address, other, "127.0.0.1:0",
        )  # fmt: skip
    assert_one_line_failure(done, "collector", f"cannot listen on {address} ({option}): address already in use")


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
        ({"header_timeout": 0}, "header-timeout: must be more than 0"),
        ({"max_connections": 0}, "max-connections: must be at least 1"),
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


@pytest.fixture
def no_collector_environment(monkeypatch):
    """No collector variable of the developer's shell, and no value warned about by an earlier test."""
    for name in list(os.environ):
        if name.startswith("OTEL_EXPORTER_DATASINK_COLLECTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(config, "_warned", set())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_pending_batches", 0),  # answered 503 forever
        ("flush_rows", 0),
        ("flush_bytes", -1),
        ("flush_age", 0),
        ("shutdown_timeout", -1),
        ("offload_bytes", 0),
        ("max_body_bytes", 1.5),
        ("idle_timeout", float("nan")),
        ("spool_dir", ""),
        ("grpc", ("localhost", 70000)),
    ],
)
def test_a_bad_flag_or_argument_is_refused_naming_its_flag(no_collector_environment, name, value):
    flag = name.replace("_", "-")
    with pytest.raises(ValueError, match=f"^{flag}: "):
        CollectorSettings.resolve(**{name: value})
    with pytest.raises(ValueError, match=f"^{flag}: "):
        CollectorSettings(**{name: value})


def test_a_zero_shutdown_timeout_is_accepted_since_the_spool_keeps_the_rows(no_collector_environment):
    assert CollectorSettings.resolve(shutdown_timeout=0).shutdown_timeout == 0


@pytest.mark.parametrize(
    ("suffix", "raw", "name"),
    [
        ("FLUSH_ROWS", "0", "flush_rows"),
        ("FLUSH_ROWS", "-5", "flush_rows"),
        ("FLUSH_BYTES", "0", "flush_bytes"),
        ("FLUSH_AGE", "0", "flush_age"),
        ("FLUSH_AGE", "-1000", "flush_age"),
        ("MAX_BODY_BYTES", "0", "max_body_bytes"),
        ("MAX_CONNECTIONS", "-1", "max_connections"),
        ("HEADER_TIMEOUT", "inf", "header_timeout"),
        ("HTTP_ENDPOINT", "localhost", "http"),
        ("MAX_INFLIGHT_BYTES", "1024", "max_inflight_bytes"),  # below the largest request
    ],
)
def test_a_bad_environment_value_is_warned_about_once_and_the_default_used(
    no_collector_environment, monkeypatch, caplog, suffix, raw, name
):
    variable = f"OTEL_EXPORTER_DATASINK_COLLECTOR_{suffix}"
    monkeypatch.setenv(variable, raw)
    for _ in range(2):
        assert getattr(CollectorSettings.resolve(), name) == getattr(CollectorSettings(), name)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and variable in r.getMessage()]
    assert repr(raw) in warning and "using the default" in warning


def test_flag_types_refuse_non_positive_values_with_the_flags_name(capsys):
    parser = argparse.ArgumentParser(prog="collector")
    add_arguments(parser)
    assert parser.parse_args(["--max-pending-batches", "2", "--flush-age", "2.5"]).flush_age == 2.5
    for argv, message in (
        (["--max-pending-batches", "0"], "argument --max-pending-batches: must be at least 1, not 0"),
        (["--max-pending-batches", "two"], "argument --max-pending-batches: must be a whole number, not 'two'"),
        (["--flush-age", "-1"], "argument --flush-age: must be more than 0 seconds, not -1"),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert message in capsys.readouterr().err


def test_a_zero_pending_batches_flag_is_a_usage_error_naming_the_flag(tmp_path, capsys):
    argv = ["collector", "--location", str(tmp_path), "--spool-dir", str(tmp_path / "spool")]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--max-pending-batches", "0"])
    assert exited.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == "otel-datasink collector: error: argument --max-pending-batches: must be at least 1, not 0"


def test_the_help_of_each_flag_names_its_variable_and_the_default_of_its_setting(capsys):
    with pytest.raises(SystemExit):
        main(["collector", "--help"])
    # One entry per option, each starting on a line of its own; argparse wraps the help.
    entries = [" ".join(entry.split()) for entry in re.split(r"\n  (?=-)", capsys.readouterr().out)]
    helps = {entry.split()[0]: entry for entry in entries}
    for name, setting in FLAGS.items():
        described = helps[f"--{flag_name(name)}"]
        assert described.endswith(f"default {setting.describe_default()})"), described
        assert (setting.variable or setting.help) in described, described
    assert helps["--header-timeout"].endswith("(env OTEL_EXPORTER_DATASINK_COLLECTOR_HEADER_TIMEOUT in ms; default 10)")


# --- the docs of the settings, held to their one description (CollectorSettings' fields) ---------------------------


def _readme_table() -> dict[str, tuple[str, str]]:
    """The rows of deploy/README.md's settings table: for each flag, its variable's cell and its default's."""
    section = (DEPLOY / "README.md").read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]  # a cell's "\|" is text
        flag = re.match(r"`(--[a-z-]+)", cells[0]) if len(cells) == 3 else None
        if flag:
            rows[flag.group(1)] = (cells[1], cells[2])
    return rows


@pytest.mark.parametrize("name", list(FLAGS))
def test_the_deploy_readme_gives_each_flag_its_variable_and_the_default_help_shows(name):
    setting = FLAGS[name]
    variable_cell, default_cell = _readme_table()[f"--{flag_name(name)}"]
    assert re.findall(r"OTEL_\w+", variable_cell) == ([setting.variable] if setting.variable else [])
    unit = setting.kind.variable_unit
    if setting.variable:
        assert (f"({unit})" in variable_cell) if unit else "(" not in variable_cell
    shown = setting.describe_default()
    assert re.match(re.escape(shown) + r"(?![\w.])", default_cell.replace("`", "")), (shown, default_cell)


def _collector_env() -> dict[str, str]:
    """deploy/collector.env's variables, set or commented out, and their values."""
    return dict(re.findall(r"^#? ?(OTEL_EXPORTER_DATASINK_\w+)=(.*)$", (DEPLOY / "collector.env").read_text(), re.M))


DEPLOYMENT_VALUES = {
    env.OTEL_EXPORTER_DATASINK_COLLECTOR_HTTP_ENDPOINT,  # every interface, in a container
    env.OTEL_EXPORTER_DATASINK_COLLECTOR_GRPC_ENDPOINT,
    env.OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN,  # change-me
    env.OTEL_EXPORTER_DATASINK_COLLECTOR_SPOOL_DIR,  # on a volume
}
"""The variables deploy/collector.env sets otherwise than their defaults, on purpose."""


@pytest.mark.parametrize("name", [name for name, setting in SETTINGS.items() if setting.variable])
def test_collector_env_sets_each_variable_to_its_default_unless_a_deployment_changes_it(name):
    setting = SETTINGS[name]
    values = _collector_env()
    assert setting.variable in values, f"deploy/collector.env lacks {setting.variable}"
    value = setting.check(setting.parse(values[setting.variable]))  # as the collector reads it
    if setting.variable not in DEPLOYMENT_VALUES:
        assert value == setting.default, (setting.variable, values[setting.variable])


def test_the_token_file_is_in_the_deploy_readme_and_collector_env():
    variable = env.OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE
    assert variable in _readme_table()["--token-file"][0] and variable in _collector_env()


def _variable_docs() -> dict[str, str]:
    """The docstring of each variable of otel_datasink/environment_variables.py."""
    body = ast.parse(Path(env.__file__).read_text()).body
    return {
        node.targets[0].id: doc.value.value
        for node, doc in itertools.pairwise(body)
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(doc, ast.Expr)
        and isinstance(doc.value, ast.Constant)
    }


@pytest.mark.parametrize("name", [name for name, setting in SETTINGS.items() if setting.variable])
def test_each_collector_variable_is_documented_with_its_default(name):
    setting = SETTINGS[name]
    stated = re.search(r"Default: `*([^`\s(]+?)`*\.?(?:\s|$)", _variable_docs()[setting.variable])
    assert stated, f"{setting.variable}'s docstring states no default"
    if setting.default is not None:  # None: made at start (the spool folder), or not set (the token)
        assert setting.check(setting.parse(stated.group(1))) == setting.default, (setting.variable, stated.group(1))
