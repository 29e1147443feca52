"""The rules file: what it reads, which rule selects a condition, and each mistake named with its key and line."""

from __future__ import annotations

import datetime
import re
import shutil
from pathlib import Path

import pytest

from otel_datasink.alerts.rules import DEFAULT_RULE, Rule, Rules, RulesError, load_rules, parse_duration
from otel_datasink.profiles.mapping_file import load_mapping_file

EXAMPLE = Path(__file__).parent.parent / "examples" / "alert_rules.toml"


def _load(tmp_path, text, targets=()):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return load_rules(path, targets)


def test_the_example_rules_file_loads():
    rules = load_rules(EXAMPLE)
    assert rules.rules and all(isinstance(rule, Rule) for rule in rules.rules)


def test_a_rule_reads_every_key(tmp_path):
    rules = _load(
        tmp_path,
        """
[[rule]]
job = "ingest_*"
kinds = ["failing_job", "missing_run"]
owners = ["@data-eng", "oncall@example.com"]
notify = ["slack://T000/B000/XXXX", "http://alertmanager:9093"]
severity = "critical"
failure_streak = 3
expected_every = "1h30m"
min_z = 4
volume_window = "2d"
suppress = "4h"
group = "digest"
enabled = true
""",
    )
    (rule,) = rules.rules
    assert rule == Rule(
        job="ingest_*",
        kinds=("failing_job", "missing_run"),
        owners=("@data-eng", "oncall@example.com"),
        notify=("slack://T000/B000/XXXX", "http://alertmanager:9093"),
        severity="critical",
        failure_streak=3,
        expected_every=datetime.timedelta(minutes=90),
        min_z=4.0,
        volume_window=datetime.timedelta(days=2),
        suppress=datetime.timedelta(hours=4),
        group="digest",
    )


def test_the_first_selecting_rule_applies_and_the_defaults_otherwise(tmp_path):
    rules = _load(
        tmp_path,
        """
[[rule]]
job = "ingest_orders"
severity = "info"

[[rule]]
job = "ingest_*"
notify = ["json://team.example/"]

[[rule]]
dataset = "orders*"
owners = ["@sales"]
""",
        targets=("json://cli.example/",),
    )
    assert rules.rule_for("failing_job", "ingest_orders").severity == "info"
    assert rules.targets(rules.rule_for("failing_job", "ingest_users")) == ("json://team.example/",)
    assert rules.rule_for("stale_dataset", "orders_daily").owners == ("@sales",)
    # A job rule selects a dataset through the job that last updated it; a dataset rule never selects a job.
    assert rules.rule_for("stale_dataset", "users", job="ingest_users").notify == ("json://team.example/",)
    assert rules.rule_for("failing_job", "orders") is DEFAULT_RULE
    assert rules.targets(DEFAULT_RULE) == ("json://cli.example/",)


def test_no_file_is_every_condition_to_the_notify_targets():
    rules = Rules().with_targets(["json://a/"])
    rule = rules.rule_for("hung_run", "anything")
    assert rules.targets(rule) == ("json://a/",) and rule.failure_streak == 1 and rule.group == "incident"
    assert rule.severity_of("failing_job") == "critical" and rule.severity_of("volume_anomaly") == "info"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("1w", 604800)],
)
def test_durations(text, expected):
    assert parse_duration(text) == datetime.timedelta(seconds=expected)


MISTAKES = [
    ('suppress = "4 hours"', "rule[1].suppress", 'must be a duration such as "90s"'),
    ('expected_every = "0m"', "rule[1].expected_every", "must be a duration above zero"),
    ("expected_every = 60", "rule[1].expected_every", "must be a duration"),
    ('job = "ingest_[a"', "rule[1].job", "brackets closed"),
    ('kinds = ["stale"]', "rule[1].kinds", "unknown kind 'stale' (expected one of stale_dataset, failing_job"),
    ('severity = "high"', "rule[1].severity", "must be one of critical, warning, info"),
    ('owners = ["bob"]', "rule[1].owners", "'bob' is neither an @handle nor an e-mail address"),
    ('notify = ["hooks.slack.com/x"]', "rule[1].notify", "is not a URL"),
    ("failure_streak = 0", "rule[1].failure_streak", "must be a whole number of at least 1"),
    ("min_z = -1", "rule[1].min_z", "must be a number above zero"),
    ('group = "batch"', "rule[1].group", "must be one of incident, digest"),
    ('enabled = "no"', "rule[1].enabled", "must be true or false"),
    ('severty = "info"', "rule[1].severty", "unknown key (expected one of job, dataset, owner, kinds"),
    ('owner = ["team-a"]', "rule[1].owner", "must be a glob"),
    ('dataset = "orders"\nexpected_every = "1h"', "rule[1].expected_every", "expected_every is for jobs"),
    ('job = "a"\ndataset = "b"', "rule[1].dataset", "give job or dataset, not both"),
]


@pytest.mark.parametrize(("line", "key", "message"), MISTAKES)
def test_each_mistake_names_its_key_and_line(tmp_path, line, key, message):
    text = '[[rule]]\njob = "fine"\n\n[[rule]]\n' + line.replace('job = "a"\n', "") + "\n"
    if line.startswith('job = "a"'):
        text = '[[rule]]\njob = "fine"\n\n[[rule]]\njob = "a"\ndataset = "b"\n'
    key = key.replace("rule[1]", "rule[2]")
    with pytest.raises(RulesError) as raised:
        _load(tmp_path, text)
    error = str(raised.value)
    lines = text.splitlines()
    wanted_line = next(i for i in range(4, len(lines) + 1) if lines[i - 1].startswith(key[8:]))
    assert error.startswith(f"rules file {tmp_path / 'rules.toml'}, line {wanted_line}: {key}: "), error
    assert message in error


def test_a_file_without_rules_or_with_other_tables_is_refused(tmp_path):
    with pytest.raises(RulesError, match="no \\[\\[rule\\]\\] table"):
        _load(tmp_path, "rule = []\n")
    with pytest.raises(RulesError, match=re.escape("line 1: defaults: unknown key (a rules file has [[rule]]")):
        _load(tmp_path, '[defaults]\nsuppress = "1h"\n')


def test_bad_toml_and_a_missing_file_say_so(tmp_path):
    with pytest.raises(RulesError, match=r"not valid TOML: .*line 2"):
        _load(tmp_path, "[[rule]]\njob = \n")
    with pytest.raises(RulesError, match="cannot read rules file .*No such file"):
        load_rules(tmp_path / "absent.toml")


def test_mapping_files_keep_their_messages(tmp_path):
    """The checker the rules file borrows still words mapping files' mistakes as before."""
    path = tmp_path / "mapping.toml"
    path.write_text('[[rule]]\nselect.name = "x"\ncolumns.job_nam = { attribute = "a" }\n')
    with pytest.raises(ValueError, match=r"line 3: rule\[1\]\.columns\.job_nam: unknown column"):
        load_mapping_file(path)
    shutil.copy(EXAMPLE, tmp_path / "copy.toml")  # the example is no mapping file: refused, not crashed on
    with pytest.raises(ValueError, match="mapping file"):
        load_mapping_file(tmp_path / "copy.toml")
