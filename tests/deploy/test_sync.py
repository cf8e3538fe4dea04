"""sync in the cluster: its Deployment and the settings it is given, its destinations file (a
ConfigMap sync loads) and their secrets (a Secret of their own, never a manifest), its schema
in the migration Job, and what the network policies let it reach: PostgreSQL, Kafka, DNS, and
its webhook destinations on the internet, never the cluster's, private or link-local addresses
(the cloud's metadata service). Who may touch which topic is checked with every other service
(test_kafka_access.py), its topics' retention with every other topic (test_policies.py).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from services.sync.config import SyncSettings
from services.sync.destinations import load_destinations
from tests.deploy.manifests import DEPLOY, OVERLAYS, Resource, describe, of_kind
from tests.deploy.network import Address, Pod, allows, pod_of
from tests.deploy.policies import container_env, containers, service_of
from tests.deploy.settings_names import SERVICES, service_env_names

SYNC = "leadflow-sync"
DESTINATIONS_FILE = "LEADFLOW_SYNC_DESTINATIONS_FILE"
SECRETS = "leadflow-sync-secrets"
SECRET_TEMPLATE = DEPLOY / "base" / "sync-secret-template.yaml"
# Stand for a CRM's webhook endpoint on the internet (TEST-NET-3, documentation IPv6).
PUBLIC = ("203.0.113.10", "2001:db8::1")
# What sync must never reach, whatever its destinations file says: the cloud's metadata
# services (link-local; Alibaba's in 100.64/10; AWS's IPv6 one, a unique local address),
# private networks where the cluster's pods, Services and nodes live, loopback.
REFUSED = (
    "169.254.169.254",
    "169.254.170.2",
    "100.100.100.200",
    "fd00:ec2::254",
    "fe80::1",
    "10.96.0.10",
    "10.0.0.1",
    "172.20.1.1",
    "192.168.1.1",
    "100.64.0.1",
    "127.0.0.1",
    "::1",
    "fd00::1",
)


def named(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert found, f"no {kind}/{name}"
    (resource,) = found
    return resource


def the_container(deployment: Resource) -> dict[str, Any]:
    (container,) = [c for _, c in containers(deployment)]
    return container


def ports_of(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: int(p["containerPort"]) for p in container.get("ports", [])}


# -- the Deployment ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sync_runs_with_settings_it_reads_on_its_health_port(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    deployment = named(resources, "Deployment", SYNC)
    container = the_container(deployment)
    assert container["args"] == ["services.sync", "run"]
    assert service_of(container) == "sync"
    own = {variable["name"] for variable in container["env"]}
    assert own <= service_env_names("sync").known

    env = container_env(resources, container)
    ports = ports_of(container)
    # Health, readiness and metrics only: sync has no API (and no port named so).
    assert set(ports) == {"health"}
    assert env["LEADFLOW_SYNC_HEALTH_HOST"] == "0.0.0.0"
    # The port its settings default to (the local stack's too), so the docs hold everywhere.
    default = SyncSettings.model_fields["health_port"].default
    assert int(str(env["LEADFLOW_SYNC_HEALTH_PORT"])) == ports["health"] == default
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ("health", ports["health"]), probe
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["health"])
    # Its Service leads to the health port (the console's health page reads it there).
    service = named(resources, "Service", SYNC)
    (health,) = service["spec"]["ports"]
    assert health["name"] == "health"
    assert health["port"] == ports["health"]
    assert health.get("targetPort") in ("health", ports["health"])
    # Secrets come from Secrets.
    for variable in ("LEADFLOW_DATABASE_URL", "LEADFLOW_KAFKA_SASL_PASSWORD"):
        assert env[variable] is None, f"{variable} is written in the manifest"
    # A fixed number of replicas (two in prod: a destination's lease moves to the other when
    # one stops), never autoscaled: one replica at a time sends to a destination.
    assert deployment["spec"]["replicas"] == {"dev": 1, "prod": 2}[overlay]
    assert not [
        s for s in of_kind(resources, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == SYNC
    ]


def test_prod_keeps_a_sync_replica_through_disruptions(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["prod"]
    budget = named(resources, "PodDisruptionBudget", SYNC)
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": {"matchLabels": {"app.kubernetes.io/name": SYNC}},
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_migrates_syncs_schema(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    (job,) = of_kind(rendered[overlay], "Job")
    migrations = [
        container["args"]
        for _, container in containers(job)
        if container.get("args", [None])[-1] == "migrate"
    ]
    assert ["services.sync", "migrate"] in migrations
    # Every service with a schema: each consumer owns one.
    assert {args[0].removeprefix("services.") for args in migrations} == set(SERVICES) - {"ingest"}


# -- the destinations and their secrets -------------------------------------------------------


def destinations_config_map(resources: list[Resource]) -> tuple[str, Resource]:
    """(the file's name, the ConfigMap mounted where it is), checking the mount."""
    deployment = named(resources, "Deployment", SYNC)
    spec = deployment["spec"]["template"]["spec"]
    container = the_container(deployment)
    path = PurePosixPath(str(container_env(resources, container)[DESTINATIONS_FILE]))
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    assert mount.get("readOnly") is True, "the destinations file is mounted writable"
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    return path.name, named(resources, "ConfigMap", volume["configMap"]["name"])


def example_of(text: str) -> str:
    """The commented example of the destinations file, uncommented."""
    lines = text.splitlines()
    start = lines.index("# destinations:")
    example = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        example.append(re.sub(r"^# ?", "", line))
    return "\n".join(example) + "\n"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_destinations_file_is_a_config_map_that_sync_loads(
    rendered: dict[str, list[Resource]], tmp_path: Path, overlay: str
) -> None:
    """The file the setting names is a key of a read-only ConfigMap, which sync loads as it
    does at start; by default it lists no destination, and its commented example loads too
    (with its secrets set)."""
    resources = rendered[overlay]
    key, config_map = destinations_config_map(resources)
    text = config_map["data"][key]
    copy = tmp_path / key
    copy.write_text(text)
    assert load_destinations(copy, {}, resolve=None) == []

    example = tmp_path / "example.yaml"
    example.write_text(example_of(text))
    names = secret_variables(yaml.safe_load(example.read_text()))
    assert names, "the example names no secret variable"
    environ = {name: "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" for name in names}
    (destination,) = load_destinations(example, environ, resolve=None)
    assert destination.config.url.startswith("https://")
    # The file holds no secret.
    assert "whsec_" not in re.sub(r"#.*", "", text)


def secret_variables(document: dict[str, Any]) -> set[str]:
    """The variables a destinations file reads its secrets from (`secret_env`, `{env: ...}`)."""
    names = set()
    for destination in (document.get("destinations") or {}).values():
        names.add(destination["secret_env"])
        for value in (destination.get("headers") or {}).values():
            if isinstance(value, dict):
                names.add(value["env"])
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_destination_secrets_come_from_an_optional_secret_of_their_own(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    """Each key of leadflow-sync-secrets becomes a variable of sync's pods (envFrom): sync
    starts without it (no destination needs none), and no other workload reads it."""
    resources = rendered[overlay]
    container = the_container(named(resources, "Deployment", SYNC))
    secret_sources = [s["secretRef"] for s in container.get("envFrom", []) if "secretRef" in s]
    assert secret_sources == [{"name": SECRETS, "optional": True}]
    for workload in [*of_kind(resources, "Deployment"), *of_kind(resources, "Job")]:
        if workload["metadata"]["name"] == SYNC:
            continue
        assert SECRETS not in str(workload["spec"]), describe(workload)
    # Not rendered: the operator creates it (no overlay would overwrite it with placeholders).
    assert not [s for s in of_kind(resources, "Secret") if s["metadata"]["name"] == SECRETS]


def test_the_secret_template_holds_the_examples_variables_only() -> None:
    template = yaml.safe_load(SECRET_TEMPLATE.read_text())
    assert template["kind"] == "Secret"
    assert template["metadata"]["name"] == SECRETS
    keys = set(template["stringData"])
    example = yaml.safe_load(
        example_of((DEPLOY / "base/config/sync-destinations.yaml").read_text())
    )
    assert keys == secret_variables(example)
    # A key named like a setting would be read as one.
    assert not [key for key in keys if key.startswith("LEADFLOW_")]
    for key in keys:
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{key} is no environment variable name"


# -- network policies -------------------------------------------------------------------------


def service_pods(resources: list[Resource]) -> dict[str, Pod]:
    return {
        service: pod_of(named(resources, "Deployment", f"leadflow-{service}"))
        for service in SERVICES
    }


def test_sync_reaches_its_database_kafka_dns_and_public_webhooks_only(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["prod"]
    pods = service_pods(resources)
    sync = pods["sync"]
    namespace = sync.namespace
    kafka = Pod(namespace, {"strimzi.io/cluster": "leadflow-kafka"})
    database = Pod(namespace, {"cnpg.io/cluster": "leadflow-db"})
    dns = Pod("kube-system", {"k8s-app": "kube-dns"})
    assert allows(resources, sync, kafka, 9093), "sync cannot reach Kafka"
    assert allows(resources, sync, database, 5432), "sync cannot reach PostgreSQL"
    assert allows(resources, sync, dns, 53, "UDP"), "sync cannot resolve names"
    # Its destinations: HTTPS and HTTP to public addresses, IPv4 and IPv6.
    for address in PUBLIC:
        for port in (443, 80):
            assert allows(resources, sync, Address(address), port), (address, port)
        # Not other ports of the internet (mail, SSH, databases...).
        for port in (22, 25, 5432, 8443):
            assert not allows(resources, sync, Address(address), port), (address, port)
    # Never the metadata services, private, cluster or loopback addresses.
    for address in REFUSED:
        for port in (443, 80):
            assert not allows(resources, sync, Address(address), port), (address, port)
    # Nor another service's ports (it has no business there), nor PostgreSQL's other ports.
    for service, pod in pods.items():
        for name, port in pod.ports.items():
            if service != "sync":
                assert not allows(resources, sync, pod, port), f"{service}'s {name} port"
    assert not allows(resources, sync, database, 5433)


def test_only_sync_reaches_the_internet_over_plain_http(
    rendered: dict[str, list[Resource]],
) -> None:
    """The webhook egress is sync's alone: no other service reaches public addresses (the
    console's single sign-on egress is an optional component, HTTPS only)."""
    resources = rendered["prod"]
    for service, pod in service_pods(resources).items():
        if service == "sync":
            continue
        for port in (443, 80):
            assert not allows(resources, pod, Address(PUBLIC[0]), port), (service, port)


def test_only_monitoring_and_the_console_reach_sync(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["prod"]
    pods = service_pods(resources)
    sync = pods["sync"]
    health = sync.ports["health"]
    monitoring = Pod("monitoring", {"app": "prometheus"})
    assert allows(resources, monitoring, sync, health), "Prometheus cannot scrape sync"
    assert allows(resources, pods["console"], sync, health), "the console cannot read sync"
    strangers = [
        Pod(sync.namespace, {}),
        Pod(sync.namespace, {"app": "some-other-workload"}),
        Pod(sync.namespace, {"leadflow.io/api-client": "true"}),
        Pod("another-team", dict(monitoring.labels)),
        *(pod for service, pod in pods.items() if service not in ("console", "sync")),
    ]
    let_in = [stranger for stranger in strangers if allows(resources, stranger, sync, health)]
    assert let_in == [], "sync's health port is open beyond monitoring and the console"
    # Nothing but the health port: not the API port its settings default to on the loopback.
    default_api = SyncSettings.model_fields["api_port"].default
    assert not allows(resources, monitoring, sync, default_api)
    assert not allows(resources, pods["console"], sync, default_api)
