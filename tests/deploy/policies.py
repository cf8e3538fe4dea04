"""What every leadflow workload must satisfy, checked on rendered manifests.

Each check takes the rendered resources and returns the violations, one readable line each;
an empty list means the policy holds. The tests run them on every overlay and on broken
fixtures (to prove each check can fail).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.deploy.manifests import Resource, describe
from tests.deploy.settings_names import SERVICES, all_env_names, service_env_names

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

Container = dict[str, Any]


def pod_spec(resource: Resource) -> dict[str, Any] | None:
    if resource.get("kind") not in WORKLOAD_KINDS:
        return None
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def containers(resource: Resource) -> Iterator[tuple[str, Container]]:
    """(label, container) for every container and init container of a workload."""
    spec = pod_spec(resource)
    if spec is None:
        return
    for key in ("initContainers", "containers"):
        for container in spec.get(key, []):
            yield f"{describe(resource)} container {container.get('name')}", container


def service_of(container: Container) -> str | None:
    """The leadflow service a container runs (`python -m services.<name>`), if any."""
    for arg in [*container.get("command", []), *container.get("args", [])]:
        if isinstance(arg, str) and arg.startswith("services."):
            name = arg.removeprefix("services.")
            return name if name in SERVICES else None
    return None


def probes_violations(resources: list[Resource]) -> list[str]:
    """Long-running containers (Deployments) have liveness and readiness probes over HTTP."""
    found: list[str] = []
    for resource in resources:
        if resource.get("kind") != "Deployment":
            continue
        for label, container in containers(resource):
            for probe in ("livenessProbe", "readinessProbe"):
                if "httpGet" not in container.get(probe, {}):
                    found.append(f"{label}: no HTTP {probe}")
    return found


def resources_violations(resources: list[Resource]) -> list[str]:
    """Every container requests and limits CPU and memory."""
    found: list[str] = []
    for resource in resources:
        for label, container in containers(resource):
            for section in ("requests", "limits"):
                given = container.get("resources", {}).get(section, {})
                for quantity in ("cpu", "memory"):
                    if quantity not in given:
                        found.append(f"{label}: no {quantity} {section[:-1]}")
    return found


def security_violations(resources: list[Resource]) -> list[str]:
    """Non-root, read-only root filesystem, no privilege escalation, every capability dropped."""
    found: list[str] = []
    for resource in resources:
        spec = pod_spec(resource)
        if spec is None:
            continue
        pod_context = spec.get("securityContext", {})
        for label, container in containers(resource):
            context = container.get("securityContext", {})
            if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
                found.append(f"{label}: runAsNonRoot is not true")
            if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
                found.append(f"{label}: runs as user 0")
            if context.get("readOnlyRootFilesystem") is not True:
                found.append(f"{label}: root filesystem is writable")
            if context.get("allowPrivilegeEscalation") is not False:
                found.append(f"{label}: privilege escalation is allowed")
            if "ALL" not in context.get("capabilities", {}).get("drop", []):
                found.append(f"{label}: capabilities are not all dropped")
            mounts = {mount.get("mountPath") for mount in container.get("volumeMounts", [])}
            if service_of(container) and "/tmp" not in mounts:
                found.append(f"{label}: no writable /tmp (emptyDir) under a read-only root")
    return found


def scrape_violations(resources: list[Resource]) -> list[str]:
    """Every Deployment's pods are scraped by Prometheus on a port the container exposes."""
    found: list[str] = []
    for resource in resources:
        if resource.get("kind") != "Deployment":
            continue
        annotations = resource["spec"]["template"].get("metadata", {}).get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            found.append(f"{describe(resource)}: no prometheus.io/scrape annotation")
            continue
        ports = {
            str(port.get("containerPort"))
            for _, container in containers(resource)
            for port in container.get("ports", [])
        }
        if annotations.get("prometheus.io/port") not in ports:
            found.append(
                f"{describe(resource)}: scrape port {annotations.get('prometheus.io/port')}"
                f" is not a container port ({sorted(ports)})"
            )
        if annotations.get("prometheus.io/path", "/metrics") != "/metrics":
            found.append(f"{describe(resource)}: scrape path is not /metrics")
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects `labels`; an empty
    selector selects everything."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"no such selector operator: {operator}")
    return True


def config_map_keys(resources: list[Resource], name: str) -> set[str]:
    for resource in resources:
        if resource.get("kind") == "ConfigMap" and resource["metadata"]["name"] == name:
            return set(resource.get("data", {}))
    return set()


def container_env(resources: list[Resource], container: Container) -> dict[str, str | None]:
    """Every variable a container gets: `env` (value, or None when from a Secret or field) and
    the keys of the ConfigMaps named in `envFrom`."""
    names: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            for key in config_map_keys(resources, source["configMapRef"]["name"]):
                names[key] = next(
                    r["data"][key]
                    for r in resources
                    if r.get("kind") == "ConfigMap"
                    and r["metadata"]["name"] == source["configMapRef"]["name"]
                )
    for variable in container.get("env", []):
        names[variable["name"]] = variable.get("value")
    return names


def env_name_violations(resources: list[Resource]) -> list[str]:
    """Every LEADFLOW_* variable a container gets is a setting of the service it runs (or of
    some service, for the shared settings ConfigMap), and every required setting is given."""
    found: list[str] = []
    every_name = all_env_names()
    for resource in resources:
        for label, container in containers(resource):
            service = service_of(container)
            if service is None:
                continue
            names = service_env_names(service)
            own = {variable["name"] for variable in container.get("env", [])}
            for name in sorted(own - names.known):
                found.append(f"{label}: {name} is not a setting of services.{service}")
            given = set(container_env(resources, container))
            for name in sorted(given - own - every_name):
                if name.startswith("LEADFLOW_"):
                    found.append(f"{label}: {name} (from envFrom) is no leadflow setting")
            for name in sorted(names.required - given):
                found.append(f"{label}: required setting {name} is not provided")
    return found


ALL_POLICIES = (
    probes_violations,
    resources_violations,
    security_violations,
    scrape_violations,
    env_name_violations,
)
