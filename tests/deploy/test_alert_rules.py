"""The alerts evaluated by Prometheus's own rule engine, offline: `promtool check rules` on the
rendered prod PrometheusRule (expressions and annotation templates parse), and `promtool test
rules` with the cases of `alert_rules_test.yaml` (each alert fires on its trouble, after its
`for`, with the labels its runbook names, and stays quiet on look-alikes).

promtool is Debian's `prometheus` package (`.ci/run` installs it when missing; another with
LEADFLOW_PROMTOOL). Debian's is Prometheus 2.42: the functions these rules use (increase, delta,
rate, histogram_quantile, predict_linear, offset, unless) mean the same in Prometheus 3.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import Resource, rule_groups

HERE = Path(__file__).parent
CASES = HERE / "alert_rules_test.yaml"
PROMTOOL = os.environ.get("LEADFLOW_PROMTOOL") or shutil.which("promtool") or "/usr/bin/promtool"


@pytest.fixture(scope="module")
def promtool() -> str:
    if not Path(PROMTOOL).exists():
        pytest.fail(
            f"no promtool at {PROMTOOL}: install Debian's `prometheus` package (`.ci/run` does) "
            "or set LEADFLOW_PROMTOOL"
        )
    return PROMTOOL


def without_annotations(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups with no annotations: `promtool test rules` compares an alert's annotations
    in full (a case naming none expects none), so the cases name labels only."""
    stripped = copy.deepcopy(groups)
    for group in stripped:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return stripped


def run_promtool(promtool: str, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, arguments)], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_rules_parse(
    rendered: dict[str, list[Resource]], promtool: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups(rendered["prod"])}))
    result = run_promtool(promtool, "check", "rules", rules)
    assert result.returncode == 0, result.stdout + result.stderr


def _test_rules(
    promtool: str, groups: list[dict[str, Any]], folder: Path
) -> subprocess.CompletedProcess[str]:
    (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": without_annotations(groups)}))
    cases = yaml.safe_load(CASES.read_text())
    cases["rule_files"] = ["rules.yaml"]
    (folder / "cases.yaml").write_text(yaml.safe_dump(cases))
    return run_promtool(promtool, "test", "rules", folder / "cases.yaml")


def test_each_alert_fires_on_its_trouble_and_not_on_look_alikes(
    rendered: dict[str, list[Resource]], promtool: str, tmp_path: Path
) -> None:
    result = _test_rules(promtool, rule_groups(rendered["prod"]), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_where_it_fires(rendered: dict[str, list[Resource]]) -> None:
    alerts = {r["alert"] for g in rule_groups(rendered["prod"]) for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load(CASES.read_text())["tests"]
    firing = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check.get("exp_alerts")
    }
    quiet = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if not check.get("exp_alerts")
    }
    assert alerts - firing == set(), "alerts no case sees firing"
    assert alerts - quiet == set(), "alerts no case sees staying quiet"
    assert firing <= alerts, "cases of alerts the rules no longer have"


def test_a_rule_that_never_fires_fails_the_cases(
    rendered: dict[str, list[Resource]], promtool: str, tmp_path: Path
) -> None:
    """The cases can fail: with the rewind alert's threshold raised out of reach, promtool
    reports the case that expected it."""
    groups = copy.deepcopy(rule_groups(rendered["prod"]))  # the rendering is shared
    for group in groups:
        for rule in group["rules"]:
            if rule.get("alert") == "LeadflowRecordsRewound":
                rule["expr"] = rule["expr"].replace(") > 0", ") > 1e9")
    result = _test_rules(promtool, groups, tmp_path)
    assert result.returncode != 0
    assert "LeadflowRecordsRewound" in result.stdout + result.stderr
