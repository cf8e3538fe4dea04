"""Scaling on the rendered overlays: KEDA's triggers cover every topic each service consumes
(derived from the code), reach Kafka by its fully qualified name, keep the partitions evenly
distributed and scale gently; the most pods the autoscalers allow fit PostgreSQL's
max_connections; every Deployment spreads its pods over nodes and zones; every disruption
budget lets unready pods be evicted. Each check returns readable violations and is shown to
fail on a broken copy of the rendered output."""

from __future__ import annotations

import ast
import copy
import math
from dataclasses import dataclass
from typing import Any

import pytest

from shared.consumer.runner import consumer_group
from shared.settings import DatabaseSettings, KafkaSettings
from tests.deploy.kafka_access import subscriptions
from tests.deploy.manifests import OVERLAYS, REPO, Resource, describe, of_kind
from tests.deploy.policies import container_env, containers, selects, service_of

# -- KEDA --------------------------------------------------------------------------------------


def _service(scaled_object: Resource) -> str:
    return str(scaled_object["spec"]["scaleTargetRef"]["name"]).removeprefix("leadflow-")


def _partitions(resources: list[Resource]) -> dict[str, int]:
    return {
        t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(resources, "KafkaTopic")
    }


def _tls_listener_ports(resources: list[Resource]) -> set[int]:
    (kafka,) = of_kind(resources, "Kafka")
    return {
        listener["port"] for listener in kafka["spec"]["kafka"]["listeners"] if listener.get("tls")
    }


def trigger_violations(resources: list[Resource]) -> list[str]:
    """Each ScaledObject has one Kafka trigger per topic its service consumes (the
    `subscriptions=` of services/<name>/), each on the service's consumer group
    (`shared.consumer.runner.consumer_group`), reaching the brokers by the bootstrap Service's
    fully qualified name (KEDA resolves names from its own namespace) on a TLS listener's port."""
    found = []
    kafka = KafkaSettings(topic_prefix="")
    (cluster,) = of_kind(resources, "Kafka")
    ports = _tls_listener_ports(resources)
    for scaled_object in of_kind(resources, "ScaledObject"):
        label = describe(scaled_object)
        service = _service(scaled_object)
        namespace = scaled_object["metadata"]["namespace"]
        expected = {topic.full_name() for topic in subscriptions(service)}
        triggers = scaled_object["spec"]["triggers"]
        topics = [trigger["metadata"].get("topic") for trigger in triggers]
        if len(set(topics)) != len(topics):
            found.append(f"{label}: a topic has two triggers: {sorted(topics)}")
        for missing in sorted(expected - set(topics)):
            found.append(f"{label}: no trigger on {missing}, which {service} consumes")
        for extra in sorted(set(topics) - expected, key=str):
            found.append(f"{label}: a trigger on {extra}, which {service} does not consume")
        host = f"{cluster['metadata']['name']}-kafka-bootstrap.{namespace}.svc.cluster.local"
        for trigger in triggers:
            metadata = trigger["metadata"]
            where = f"{label} trigger {metadata.get('topic')}"
            if trigger["type"] != "kafka":
                found.append(f"{where}: type {trigger['type']}, not kafka")
            if metadata.get("consumerGroup") != consumer_group(kafka, service):
                found.append(f"{where}: group {metadata.get('consumerGroup')}, not the runner's")
            address, _, port = str(metadata.get("bootstrapServers")).rpartition(":")
            if address != host:
                found.append(f"{where}: bootstrap {address}, not the fully qualified {host}")
            if not port.isdigit() or int(port) not in ports:
                found.append(f"{where}: bootstrap port {port} is no TLS listener's ({ports})")
    return found


def distribution_violations(resources: list[Resource]) -> list[str]:
    """Each trigger asks only for replica counts that divide its topic's partitions
    (`ensureEvenDistributionOfPartitions`, never with `limitToPartitionsWithLag`, which KEDA
    refuses beside it, nor idle consumers), and `maxReplicaCount` divides the partitions of every
    topic the service consumes: no member ever holds more partitions of a topic than another."""
    found = []
    partitions = _partitions(resources)
    for scaled_object in of_kind(resources, "ScaledObject"):
        label = describe(scaled_object)
        most = scaled_object["spec"]["maxReplicaCount"]
        for trigger in scaled_object["spec"]["triggers"]:
            metadata = trigger["metadata"]
            topic = metadata.get("topic")
            if metadata.get("ensureEvenDistributionOfPartitions") != "true":
                found.append(f"{label} trigger {topic}: ensureEvenDistributionOfPartitions off")
            if metadata.get("limitToPartitionsWithLag", "false") != "false":
                found.append(f"{label} trigger {topic}: limitToPartitionsWithLag on")
            if metadata.get("allowIdleConsumers", "false") != "false":
                found.append(f"{label} trigger {topic}: allowIdleConsumers on")
            count = partitions.get(str(topic))
            if count is None or count % most:
                found.append(
                    f"{label}: maxReplicaCount {most} does not divide {topic}'s {count} partitions"
                )
    return found


