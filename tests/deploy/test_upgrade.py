"""Upgrades without outages: the migrate Job is re-created by whatever applies it, lasts as long
as a migration may retry its locks, and a new pod waits for its schema within its startup
probe's window (shared/service.py, shared/migrations.py)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.migrations import LOCK_RETRY_FOR_S
from shared.service import SCHEMA_WAIT_S
from tests.deploy.manifests import OVERLAYS, Resource

RECREATED = {
    "argocd.argoproj.io/hook": "Sync",
    "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
    "kustomize.toolkit.fluxcd.io/force": "enabled",
}
SERVICES_WITH_A_SCHEMA = {"enrich", "score", "router", "console", "sync"}


def migrate_job(resources: list[Resource]) -> dict[str, Any]:
    jobs = [
        r for r in resources if r["kind"] == "Job" and r["metadata"]["name"] == "leadflow-migrate"
    ]
    assert len(jobs) == 1
    return jobs[0]


def migrate_job_problems(job: dict[str, Any]) -> list[str]:
    problems = []
    annotations = job["metadata"].get("annotations", {})
    for key, value in RECREATED.items():
        if annotations.get(key) != value:
            problems.append(f"annotation {key} is {annotations.get(key)!r}, not {value!r}")
    deadline = job["spec"].get("activeDeadlineSeconds")
    steps = len(job["spec"]["template"]["spec"].get("initContainers", [])) + 1
    # Each of the five migrations may wait out its lock retries; one of them doing so must fit.
    if deadline is None or deadline <= LOCK_RETRY_FOR_S:
        problems.append(f"activeDeadlineSeconds {deadline} <= the lock retries' {LOCK_RETRY_FOR_S}")
    if steps != len(SERVICES_WITH_A_SCHEMA):
        problems.append(f"{steps} migration steps for {len(SERVICES_WITH_A_SCHEMA)} schemas")
    return problems


def startup_window_problems(resources: list[Resource]) -> list[str]:
    problems = []
    for deployment in (r for r in resources if r["kind"] == "Deployment"):
        service = deployment["metadata"]["name"].removeprefix("leadflow-")
        if service not in SERVICES_WITH_A_SCHEMA:
            continue
        probe = deployment["spec"]["template"]["spec"]["containers"][0].get("startupProbe")
        if probe is None:
            problems.append(f"{service}: no startupProbe")
            continue
        window = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
        if window <= SCHEMA_WAIT_S:
            problems.append(f"{service}: startup window {window}s <= schema wait {SCHEMA_WAIT_S}s")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migrate_job_is_recreated_by_argo_cd_and_flux_and_outlasts_lock_retries(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    assert migrate_job_problems(migrate_job(rendered[overlay])) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_new_pod_waits_for_its_schema_within_its_startup_probe(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    assert startup_window_problems(rendered[overlay]) == []


def test_the_checks_report_what_is_wrong(rendered: dict[str, list[Resource]]) -> None:
    job = migrate_job(rendered["prod"])
    broken = {
        **job,
        "metadata": {**job["metadata"], "annotations": {}},
        "spec": {**job["spec"], "activeDeadlineSeconds": 300},
    }
    problems = " | ".join(migrate_job_problems(broken))
    assert "argocd.argoproj.io/hook" in problems
    assert "kustomize.toolkit.fluxcd.io/force" in problems
    assert "activeDeadlineSeconds 300" in problems
    short = [
        {**r, "spec": {**r["spec"], "template": {**r["spec"]["template"], "spec": {
            **r["spec"]["template"]["spec"],
            "containers": [{**r["spec"]["template"]["spec"]["containers"][0],
                            "startupProbe": {"periodSeconds": 2, "failureThreshold": 10}}],
        }}}}
        if r["kind"] == "Deployment" and r["metadata"]["name"] == "leadflow-score" else r
        for r in rendered["prod"]
    ]  # fmt: skip
    assert startup_window_problems(short) == ["score: startup window 20s <= schema wait 45.0s"]
