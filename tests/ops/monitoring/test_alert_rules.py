"""ops/monitoring: the alert rules pass `promtool check rules` and their unit tests (`promtool test
rules`), every alert has a runbook annotation and a unit test, and docs/operations.md "Alerts"
lists exactly these alerts. promtool comes from Debian's `prometheus` package (scripts/test.sh
installs it): without it these tests fail, they are never skipped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

MONITORING = Path(settings.BASE_DIR) / "ops" / "monitoring"
RULES = MONITORING / "alerts.yml"
UNIT_TESTS = sorted((MONITORING / "tests").glob("*.yml"))
DOC = Path(settings.BASE_DIR) / "docs" / "operations.md"


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: install Debian's `prometheus` package (apt-get install prometheus; "
            "scripts/test.sh does it as root) to validate ops/monitoring/alerts.yml"
        )
    return path


def test_promtool_check_rules_accepts_the_rules(promtool):
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_the_alert_unit_tests_pass(promtool):
    assert UNIT_TESTS, "no promtool unit tests in ops/monitoring/tests"
    result = subprocess.run(
        [promtool, "test", "rules", *map(str, UNIT_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=MONITORING / "tests",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section():
    for rule in _rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["runbook"].startswith(("seed 00", "docs/")), rule["alert"]


def test_every_alert_has_a_unit_test_that_sees_it_fire():
    fired = {
        case["alertname"]
        for path in UNIT_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in _rules()} <= fired


def test_alert_names_are_unique():
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names))


def _doc_alerts() -> dict[str, list[str]]:
    section = DOC.read_text().split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0].strip("`")] = cells
    return rows


def test_the_operations_doc_lists_every_alert_with_its_for_severity_and_runbook():
    doc = _doc_alerts()
    rules = {rule["alert"]: rule for rule in _rules()}
    assert set(doc) == set(rules)
    for name, rule in rules.items():
        _name, _fires_when, for_, severity, runbook = doc[name]
        assert for_ == rule.get("for", "0s"), name
        assert severity == rule["labels"]["severity"], name
        assert runbook == rule["annotations"]["runbook"], name