def _behavior_violations(label: str, behavior: dict[str, Any] | None) -> list[str]:
    found = []
    for direction in ("scaleUp", "scaleDown"):
        rules = (behavior or {}).get(direction)
        if not rules:
            found.append(f"{label}: no {direction} behavior")
            continue
        if "stabilizationWindowSeconds" not in rules:
            found.append(f"{label}: {direction} without stabilizationWindowSeconds")
        if not rules.get("policies"):
            found.append(f"{label}: {direction} without a policy")
    window = ((behavior or {}).get("scaleDown") or {}).get("stabilizationWindowSeconds", 0)
    if window < 60:
        found.append(f"{label}: scaleDown stabilizationWindowSeconds {window} < 60")
    return found


def behavior_violations(resources: list[Resource]) -> list[str]:
    """Every autoscaler says how fast it scales each way (a stabilization window and a policy for
    scaling up and down; down waits a minute at least), in the HPA KEDA makes
    (`advanced.horizontalPodAutoscalerConfig.behavior`) or its own. A ScaledObject that never
    scales to zero has no `cooldownPeriod`, which only governs going to zero."""
    found = []
    for scaled_object in of_kind(resources, "ScaledObject"):
        label = describe(scaled_object)
        spec = scaled_object["spec"]
        behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
        found += _behavior_violations(label, behavior)
        if spec.get("minReplicaCount", 0) > 0 and "cooldownPeriod" in spec:
            found.append(f"{label}: cooldownPeriod only applies when scaling to zero")
    for autoscaler in of_kind(resources, "HorizontalPodAutoscaler"):
        found += _behavior_violations(describe(autoscaler), autoscaler["spec"].get("behavior"))
    return found


@pytest.mark.parametrize(
    "check",
    [trigger_violations, distribution_violations, behavior_violations],
    ids=lambda check: check.__name__,
)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_on_every_consumed_topic_evenly_and_gently(
    rendered: dict[str, list[Resource]], overlay: str, check: Any
) -> None:
    assert check(rendered[overlay]) == []


def test_the_prod_scaled_objects_are_the_pipeline_consumers(
    rendered: dict[str, list[Resource]],
) -> None:
    scaled = of_kind(rendered["prod"], "ScaledObject")
    assert {_service(s) for s in scaled} == {"enrich", "score", "router"}
    assert all(len(s["spec"]["triggers"]) >= 2 for s in scaled)


def _changed(resources: list[Resource], kind: str, name: str, change: Any) -> list[Resource]:
    changed = copy.deepcopy(resources)
    for resource in of_kind(changed, kind):
        if resource["metadata"]["name"] == name:
            change(resource)
    return changed


def test_the_keda_checks_report_a_broken_scaled_object(
    rendered: dict[str, list[Resource]],
) -> None:
    prod = rendered["prod"]

    def drop_trigger(s: Resource) -> None:
        s["spec"]["triggers"] = [
            t for t in s["spec"]["triggers"] if t["metadata"]["topic"] != "score.commands"
        ]

    def short_name(s: Resource) -> None:
        s["spec"]["triggers"][0]["metadata"]["bootstrapServers"] = (
            "leadflow-kafka-kafka-bootstrap:9093"
        )

    def other_group(s: Resource) -> None:
        s["spec"]["triggers"][1]["metadata"]["consumerGroup"] = "leadflow-router"

    def uneven(s: Resource) -> None:
        s["spec"]["maxReplicaCount"] = 12
        del s["spec"]["triggers"][0]["metadata"]["ensureEvenDistributionOfPartitions"]

    def abrupt(s: Resource) -> None:
        del s["spec"]["advanced"]
        s["spec"]["cooldownPeriod"] = 300

    cases = [
        (trigger_violations, drop_trigger, "no trigger on score.commands"),
        (trigger_violations, short_name, "not the fully qualified"),
        (trigger_violations, other_group, "not the runner's"),
        (distribution_violations, uneven, "ensureEvenDistributionOfPartitions off"),
        (distribution_violations, uneven, "does not divide crm.feedback's 6 partitions"),
        (behavior_violations, abrupt, "no scaleDown behavior"),
        (behavior_violations, abrupt, "cooldownPeriod only applies"),
    ]
    for check, change, expected in cases:
        assert check(prod) == []
        broken = _changed(prod, "ScaledObject", "leadflow-score", change)
        assert expected in " | ".join(check(broken)), (change.__name__, check(broken))
    hpa = _changed(
        prod, "HorizontalPodAutoscaler", "leadflow-ingest", lambda h: h["spec"].pop("behavior")
    )
    assert "HorizontalPodAutoscaler/leadflow-ingest: no scaleUp behavior" in behavior_violations(
        hpa
    )


