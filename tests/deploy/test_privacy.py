"""Erasure (issue 21) in the cluster: enrich's API for erasure requests, exposed like score's and
router's (a named port, a Service port, reachable only from API clients), and the key of the
do-not-track list's hashes, which comes from the Secret and is never written in a manifest.

The Kafka side (privacy.erasures, privacy.reports, who reads and writes them, how long they and
their dead letters are kept) is checked with every other topic: test_kafka_access.py and
test_policies.py.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, OVERLAYS, Resource, describe, of_kind
from tests.deploy.network import Pod, allows, pod_of
from tests.deploy.policies import container_env, containers, service_of

ENRICH = "leadflow-enrich"
PRIVACY_KEY = "LEADFLOW_ENRICH_PRIVACY_KEY"
SECRET_KEY = "enrich-privacy-key"
API_CLIENT = {"leadflow.io/api-client": "true"}


def named(resources: list[Resource], kind: str, name: str) -> Resource:
    (found,) = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    return found


def the_container(deployment: Resource) -> dict[str, Any]:
    (container,) = [c for _, c in containers(deployment)]
    return container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_enrich_serves_its_api_on_a_named_port_behind_its_service(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    deployment = named(resources, "Deployment", ENRICH)
    container = the_container(deployment)
    env = container_env(resources, container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # On the pod's addresses (the default is the loopback), on the port named `api`.
    assert env["LEADFLOW_ENRICH_API_HOST"] == "0.0.0.0"
    assert int(str(env["LEADFLOW_ENRICH_API_PORT"])) == ports["api"] == 8091
    assert ports["api"] != ports["health"]
    # Its clients' token hashes come from the Secret, as score's and router's do.
    (clients,) = [v for v in container["env"] if v["name"] == "LEADFLOW_API_CLIENTS"]
    assert clients["valueFrom"]["secretKeyRef"] == {
        "name": "leadflow-secrets",
        "key": "api-clients",
    }
    # The Service's `api` port leads there.
    service = named(resources, "Service", ENRICH)
    (api,) = [p for p in service["spec"]["ports"] if p.get("name") == "api"]
    assert api["port"] == 8091
    assert api.get("targetPort") in ("api", ports["api"])
    # The probes and the scrape stay on the health port.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ("health", ports["health"]), probe
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["health"])


def test_only_api_clients_of_the_namespace_reach_enrichs_api(
    rendered: dict[str, list[Resource]],
) -> None:
    """Erasure requests erase people: like score's and router's APIs, enrich's is reached only by
    pods labelled as API clients in its namespace (a privacy officer's tool), and each request
    still needs a bearer token with a privacy scope."""
    resources = rendered["prod"]
    enrich = pod_of(named(resources, "Deployment", ENRICH))
    port = enrich.ports["api"]
    namespace = enrich.namespace
    assert allows(resources, Pod(namespace, API_CLIENT), enrich, port), (
        "a pod labelled leadflow.io/api-client cannot reach enrich's API"
    )
    strangers = [
        Pod(namespace, {}),
        Pod(namespace, {"app": "some-other-workload"}),
        # Labels do not travel: an API client of another namespace is somebody else's.
        Pod("another-team", API_CLIENT),
        Pod("monitoring", {"app": "prometheus"}),
        Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
        *(
            pod_of(deployment)
            for deployment in of_kind(resources, "Deployment")
            if deployment["metadata"]["name"] in ("leadflow-ingest", "leadflow-score")
        ),
    ]
    let_in = [stranger for stranger in strangers if allows(resources, stranger, enrich, port)]
    assert let_in == [], "enrich's API is open beyond the API clients"
    # Monitoring still scrapes the health port.
    assert allows(
        resources, Pod("monitoring", {"app": "prometheus"}), enrich, enrich.ports["health"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_privacy_key_comes_from_the_secret_only(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    """Every enrich container (the service, its migration) reads the key from the Secret's
    `enrich-privacy-key`; no manifest or ConfigMap writes it."""
    resources = rendered[overlay]
    readers = []
    for workload in [*of_kind(resources, "Deployment"), *of_kind(resources, "Job")]:
        for label, container in containers(workload):
            env = {v["name"]: v for v in container.get("env", [])}
            if service_of(container) == "enrich":
                assert PRIVACY_KEY in env, f"{label}: no {PRIVACY_KEY}"
            if PRIVACY_KEY in env:
                assert env[PRIVACY_KEY].get("valueFrom", {}).get("secretKeyRef") == {
                    "name": "leadflow-secrets",
                    "key": SECRET_KEY,
                }, f"{label}: {PRIVACY_KEY} is not the Secret's {SECRET_KEY}"
                readers.append(label)
    assert any("Deployment/leadflow-enrich" in label for label in readers)
    assert any(label.startswith("Job/") for label in readers)
    for config_map in of_kind(resources, "ConfigMap"):
        assert PRIVACY_KEY not in config_map.get("data", {}), describe(config_map)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_secret_template_and_dev_secret_hold_a_privacy_key(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    template = yaml.safe_load((DEPLOY / "base" / "secret-template.yaml").read_text())
    assert SECRET_KEY in template["stringData"]
    if overlay == "dev":
        secret = named(rendered[overlay], "Secret", "leadflow-secrets")
        value = base64.b64decode(secret["data"][SECRET_KEY]).decode()
        assert len(value) >= 32, "enrich refuses a privacy key shorter than 32 characters"
