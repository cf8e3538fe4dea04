"""The console in the cluster: its Deployment and the addresses it is given, what the network
policies let it reach and who reaches it, its Ingress with TLS, and the Secret keys it reads.

Every address the console is configured with must name a real Service port that leads to the
right container port; the network policies must open exactly those paths (and the pages to the
ingress controller only); the optional single sign-on egress opens HTTPS to public addresses,
nothing private.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, OVERLAYS, REPO, Resource, builtin_errors, of_kind, render
from tests.deploy.network import Address, Pod, allows, pod_of
from tests.deploy.policies import (
    container_env,
    containers,
    env_name_violations,
    selects,
    service_of,
)
from tests.deploy.settings_names import SERVICES, service_env_names

CONSOLE = "leadflow-console"
INGRESS_CONTROLLER = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PUBLIC_ADDRESS = "203.0.113.10"  # TEST-NET-3: stands for an identity provider on the internet
SSO_COMPONENT = DEPLOY / "components" / "console-sso-egress"


def named(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert found, f"no {kind}/{name}"
    (resource,) = found
    return resource


def the_container(deployment: Resource) -> dict[str, Any]:
    (container,) = [c for _, c in containers(deployment)]
    return container


def container_port(deployment: Resource, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in the_container(deployment)["ports"]}
    assert name in ports, f"{deployment['metadata']['name']} has no port named {name}"
    return int(ports[name])


def service_target(resources: list[Resource], service: str, port: int) -> int:
    """The container port that `service:port` (a Service's port) leads to."""
    (spec,) = [r["spec"] for r in of_kind(resources, "Service") if r["metadata"]["name"] == service]
    matching = [p for p in spec["ports"] if p["port"] == port]
    assert matching, f"Service {service} has no port {port}"
    target = matching[0].get("targetPort", port)
    (deployment,) = [
        d
        for d in of_kind(resources, "Deployment")
        if all(
            d["spec"]["template"]["metadata"]["labels"].get(k) == v
            for k, v in spec["selector"].items()
        )
    ]
    return container_port(deployment, target) if isinstance(target, str) else int(target)


def service_target_by_name(resources: list[Resource], service: str, port_name: str) -> int:
    (spec,) = [r["spec"] for r in of_kind(resources, "Service") if r["metadata"]["name"] == service]
    (port,) = [p["port"] for p in spec["ports"] if p.get("name") == port_name]
    return service_target(resources, service, int(port))


def service_url_target(resources: list[Resource], url: str) -> tuple[str, int]:
    """(Service name, container port) an in-cluster http URL reaches."""
    parts = urlsplit(url)
    assert parts.scheme == "http", url
    assert parts.hostname, url
    assert parts.port, url
    return parts.hostname, service_target(resources, parts.hostname, parts.port)


# -- the Deployment ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_console_runs_with_settings_it_reads(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    deployment = named(resources, "Deployment", CONSOLE)
    container = the_container(deployment)
    assert container["args"] == ["services.console", "run"]
    assert service_of(container) == "console"
    assert env_name_violations([*of_kind(resources, "ConfigMap"), deployment]) == []
    own = {variable["name"] for variable in container["env"]}
    assert own <= service_env_names("console").known

    env = container_env(resources, container)
    # Listening on the pod's addresses (the defaults are the loopback), on its named ports.
    assert env["LEADFLOW_CONSOLE_WEB_HOST"] == "0.0.0.0"
    assert env["LEADFLOW_CONSOLE_HEALTH_HOST"] == "0.0.0.0"
    assert int(str(env["LEADFLOW_CONSOLE_WEB_PORT"])) == container_port(deployment, "web")
    health = container_port(deployment, "health")
    assert int(str(env["LEADFLOW_CONSOLE_HEALTH_PORT"])) == health
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ("health", health), probe
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(health)
    # TLS ends at the Ingress: the cookies stay Secure in the cluster.
    assert env["LEADFLOW_CONSOLE_SECURE_COOKIES"] == "true"
    # Secrets come from Secrets.
    for variable in ("LEADFLOW_CONSOLE_SECRET_KEY", "LEADFLOW_CONSOLE_SCORE_API_TOKEN"):
        assert env[variable] is None, f"{variable} is written in the manifest"
    if "LEADFLOW_CONSOLE_OIDC" in env:
        assert env["LEADFLOW_CONSOLE_OIDC"] is None, "the OIDC client secret is in the manifest"
    # One or two replicas, never autoscaled (its consumer is light).
    assert deployment["spec"]["replicas"] == {"dev": 1, "prod": 2}[overlay]
    assert not [
        s
        for s in of_kind(resources, "ScaledObject")
        if s["spec"]["scaleTargetRef"]["name"] == CONSOLE
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_console_addresses_name_real_service_ports(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    """score's API URL leads to score's API port, each metrics URL to its service's health port,
    one for every service."""
    resources = rendered[overlay]
    env = container_env(resources, the_container(named(resources, "Deployment", CONSOLE)))

    score = named(resources, "Deployment", "leadflow-score")
    assert service_url_target(resources, str(env["LEADFLOW_CONSOLE_SCORE_API_URL"])) == (
        "leadflow-score",
        container_port(score, "api"),
    )

    urls = json.loads(str(env["LEADFLOW_CONSOLE_METRICS_URLS"]))
    assert set(urls) == set(SERVICES)
    for service, url in urls.items():
        deployment = named(resources, "Deployment", f"leadflow-{service}")
        assert service_url_target(resources, url) == (
            f"leadflow-{service}",
            container_port(deployment, "health"),
        ), f"{service}: {url} is not its health port"


# -- network policies -------------------------------------------------------------------------


def service_pods(resources: list[Resource]) -> dict[str, Pod]:
    return {
        service: pod_of(named(resources, "Deployment", f"leadflow-{service}"))
        for service in SERVICES
    }


def test_the_network_policies_let_the_console_reach_what_it_reads(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["prod"]
    pods = service_pods(resources)
    console = pods["console"]
    namespace = console.namespace
    # score's and router's APIs (a lead's explanation, the editors): admitted by each,
    # allowed out of the console.
    for service in ("score", "router"):
        assert allows(resources, console, pods[service], pods[service].ports["api"]), (
            f"the console cannot reach {service}'s API port"
        )
    # Every service's health port (the health page), the console's own included.
    for service, pod in pods.items():
        assert allows(resources, console, pod, pod.ports["health"]), (
            f"the console cannot read {service}'s metrics"
        )
    # Kafka, PostgreSQL, DNS.
    kafka = Pod(namespace, {"strimzi.io/cluster": "leadflow-kafka"})
    database = Pod(namespace, {"cnpg.io/cluster": "leadflow-db"})
    dns = Pod("kube-system", {"k8s-app": "kube-dns"})
    assert allows(resources, console, kafka, 9093), "the console cannot reach Kafka"
    assert allows(resources, console, database, 5432), "the console cannot reach PostgreSQL"
    assert allows(resources, console, dns, 53, "UDP"), "the console cannot resolve names"
    # Nothing else: not other ports, not the internet (no single sign-on egress unless the
    # component is added).
    assert not allows(resources, console, pods["ingest"], pods["ingest"].ports["http"])
    assert not allows(resources, console, database, 5433)
    assert not allows(resources, console, Address(PUBLIC_ADDRESS), 443)


def test_the_network_policies_admit_people_through_the_ingress_controller_only(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["prod"]
    pods = service_pods(resources)
    console = pods["console"]
    web, health = console.ports["web"], console.ports["health"]
    monitoring = Pod("monitoring", {"app": "prometheus"})
    assert allows(resources, INGRESS_CONTROLLER, console, web), (
        "the ingress controller cannot reach the console's pages"
    )
    assert allows(resources, monitoring, console, health), "Prometheus cannot scrape the console"
    strangers = [
        Pod(console.namespace, {}),
        Pod(console.namespace, {"app": "some-other-workload"}),
        # Labels do not travel: the same labels in another namespace are somebody else's.
        Pod("another-team", dict(INGRESS_CONTROLLER.labels)),
        Pod("another-team", dict(console.labels)),
        pods["score"],
        pods["ingest"],
    ]
    let_in = [stranger for stranger in strangers if allows(resources, stranger, console, web)]
    assert let_in == [], "the pages are open beyond the ingress controller"
    assert not allows(resources, INGRESS_CONTROLLER, console, health)
    assert not allows(resources, monitoring, console, web)


def test_only_the_console_and_monitoring_reach_the_health_ports(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["prod"]
    pods = service_pods(resources)
    monitoring = Pod("monitoring", {"app": "prometheus"})
    stranger = Pod(pods["console"].namespace, {"app": "some-other-workload"})
    for service, pod in pods.items():
        assert allows(resources, monitoring, pod, pod.ports["health"]), service
        assert allows(resources, pods["console"], pod, pod.ports["health"]), service
        assert not allows(resources, stranger, pod, pod.ports["health"]), service
        others = [p for name, p in pods.items() if name not in ("console", service)]
        assert not [p for p in others if allows(resources, p, pod, pod.ports["health"])], service


@pytest.fixture(scope="module")
def with_sso_egress(tmp_path_factory: pytest.TempPathFactory) -> list[Resource]:
    """prod with components/console-sso-egress added, as an overlay of the operator's would."""
    overlay = tmp_path_factory.mktemp("prod-with-sso")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "leadflow",
                # kustomize takes relative paths only.
                "resources": [os.path.relpath(DEPLOY / "overlays" / "prod", overlay)],
                "components": [os.path.relpath(SSO_COMPONENT, overlay)],
            }
        )
    )
    return render(overlay)


def test_the_sso_egress_opens_https_to_public_addresses_for_the_console_only(
    with_sso_egress: list[Resource],
) -> None:
    resources = with_sso_egress
    (policy,) = [
        p for p in of_kind(resources, "NetworkPolicy") if p["metadata"]["name"].endswith("-sso")
    ]
    assert builtin_errors(policy) == []
    pods = service_pods(resources)
    console = pods["console"]
    assert allows(resources, console, Address(PUBLIC_ADDRESS), 443)
    assert allows(resources, console, Address("2001:db8::1"), 443)
    # Not plain HTTP, not the cloud's metadata service, not private or cluster addresses.
    assert not allows(resources, console, Address(PUBLIC_ADDRESS), 80)
    for private in ("169.254.169.254", "10.96.0.10", "172.20.1.1", "192.168.1.1", "fd00::1"):
        assert not allows(resources, console, Address(private), 443), private
    # Only the console: the policy selects no other pod, and no other reaches the internet but
    # sync, by a policy of its own (its webhook destinations, test_sync.py).
    for service, pod in pods.items():
        if service == "console":
            continue
        assert not selects(policy["spec"]["podSelector"], dict(pod.labels)), service
        if service != "sync":
            assert not allows(resources, pod, Address(PUBLIC_ADDRESS), 443), service
    # And the rest of prod unchanged.
    assert allows(resources, console, pods["score"], pods["score"].ports["api"])


def test_prod_leaves_the_sso_egress_out(rendered: dict[str, list[Resource]]) -> None:
    """Opening HTTPS to the internet is the operator's choice (deploy/README.md)."""
    assert not [
        p
        for p in of_kind(rendered["prod"], "NetworkPolicy")
        if p["metadata"]["name"].endswith("-sso")
    ]


# -- the Ingress ------------------------------------------------------------------------------


def test_the_console_ingress_terminates_tls_and_routes_to_its_web_port(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["prod"]
    deployment = named(resources, "Deployment", CONSOLE)
    web = container_port(deployment, "web")
    ingresses = [
        ingress
        for ingress in of_kind(resources, "Ingress")
        for rule in ingress["spec"].get("rules", [])
        for path in rule.get("http", {}).get("paths", [])
        if path["backend"]["service"]["name"] == CONSOLE
    ]
    assert ingresses, "no Ingress routes to the console"
    for ingress in ingresses:
        assert builtin_errors(ingress) == []
        spec = ingress["spec"]
        secured = {
            host for tls in spec.get("tls", []) if tls.get("secretName") for host in tls["hosts"]
        }
        annotations = ingress["metadata"].get("annotations", {})
        assert annotations.get("nginx.ingress.kubernetes.io/force-ssl-redirect") == "true"
        for rule in spec["rules"]:
            assert rule.get("host"), "an Ingress rule without a host"
            assert rule["host"] in secured, f"{rule['host']} is served without TLS"
            for path in rule["http"]["paths"]:
                port = path["backend"]["service"]["port"]
                if "name" in port:
                    assert port["name"] == "web"
                    target = service_target_by_name(resources, CONSOLE, port["name"])
                else:
                    target = service_target(resources, CONSOLE, port["number"])
                assert target == web, "the Ingress does not lead to the console's web port"
        # The single sign-on callback is built from the public address: the Ingress's, HTTPS.
        env = container_env(resources, the_container(deployment))
        assert env.get("LEADFLOW_CONSOLE_PUBLIC_URL") in {
            f"https://{rule['host']}" for rule in spec["rules"]
        }


# -- the Secret -------------------------------------------------------------------------------


def secret_keys(resources: list[Resource], *, optional: bool) -> set[str]:
    """The keys of leadflow-secrets the workloads read (the optional ones, or the others)."""
    return {
        variable["valueFrom"]["secretKeyRef"]["key"]
        for workload in [*of_kind(resources, "Deployment"), *of_kind(resources, "Job")]
        for _, container in containers(workload)
        for variable in container.get("env", [])
        if variable.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "leadflow-secrets"
        and bool(variable["valueFrom"]["secretKeyRef"].get("optional")) is optional
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_secret_template_and_dev_secret_hold_every_key_read(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    required, optional = (
        secret_keys(resources, optional=False),
        secret_keys(resources, optional=True),
    )
    assert {"console-secret-key", "console-score-api-token"} <= required
    assert "console-oidc" in optional
    template = yaml.safe_load((DEPLOY / "base" / "secret-template.yaml").read_text())
    assert required | optional <= set(template["stringData"])
    if overlay == "dev":
        secret = named(resources, "Secret", "leadflow-secrets")
        assert required <= set(secret.get("data", {})) | set(secret.get("stringData", {}))


def test_the_first_admin_command_exists() -> None:
    """deploy/README.md tells operators to run it in a console pod."""
    result = subprocess.run(
        [sys.executable, "-m", "services.console", "add-person", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "--role" in result.stdout
    assert "admin" in result.stdout