# -- PostgreSQL's connection budget -------------------------------------------------------------

# Connections PostgreSQL keeps for its superusers (`superuser_reserved_connections`, 3 unless the
# Cluster sets it), and what the CloudNativePG operator, its instance manager and metrics
# exporter and an administrator's `kubectl cnpg psql` take, at most.
SUPERUSER_RESERVED_DEFAULT = 3
OPERATOR_AND_MONITORING = 10
# The migration Job's connections: shared/migrations.py runs each service's alembic on a NullPool
# engine, one connection at a time, its services one after the other.
MIGRATION_JOB = 1
# Operator commands run in a pod (`kubectl exec ... python -m services.<name> <command>`) open
# an engine with the pod's pool settings: one at a time is budgeted.
OPERATOR_COMMANDS = 1
# Connections a pod holds beside its pool, by service: sync LISTENs for its queue's
# notifications on a connection of its own (shared.db.listen). A test keeps this equal to the
# services that call it.
EXTRA_PER_POD = {"sync": 1}


def services_that_listen() -> set[str]:
    """The services whose modules import `listen` from shared.db (a connection of its own)."""
    found = set()
    for folder in sorted((REPO / "services").iterdir()):
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.ImportFrom)
                    and node.module == "shared.db"
                    and any(alias.name == "listen" for alias in node.names)
                ):
                    found.add(folder.name)
    return found


@dataclass(frozen=True)
class Consumer:
    """One line of the connection budget."""

    what: str
    pods: int
    per_pod: int

    @property
    def connections(self) -> int:
        return self.pods * self.per_pod


def _count(value: int | str, of: int, *, up: bool) -> int:
    """An int-or-percent of a rolling update's maxSurge (rounded up) or maxUnavailable (down)."""
    if isinstance(value, int):
        return value
    share = int(value.rstrip("%")) * of / 100
    return math.ceil(share) if up else math.floor(share)


def _max_replicas(resources: list[Resource], deployment: Resource) -> int:
    name = deployment["metadata"]["name"]
    for scaled_object in of_kind(resources, "ScaledObject"):
        if scaled_object["spec"]["scaleTargetRef"]["name"] == name:
            return int(scaled_object["spec"].get("maxReplicaCount", 100))  # KEDA's default
    for autoscaler in of_kind(resources, "HorizontalPodAutoscaler"):
        if autoscaler["spec"]["scaleTargetRef"]["name"] == name:
            return int(autoscaler["spec"]["maxReplicas"])
    return int(deployment["spec"].get("replicas", 1))


def _pool(env: dict[str, str | None]) -> int:
    """The most connections one process's engine opens: pool_size + max_overflow."""
    fields = DatabaseSettings.model_fields
    size = env.get("LEADFLOW_DATABASE_POOL_SIZE") or fields["pool_size"].default
    overflow = env.get("LEADFLOW_DATABASE_MAX_OVERFLOW") or fields["max_overflow"].default
    return int(size) + int(overflow)


