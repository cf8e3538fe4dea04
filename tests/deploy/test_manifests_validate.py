"""Every overlay renders, and every rendered resource passes its schema: Kubernetes' own for
built-in kinds (kubernetes-validate, strict) and the CRD's for custom resources."""

from __future__ import annotations

from pathlib import Path

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest
import yaml

from tests.deploy.manifests import (
    DEPLOY,
    OVERLAYS,
    CrdVersion,
    RenderError,
    Resource,
    builtin_errors,
    custom_resource_errors,
    is_builtin,
    render,
)
from tests.deploy.settings_names import SERVICES

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all((FIXTURES / name).read_text()) if doc]


def kinds(resources: list[Resource]) -> list[str]:
    return [resource["kind"] for resource in resources]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_service_and_the_migration_job(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    deployments = {r["metadata"]["name"] for r in resources if r["kind"] == "Deployment"}
    assert deployments == {f"leadflow-{service}" for service in SERVICES}
    assert kinds(resources).count("Job") == 1
    # The Job migrates the schema of every service that owns one (all but ingest).
    (job,) = [r for r in resources if r["kind"] == "Job"]
    spec = job["spec"]["template"]["spec"]
    migrated = [
        container["args"] for container in [*spec.get("initContainers", []), *spec["containers"]]
    ]
    assert sorted(migrated) == sorted(
        [f"services.{service}", "migrate"] for service in SERVICES if service != "ingest"
    )
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster"} <= set(kinds(resources))
    assert all(r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_kinds_pass_kubernetes_validate_strict(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    builtin = [r for r in rendered[overlay] if is_builtin(r)]
    assert len(builtin) >= 15
    assert [error for r in builtin for error in builtin_errors(r)] == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_pass_their_crd_schema(
    rendered: dict[str, list[Resource]],
    crds: dict[tuple[str, str], CrdVersion],
    overlay: str,
) -> None:
    custom = [r for r in rendered[overlay] if not is_builtin(r)]
    assert (
        len(custom) >= 17
    )  # Kafka, KafkaNodePool, a KafkaTopic per topic and DLQ, Cluster (+ KEDA in prod)
    assert [error for r in custom for error in custom_resource_errors(r, crds)] == []


def test_crd_extracts_are_valid_json_schemas(crds: dict[tuple[str, str], CrdVersion]) -> None:
    assert {kind for _, kind in crds} == {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "KafkaUser",
        "Cluster",
        "ScheduledBackup",
        "ObjectStore",
        "ScaledObject",
        "TriggerAuthentication",
        "PodMonitor",
        "PrometheusRule",
    }
    for crd in crds.values():
        jsonschema.Draft7Validator.check_schema(crd.schema)


# -- the validators fail on broken input ----------------------------------------------------


def test_a_broken_kustomization_does_not_render() -> None:
    with pytest.raises(RenderError, match=r"deployment-that-is-not-there\.yaml"):
        render(FIXTURES / "broken-kustomization")


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, "replicas"), (1, "livenessprobe"), (2, "port")],
    ids=["wrong-type", "misspelt-field", "missing-required"],
)
def test_kubernetes_validate_rejects_each_broken_builtin(index: int, expected: str) -> None:
    resource = load_fixture("broken-builtin.yaml")[index]
    assert is_builtin(resource)
    errors = builtin_errors(resource)
    assert errors, f"{resource['metadata']['name']} passed validation"
    assert expected in " ".join(errors)


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (0, "less than the minimum"),
        (1, "'partition' was unexpected"),
        (2, "'tls' is a required property"),
        (3, "'leader' is not one of"),
        (4, "'3' is not of type 'integer'"),
        (5, "'triggers' is a required property"),
        (6, "no CRD for monitoring.coreos.com/v1 ServiceMonitor"),
        (7, "'Consume' is not one of"),
        (8, "'plain' is not one of"),
        (9, "'key' is a required property"),
    ],
    ids=[
        "topic-bound",
        "topic-unknown-field",
        "kafka-required",
        "nodepool-enum",
        "cluster-type",
        "scaledobject-required",
        "kind-without-crd",
        "kafkauser-acl-operation-enum",
        "kafka-listener-authentication-enum",
        "triggerauthentication-required",
    ],
)
def test_crd_validation_rejects_each_broken_custom_resource(
    crds: dict[tuple[str, str], CrdVersion], index: int, expected: str
) -> None:
    resource = load_fixture("broken-custom-resources.yaml")[index]
    assert not is_builtin(resource)
    errors = custom_resource_errors(resource, crds)
    assert any(expected in error for error in errors), errors


def test_the_overlays_are_the_ones_in_the_repository() -> None:
    on_disk = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
    assert on_disk == sorted(OVERLAYS)