def connection_budget(resources: list[Resource]) -> tuple[list[Consumer], int]:
    """Who holds PostgreSQL connections at most, and the Cluster's max_connections.

    Each Deployment whose pods reach the database: its most pods (the autoscaler's maximum, else
    `replicas`) plus, during a rollout, up to maxSurge new and maxUnavailable stopping pods (a
    stopping pod keeps its pool until it has drained), times pool_size + max_overflow plus the
    connections it holds beside its pool. Then the migration Job, an operator command, and what
    PostgreSQL reserves for superusers and the operator and monitoring take."""
    lines = []
    pool = 0
    for deployment in of_kind(resources, "Deployment"):
        for _, container in containers(deployment):
            env = container_env(resources, container)
            if "LEADFLOW_DATABASE_URL" not in env:
                continue
            service = service_of(container) or deployment["metadata"]["name"]
            pool = max(pool, _pool(env))
            most = _max_replicas(resources, deployment)
            rolling = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
            rollout = _count(rolling.get("maxSurge", "25%"), most, up=True) + _count(
                rolling.get("maxUnavailable", "25%"), most, up=False
            )
            per_pod = _pool(env) + EXTRA_PER_POD.get(service, 0)
            lines.append(
                Consumer(
                    f"{describe(deployment)} ({most} + {rollout} in a rollout)",
                    most + rollout,
                    per_pod,
                )
            )
    lines.append(Consumer("the migration Job", 1, MIGRATION_JOB))
    lines.append(Consumer("an operator command", OPERATOR_COMMANDS, pool))
    (cluster,) = of_kind(resources, "Cluster")
    parameters = cluster["spec"].get("postgresql", {}).get("parameters", {})
    reserved = int(parameters.get("superuser_reserved_connections", SUPERUSER_RESERVED_DEFAULT))
    lines.append(Consumer("superuser_reserved_connections", 1, reserved))
    lines.append(Consumer("the operator and monitoring", 1, OPERATOR_AND_MONITORING))
    return lines, int(parameters.get("max_connections", 100))  # PostgreSQL's default


def budget_violations(resources: list[Resource]) -> list[str]:
    lines, max_connections = connection_budget(resources)
    total = sum(line.connections for line in lines)
    if total <= max_connections:
        return []
    detail = "; ".join(f"{line.what}: {line.pods} x {line.per_pod}" for line in lines)
    return [f"{total} connections at most > max_connections {max_connections} ({detail})"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_most_pods_fit_postgresqls_max_connections(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    """deploy/README.md, "Scale": the formula and its numbers."""
    assert budget_violations(rendered[overlay]) == []
    lines, max_connections = connection_budget(rendered[overlay])
    assert len([line for line in lines if line.what.startswith("Deployment/")]) == 5
    if overlay == "prod":
        # The sum deploy/README.md ("Scale") shows, term by term.
        assert sum(line.connections for line in lines) == 192 <= max_connections


def test_the_budget_reports_too_many_replicas(rendered: dict[str, list[Resource]]) -> None:
    """Twelve replicas of each autoscaled consumer (one per partition of their hot topics, as
    before) do not fit; nor does a pool left at SQLAlchemy's default overflow of 10."""
    prod = rendered["prod"]

    def twelve(s: Resource) -> None:
        s["spec"]["maxReplicaCount"] = 12

    broken = prod
    for name in ("leadflow-enrich", "leadflow-score", "leadflow-router"):
        broken = _changed(broken, "ScaledObject", name, twelve)
    assert "> max_connections 200" in " | ".join(budget_violations(broken))

    def overflow(config_map: Resource) -> None:
        config_map["data"]["LEADFLOW_DATABASE_MAX_OVERFLOW"] = "10"

    (settings,) = [
        c
        for c in of_kind(prod, "ConfigMap")
        if c["metadata"]["name"].startswith("leadflow-settings")
    ]
    broken = _changed(prod, "ConfigMap", settings["metadata"]["name"], overflow)
    assert "> max_connections 200" in " | ".join(budget_violations(broken))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pool_limits_are_set_explicitly(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    (settings,) = [
        c
        for c in of_kind(rendered[overlay], "ConfigMap")
        if c["metadata"]["name"].startswith("leadflow-settings")
    ]
    for name in ("LEADFLOW_DATABASE_POOL_SIZE", "LEADFLOW_DATABASE_MAX_OVERFLOW"):
        assert settings["data"][name].isdigit(), name


def test_the_connections_beside_the_pool_are_the_ones_the_code_opens() -> None:
    assert services_that_listen() == set(EXTRA_PER_POD)


# -- spreading and disruptions ------------------------------------------------------------------

ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"


def spread_violations(resources: list[Resource]) -> list[str]:
    """Every Deployment spreads its pods over nodes (DoNotSchedule: required) and zones
    (ScheduleAnyway: a cluster without zones, or a full zone, still schedules), counting its own
    pods only (a selector that selects them and no other Deployment's) of the same revision
    (`matchLabelKeys: [pod-template-hash]`), on the nodes whose taints they tolerate."""
    found = []
    deployments = of_kind(resources, "Deployment")
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in deployments}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        constraints = deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
        by_key = {c["topologyKey"]: c for c in constraints}
        for key, when in ((HOSTNAME, "DoNotSchedule"), (ZONE, "ScheduleAnyway")):
            constraint = by_key.get(key)
            if constraint is None:
                found.append(f"{describe(deployment)}: no spread over {key}")
                continue
            where = f"{describe(deployment)} spread over {key}"
            if constraint.get("whenUnsatisfiable") != when:
                found.append(f"{where}: whenUnsatisfiable is not {when}")
            if constraint.get("maxSkew") != 1:
                found.append(f"{where}: maxSkew is not 1")
            selector = constraint.get("labelSelector", {})
            if not selects(selector, pods[name]):
                found.append(f"{where}: the selector does not select its own pods")
            others = sorted(
                o for o, labels in pods.items() if o != name and selects(selector, labels)
            )
            if others:
                found.append(f"{where}: the selector counts the pods of {others}")
            if "pod-template-hash" not in constraint.get("matchLabelKeys", []):
                found.append(f"{where}: no matchLabelKeys pod-template-hash")
            if constraint.get("nodeTaintsPolicy") != "Honor":
                found.append(f"{where}: tainted nodes count as empty domains")
    return found


def disruption_violations(resources: list[Resource]) -> list[str]:
    """Every PodDisruptionBudget covers one Deployment's pods and lets unready pods be evicted
    (`unhealthyPodEvictionPolicy: AlwaysAllow`): readiness follows the partitions and the
    database, and a rebalance or a database outage must not block node drains."""
    found = []
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(resources, "Deployment")
    }
    for budget in of_kind(resources, "PodDisruptionBudget"):
        if budget["spec"].get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
            found.append(f"{describe(budget)}: unhealthyPodEvictionPolicy is not AlwaysAllow")
        covered = [
            name for name, labels in pods.items() if selects(budget["spec"]["selector"], labels)
        ]
        if len(covered) != 1:
            found.append(f"{describe(budget)}: covers {covered}, not one Deployment")
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_spreads_its_pods(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    assert len(of_kind(rendered[overlay], "Deployment")) == 6
    assert spread_violations(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_disruption_budget_lets_unready_pods_go(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    assert disruption_violations(rendered[overlay]) == []
    if overlay == "prod":
        assert len(of_kind(rendered[overlay], "PodDisruptionBudget")) == 6


def test_the_spread_and_budget_checks_report_broken_ones(
    rendered: dict[str, list[Resource]],
) -> None:
    prod = rendered["prod"]

    def no_spread(d: Resource) -> None:
        d["spec"]["template"]["spec"].pop("topologySpreadConstraints")

    def broad(d: Resource) -> None:
        for constraint in d["spec"]["template"]["spec"]["topologySpreadConstraints"]:
            constraint["labelSelector"] = {"matchLabels": {"app.kubernetes.io/part-of": "leadflow"}}
            constraint.pop("matchLabelKeys")

    def strict_zone(d: Resource) -> None:
        for constraint in d["spec"]["template"]["spec"]["topologySpreadConstraints"]:
            constraint["whenUnsatisfiable"] = "DoNotSchedule"

    cases = [
        (no_spread, "no spread over kubernetes.io/hostname"),
        (broad, "the selector counts the pods of ['leadflow-console'"),
        (broad, "no matchLabelKeys pod-template-hash"),
        (strict_zone, "zone: whenUnsatisfiable is not ScheduleAnyway"),
    ]
    for change, expected in cases:
        broken = _changed(prod, "Deployment", "leadflow-enrich", change)
        assert expected in " | ".join(spread_violations(broken)), change.__name__

    broken = _changed(
        prod,
        "PodDisruptionBudget",
        "leadflow-score",
        lambda b: b["spec"].pop("unhealthyPodEvictionPolicy"),
    )
    assert disruption_violations(broken) == [
        "PodDisruptionBudget/leadflow-score: unhealthyPodEvictionPolicy is not AlwaysAllow"
    ]
