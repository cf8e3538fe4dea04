"""Policies on the rendered overlays: hardened, observable workloads, settings that the services
really read, durable Kafka topics for every contract, and rules files the services accept."""

from __future__ import annotations

import base64
import copy
import importlib
import math
import os
from pathlib import Path, PurePosixPath
from typing import Any

import aiokafka.codec
import pytest
import yaml
from pydantic import ValidationError

from shared.privacy import TOPICS_KEEP_AT_MOST_DAYS
from shared.settings import ConsumerSettings
from shared.topics import ALL_TOPICS, Topic, all_topic_names
from tests.deploy.manifests import OVERLAYS, Resource, describe, of_kind
from tests.deploy.policies import (
    ALL_POLICIES,
    container_env,
    containers,
    env_name_violations,
    probes_violations,
    resources_violations,
    scrape_violations,
    security_violations,
    selects,
    service_of,
)
from tests.deploy.settings_names import SERVICES, settings_class

FIXTURES = Path(__file__).parent / "fixtures"
DAY_MS = 86_400_000
# The services with a Kafka consumer (the runner drains it on SIGTERM).
CONSUMERS = {"enrich", "score", "router", "console", "sync"}


def named(resources: list[Resource], kind: str, name: str) -> Resource:
    return next(r for r in of_kind(resources, kind) if r["metadata"]["name"] == name)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("policy", ALL_POLICIES, ids=lambda policy: policy.__name__)
def test_every_workload_meets_the_policy(
    rendered: dict[str, list[Resource]], overlay: str, policy: Any
) -> None:
    assert policy(rendered[overlay]) == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (probes_violations, ["no HTTP livenessProbe", "no HTTP readinessProbe"]),
        (resources_violations, ["no memory request", "no cpu limit", "no memory limit"]),
        (
            security_violations,
            [
                "runAsNonRoot is not true",
                "runs as user 0",
                "root filesystem is writable",
                "privilege escalation is allowed",
                "capabilities are not all dropped",
                "no writable /tmp",
            ],
        ),
        (scrape_violations, ["scrape port 9999 is not a container port"]),
        (
            env_name_violations,
            [
                "LEADFLOW_SCORE_RULEZ_FILE is not a setting of services.score",
                "LEADFLOW_KAFKA_BOOTSTRAP_SERVER (from envFrom) is no leadflow setting",
                "required setting LEADFLOW_DATABASE_URL is not provided",
            ],
        ),
    ],
    ids=lambda value: getattr(value, "__name__", "expected"),
)
def test_each_policy_reports_the_broken_workload(policy: Any, expected: list[str]) -> None:
    broken = [doc for doc in yaml.safe_load_all((FIXTURES / "broken-workload.yaml").read_text())]
    violations = " | ".join(policy(broken))
    for fragment in expected:
        assert fragment in violations


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_get_longer_to_stop_than_their_drain(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    default_drain = ConsumerSettings.model_fields["shutdown_drain_timeout_s"].default
    checked = 0
    for deployment in of_kind(resources, "Deployment"):
        for _, container in containers(deployment):
            if service_of(container) in CONSUMERS:
                env = container_env(resources, container)
                drain = float(
                    env.get("LEADFLOW_CONSUMER_SHUTDOWN_DRAIN_TIMEOUT_S") or default_drain
                )
                grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
                assert grace > drain + 10, f"{deployment['metadata']['name']}: {grace}s <= drain"
                checked += 1
    assert checked == len(CONSUMERS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_producer_is_idempotent_against_real_kafka(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    settings = of_kind(rendered[overlay], "ConfigMap")
    values = next(
        r["data"] for r in settings if r["metadata"]["name"].startswith("leadflow-settings")
    )
    assert values["LEADFLOW_KAFKA_ENABLE_IDEMPOTENCE"] == "true"


def secret_value(resources: list[Resource], reference: dict[str, Any], variable: str) -> str | None:
    """The value a secretKeyRef gives where the overlay renders the Secret (dev; None for an
    `optional` key it lacks: the variable is then unset); otherwise a stand-in of the right
    shape (prod's Secret is created by the operator)."""
    for secret in of_kind(resources, "Secret"):
        if secret["metadata"]["name"] == reference["name"]:
            if reference["key"] in secret.get("stringData", {}):
                return str(secret["stringData"][reference["key"]])
            if reference["key"] not in secret.get("data", {}) and reference.get("optional"):
                return None
            return base64.b64decode(secret["data"][reference["key"]]).decode()
    stand_ins = {
        "LEADFLOW_DATABASE_URL": "postgresql+asyncpg://leadflow:secret@db:5432/leadflow",
        "LEADFLOW_INGEST_WRITE_KEYS": '{"website": {"key_sha256": "' + "1" * 64 + '",'
        ' "source": "website", "scopes": ["track"]}}',
        "LEADFLOW_API_CLIENTS": '{"console": {"token_sha256": "' + "0" * 64 + '",'
        ' "scopes": ["leads:read"]}}',
        # Generated by Strimzi's User Operator for each KafkaUser, in every overlay.
        "LEADFLOW_KAFKA_SASL_PASSWORD": "a-generated-scram-password",
        # The console's keys of base/secret-template.yaml, single sign-on included.
        "LEADFLOW_CONSOLE_SECRET_KEY": "0123456789abcdef" * 4,
        "LEADFLOW_CONSOLE_SCORE_API_TOKEN": "a-token-of-the-console-client",
        "LEADFLOW_CONSOLE_ROUTER_API_TOKEN": "a-token-of-the-console-client",
        "LEADFLOW_CONSOLE_OIDC": '{"metadata_url": "https://idp.example.com/.well-known/'
        'openid-configuration", "client_id": "leadflow", "client_secret": "s3cret",'
        ' "role_claim": "groups", "roles": {"revops-admins": "admin"}, "default_role": "viewer"}',
        # enrich's key of the do-not-track list's hashes (`openssl rand -hex 32`).
        "LEADFLOW_ENRICH_PRIVACY_KEY": "fedcba9876543210" * 4,
    }
    return stand_ins[variable]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_starts_with_the_settings_its_manifest_gives(
    rendered: dict[str, list[Resource]], monkeypatch: pytest.MonkeyPatch, overlay: str
) -> None:
    """The service's settings class accepts every value (types, ranges, JSON) as it starts."""
    resources = rendered[overlay]
    checked = set()
    for workload in [*of_kind(resources, "Deployment"), *of_kind(resources, "Job")]:
        for label, container in containers(workload):
            service = service_of(container)
            if service is None:
                continue
            for name in list(os.environ):
                if name.startswith("LEADFLOW_"):
                    monkeypatch.delenv(name)
            for name, value in container_env(resources, container).items():
                if value is None:
                    source = next(v for v in container["env"] if v["name"] == name)["valueFrom"]
                    value = secret_value(resources, source["secretKeyRef"], name)
                    if value is None:
                        continue
                monkeypatch.setenv(name, value)
            try:
                settings = settings_class(service)()
            except ValidationError as exc:
                pytest.fail(f"{label}: {exc}")
            codec = settings.kafka.compression_type
            assert codec is None or getattr(aiokafka.codec, f"has_{codec}")(), (
                f"{label}: aiokafka cannot load the {codec} codec with the pinned dependencies"
            )
            checked.add(service)
    assert checked == set(SERVICES)


@pytest.mark.parametrize(
    ("service", "variable", "loader"),
    [
        ("score", "LEADFLOW_SCORE_RULES_FILE", "rules_versions.read_rules_file"),
        ("router", "LEADFLOW_ROUTER_ROUTING_FILE", "routing_config.read_routing_file"),
    ],
)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rules_files_in_config_maps_load_as_the_service_loads_them(
    rendered: dict[str, list[Resource]],
    tmp_path: Path,
    overlay: str,
    service: str,
    variable: str,
    loader: str,
) -> None:
    """The file the setting names is a key of a ConfigMap mounted there, and the service's own
    reader (the one it adopts the file with at start) accepts its content."""
    resources = rendered[overlay]
    deployment = named(resources, "Deployment", f"leadflow-{service}")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    path = PurePosixPath(str(container_env(resources, container)[variable]))
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    config_map = named(resources, "ConfigMap", volume["configMap"]["name"])
    copy = tmp_path / path.name
    copy.write_text(config_map["data"][path.name])
    module, function = loader.rsplit(".", 1)
    try:
        getattr(importlib.import_module(f"services.{service}.{module}"), function)(copy)
    except Exception as exc:
        pytest.fail(
            f"the {volume['configMap']['name']} ConfigMap (deploy/base/config/{path.name}) no"
            f" longer loads with services.{service}; update it from the service's default"
            f" file: {str(exc)[:600]}"
        )


# -- Kafka in production ------------------------------------------------------------------


def test_every_topic_and_dead_letter_topic_has_a_kafka_topic_in_prod(
    rendered: dict[str, list[Resource]],
) -> None:
    topics = of_kind(rendered["prod"], "KafkaTopic")
    declared = {t["spec"].get("topicName", t["metadata"]["name"]) for t in topics}
    missing = sorted(set(all_topic_names()) - declared)
    assert missing == [], (
        f"add KafkaTopics to deploy/components/strimzi-kafka/topics.yaml: {missing}"
    )


def test_prod_kafka_is_kraft_with_three_nodes_rf3_and_min_insync_2(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["prod"]
    (kafka,) = of_kind(resources, "Kafka")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert config["offsets.topic.replication.factor"] == 3
    assert config["unclean.leader.election.enable"] is False
    assert config["auto.create.topics.enable"] is False
    (pool,) = of_kind(resources, "KafkaNodePool")
    assert pool["spec"]["replicas"] == 3
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    for topic in of_kind(resources, "KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == 2


# A compacted topic's settings and the broker's settings of their defaults, with Kafka's own
# defaults: no bound on the compaction lag, tombstones kept a day, no minimum lag.
COMPACTION_DEFAULTS = {
    "max.compaction.lag.ms": ("log.cleaner.max.compaction.lag.ms", math.inf),
    "delete.retention.ms": ("log.cleaner.delete.retention.ms", float(DAY_MS)),
    "min.compaction.lag.ms": ("log.cleaner.min.compaction.lag.ms", 0.0),
}


def _broker_default_ms(kafka_config: dict[str, Any], name: str) -> float:
    """The broker's default of a topic's `retention.ms` (`log.retention.*`) or `segment.ms`
    (`log.roll.*`), as the Kafka resource sets it or Kafka's own default (7 days for both), or
    of a compaction setting (`COMPACTION_DEFAULTS`)."""
    if name in COMPACTION_DEFAULTS:
        key, default = COMPACTION_DEFAULTS[name]
        return _ms(kafka_config[key]) if key in kafka_config else default
    prefix = {"retention.ms": "log.retention", "segment.ms": "log.roll"}[name]
    for key, unit in (
        (f"{prefix}.ms", 1),
        (f"{prefix}.minutes", 60_000),
        (f"{prefix}.hours", 3_600_000),
    ):
        if key in kafka_config:  # the first given wins, as in Kafka
            value = int(kafka_config[key])
            return math.inf if value < 0 else float(value * unit)
    return 7 * DAY_MS


def _ms(value: Any) -> float:
    """A duration in ms of a topic's config; -1 (or below) is "forever"."""
    return math.inf if int(value) < 0 else float(value)


def _setting_ms(config: dict[str, Any], kafka_config: dict[str, Any], name: str) -> float:
    """A topic's duration setting, or the broker's default of it."""
    return _ms(config[name]) if name in config else _broker_default_ms(kafka_config, name)


def _cleanup_policy(config: dict[str, Any], kafka_config: dict[str, Any]) -> str:
    return str(config.get("cleanup.policy", kafka_config.get("log.cleanup.policy", "delete")))


def compacted_keeping_ms(config: dict[str, Any], kafka_config: dict[str, Any]) -> float:
    """How long a compacted topic may keep an erased lead's data after its tombstone: the
    tombstone's segment rolls within `min(segment.ms, max.compaction.lag.ms)` of its first
    record (Kafka rolls a compacted topic's open segment by the compaction lag too, at the next
    append), and is compacted, removing the lead's earlier records, at the latest
    `max.compaction.lag.ms` after the tombstone was written; the tombstone itself (the key, no
    value) stays `delete.retention.ms` more."""
    return sum(
        _setting_ms(config, kafka_config, name)
        for name in ("max.compaction.lag.ms", "delete.retention.ms")
    )


def dead_letter_retention_violations(resources: list[Resource], topic: Topic) -> list[str]:
    """The topic's dead-letter topic keeps its letters no longer than the topic keeps its
    messages: both KafkaTopics declared, the letters deleting (`cleanup.policy: delete`:
    compaction keeps a key's last message forever) as the topic does, the letters'
    `retention.ms` at most the topic's, and their segments closed at least as often
    (`segment.ms`: Kafka deletes closed segments only, so an open one outlives its retention by
    up to that much). Unset values are the broker's.

    A topic the registry declares compacted (`Topic.compacted`: state, a lead's current record)
    compacts instead (`cleanup.policy: compact`, nothing else): it keeps a live lead's record
    as long as it is current, and an erased lead's until its tombstone is compacted in, at the
    latest `max.compaction.lag.ms` after it. Its letters are not compacted (a tombstone removes
    none), so they keep by time, no longer than that lag, closing segments as often."""
    by_name = {
        t["spec"].get("topicName", t["metadata"]["name"]): t
        for t in of_kind(resources, "KafkaTopic")
    }
    (kafka,) = of_kind(resources, "Kafka")
    kafka_config = kafka["spec"]["kafka"].get("config", {})
    missing = [name for name in (topic.full_name(), topic.dlq_name()) if name not in by_name]
    if missing:
        return [f"no KafkaTopic {name}" for name in missing]
    source = by_name[topic.full_name()]["spec"].get("config", {})
    dead = by_name[topic.dlq_name()]["spec"].get("config", {})
    found = []
    expected = "compact" if topic.compacted else "delete"
    for name, config, wanted in (
        (topic.full_name(), source, expected),
        (topic.dlq_name(), dead, "delete"),
    ):
        policy = _cleanup_policy(config, kafka_config)
        if policy != wanted:
            found.append(f"{name}: cleanup.policy {policy}, not {wanted}")
    for setting, why in (
        ("retention.ms", "keeps letters longer than"),
        ("segment.ms", "closes segments less often than"),
    ):
        letters = _setting_ms(dead, kafka_config, setting)
        kept = _setting_ms(source, kafka_config, setting)
        compared = setting
        if topic.compacted:
            # An erased lead's record stays up to the compaction lag, whatever retention.ms
            # says (a compact-only topic ignores it); the open segment rolls by the lag too.
            lag = _setting_ms(source, kafka_config, "max.compaction.lag.ms")
            if setting == "retention.ms":
                kept, compared = lag, "retention.ms vs max.compaction.lag.ms"
            else:
                kept = min(kept, lag)
        if letters > kept:
            found.append(
                f"{topic.dlq_name()} {why} {topic.full_name()}: {compared} {letters:g} > {kept:g}"
            )
    return found


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda topic: topic.name)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dead_letters_are_kept_no_longer_than_their_topic(
    rendered: dict[str, list[Resource]], overlay: str, topic: Topic
) -> None:
    """A dead letter is its message's original bytes: it must not outlive the message (issue
    21: dead-letter topics keep no longer than their source topics). An erasure removes nothing
    from Kafka; retention is what bounds how long a person's data stays there."""
    resources = rendered[overlay]
    assert dead_letter_retention_violations(resources, topic) == []
    # And the topic itself keeps a week at least, so its consumers can be replayed (a compacted
    # topic keeps each key's current record: no retention by time).
    by_name = {t["spec"]["topicName"]: t for t in of_kind(resources, "KafkaTopic")}
    if not topic.compacted:
        assert _ms(by_name[topic.full_name()]["spec"]["config"]["retention.ms"]) >= 7 * DAY_MS


def test_the_dead_letter_retention_check_reports_a_longer_keeping(
    rendered: dict[str, list[Resource]],
) -> None:
    """The check above fails where a dead-letter topic keeps longer, keeps forever, compacts,
    closes its segments less often than its topic, or is missing."""

    def changed(name: str, **config: Any) -> list[Resource]:
        resources = copy.deepcopy(rendered["prod"])
        for resource in of_kind(resources, "KafkaTopic"):
            if resource["spec"]["topicName"] == name:
                for key, value in config.items():
                    if value is None:
                        resource["spec"]["config"].pop(key, None)
                    else:
                        resource["spec"]["config"][key] = value
        return resources

    raw = next(t for t in ALL_TOPICS if t.name == "events.raw")
    scored = next(t for t in ALL_TOPICS if t.name == "leads.scored")
    (current,) = [t for t in ALL_TOPICS if t.compacted]
    cases = [
        (raw, changed("events.raw.dlq", **{"retention.ms": 90 * DAY_MS}), "keeps letters longer"),
        (raw, changed("events.raw.dlq", **{"retention.ms": -1}), "keeps letters longer"),
        (raw, changed("events.raw.dlq", **{"cleanup.policy": "compact"}), "not delete"),
        (raw, changed("events.raw", **{"segment.ms": 3_600_000}), "closes segments less often"),
        # A source kept a day: its letters' 7 days are longer.
        (raw, changed("events.raw", **{"retention.ms": DAY_MS}), "keeps letters longer"),
        (
            raw,
            [r for r in rendered["prod"] if r.get("spec", {}).get("topicName") != "events.raw.dlq"],
            "no KafkaTopic events.raw.dlq",
        ),
        # A compacted topic: compacting (compact,delete would drop live leads' routes by time),
        # its letters deleting, kept no longer than an erased lead's record stays.
        (current, changed("routing.current", **{"cleanup.policy": "delete"}), "not compact"),
        (
            current,
            changed("routing.current", **{"cleanup.policy": "compact,delete"}),
            "not compact",
        ),
        (current, changed("routing.current.dlq", **{"cleanup.policy": "compact"}), "not delete"),
        (
            current,
            changed("routing.current", **{"max.compaction.lag.ms": DAY_MS}),
            "keeps letters longer",
        ),
        (
            current,
            changed("routing.current.dlq", **{"retention.ms": 30 * DAY_MS}),
            "keeps letters longer",
        ),
        (
            current,
            changed("routing.current", **{"max.compaction.lag.ms": 3_600_000}),
            "closes segments less often",
        ),
    ]
    for topic, resources, expected in cases:
        assert expected in " | ".join(dead_letter_retention_violations(resources, topic))
    # Equal is fine; an unset retention.ms is the broker's 7 days, within leads.scored's 30.
    assert dead_letter_retention_violations(changed("leads.scored.dlq"), scored) == []
    unset = changed("leads.scored.dlq", **{"retention.ms": None})
    assert dead_letter_retention_violations(unset, scored) == []


def test_lag_autoscaling_never_exceeds_the_partitions_of_the_consumed_topic(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["prod"]
    partitions = {
        t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(resources, "KafkaTopic")
    }
    scaled = of_kind(resources, "ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {
        "leadflow-enrich",
        "leadflow-score",
        "leadflow-router",
    }
    for scaled_object in scaled:
        target = scaled_object["spec"]["scaleTargetRef"]["name"]
        # One trigger per consumed topic (tests/deploy/test_scaling.py checks which).
        for trigger in scaled_object["spec"]["triggers"]:
            assert trigger["type"] == "kafka"
            # The runner's group id is leadflow-<service> (shared/consumer/runner.py).
            assert trigger["metadata"]["consumerGroup"] == target
            topic = trigger["metadata"]["topic"]
            assert scaled_object["spec"]["maxReplicaCount"] <= partitions[topic]
        deployment = named(resources, "Deployment", target)
        assert "replicas" not in deployment["spec"], "apply would reset the autoscaler's choice"


def test_prod_runs_a_pinned_image_with_a_database_cluster(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["prod"]
    for workload in [*of_kind(resources, "Deployment"), *of_kind(resources, "Job")]:
        for label, container in containers(workload):
            assert not container["image"].endswith(":latest"), label
            assert ":" in container["image"], label
    (cluster,) = of_kind(resources, "Cluster")
    assert cluster["spec"]["instances"] == 3
    # The first deployment applies Kafka and PostgreSQL alone by these labels (README).
    for kind, component in [
        ("Kafka", "kafka"),
        ("KafkaNodePool", "kafka"),
        ("KafkaTopic", "kafka"),
        ("Cluster", "database"),
    ]:
        for resource in of_kind(resources, kind):
            assert resource["metadata"]["labels"]["app.kubernetes.io/component"] == component
    budgets = of_kind(resources, "PodDisruptionBudget")
    assert {b["metadata"]["name"] for b in budgets} == {f"leadflow-{s}" for s in SERVICES}
    assert any(
        p["metadata"]["name"] == "leadflow-default-deny"
        for p in of_kind(resources, "NetworkPolicy")
    )


def _api_peers_violations(resources: list[Resource]) -> list[str]:
    """Every NetworkPolicy rule that admits traffic to a service's API port (`api`) admits only
    pods of the namespace labelled `leadflow.io/api-client: "true"`."""
    found = []
    for workload in of_kind(resources, "Deployment"):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        api_ports = {
            port["containerPort"]
            for _, container in containers(workload)
            for port in container.get("ports", [])
            if port["name"] == "api"
        }
        if not api_ports:
            continue
        for policy in of_kind(resources, "NetworkPolicy"):
            if not selects(policy["spec"]["podSelector"], labels):
                continue
            for rule in policy["spec"].get("ingress", []):
                ports = {p["port"] for p in rule.get("ports", [])} or api_ports  # none: all
                if not ports & api_ports:
                    continue
                peers = rule.get("from", [])
                if not peers or any(
                    set(peer) != {"podSelector"}
                    or peer["podSelector"] != {"matchLabels": {"leadflow.io/api-client": "true"}}
                    for peer in peers
                ):
                    found.append(
                        f"{describe(policy)} admits {peers or 'anyone'} to"
                        f" {describe(workload)} API port {sorted(ports & api_ports)}"
                    )
    return found


def test_no_v1_route_is_reachable_from_outside_its_allowed_peers(
    rendered: dict[str, list[Resource]],
) -> None:
    """enrich's, score's and router's /v1 APIs take erasures and serve personal data: in prod
    only API clients reach them (monitoring reaches the health ports only), and every service
    with routes has an API port."""
    resources = rendered["prod"]
    with_api = {
        workload["metadata"]["name"]
        for workload in of_kind(resources, "Deployment")
        for _, container in containers(workload)
        if any(port["name"] == "api" for port in container.get("ports", []))
    }
    assert with_api == {"leadflow-enrich", "leadflow-score", "leadflow-router"}
    assert _api_peers_violations(resources) == []
    # The check catches a policy that opens an API port to the monitoring namespace.
    opened = [dict(r) for r in resources]
    opened.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "too-open"},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "leadflow"}},
                "ingress": [
                    {
                        "from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
                        "ports": [{"protocol": "TCP", "port": 8092}],
                    }
                ],
            },
        }
    )
    assert len(_api_peers_violations(opened)) == 1


def keeping_violations(resources: list[Resource]) -> list[str]:
    """Topics that may keep a message (an erased lead's, for a compacted one) longer than the
    services assume (`shared.privacy.TOPICS_KEEP_AT_MOST_DAYS`).

    - A topic that deletes: its retention plus its last open segment (`retention.ms` +
      `segment.ms`).
    - A compacted topic keeps a live lead's current record as long as it is current: allowed
      only where the registry declares the topic compacted (`Topic.compacted`), and only if an
      erased lead's record goes in time: its tombstone compacted in within
      `max.compaction.lag.ms` (set: Kafka's default is never), the tombstone gone
      `delete.retention.ms` later (`compacted_keeping_ms`)."""
    (kafka,) = of_kind(resources, "Kafka")
    kafka_config = kafka["spec"]["kafka"].get("config", {})
    compacted = {t.full_name() for t in ALL_TOPICS if t.compacted}
    limit = TOPICS_KEEP_AT_MOST_DAYS * DAY_MS
    found = []
    for topic in of_kind(resources, "KafkaTopic"):
        name = topic["spec"].get("topicName", topic["metadata"]["name"])
        config = topic["spec"].get("config", {})
        policies = set(_cleanup_policy(config, kafka_config).split(","))
        if "compact" in policies:
            if name not in compacted:
                found.append(f"{name}: compacted, but shared/topics.py does not declare it so")
                continue
            kept = compacted_keeping_ms(config, kafka_config)
            what = "max.compaction.lag.ms + delete.retention.ms"
        else:
            kept = sum(_setting_ms(config, kafka_config, s) for s in ("retention.ms", "segment.ms"))
            what = "retention.ms + segment.ms"
        if kept > limit:
            found.append(f"{name}: {what} {kept:g} > {TOPICS_KEEP_AT_MOST_DAYS} days")
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_topic_keeps_a_message_longer_than_the_services_assume(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    """The erased leads' records and score's history must outlive any message that can still
    arrive (`shared.privacy.TOPICS_KEEP_AT_MOST_DAYS`: a topic's retention plus its last open
    segment; for the compacted state topic, how long an erased lead's record stays after its
    tombstone). A topic kept longer would let a replay re-create an erased lead."""
    assert keeping_violations(rendered[overlay]) == []


def test_the_keeping_check_reports_a_topic_kept_too_long(
    rendered: dict[str, list[Resource]],
) -> None:
    """The check above fails where a topic deletes too late, where a topic the registry does
    not declare compacted compacts, and where the compacted topic's erased records may stay too
    long (no compaction lag bound: Kafka's default is never)."""

    def changed(name: str, **config: Any) -> list[Resource]:
        resources = copy.deepcopy(rendered["prod"])
        for resource in of_kind(resources, "KafkaTopic"):
            if resource["spec"]["topicName"] == name:
                for key, value in config.items():
                    if value is None:
                        resource["spec"]["config"].pop(key, None)
                    else:
                        resource["spec"]["config"][key] = value
        return resources

    cases = [
        (changed("leads.scored", **{"retention.ms": 31 * DAY_MS}), "leads.scored: retention.ms"),
        (changed("events.raw", **{"segment.ms": None}), None),  # 7 + 7 days: fine
        (changed("events.raw", **{"retention.ms": -1}), "events.raw: retention.ms"),
        (changed("leads.scored", **{"cleanup.policy": "compact"}), "does not declare it so"),
        (changed("routing.current", **{"max.compaction.lag.ms": None}), "routing.current: max"),
        (
            # 31 days, and the tombstone's day.
            changed("routing.current", **{"max.compaction.lag.ms": 31 * DAY_MS}),
            "routing.current: max",
        ),
        (
            changed("routing.current", **{"delete.retention.ms": 30 * DAY_MS}),
            "routing.current: max",
        ),
    ]
    for resources, expected in cases:
        violations = " | ".join(keeping_violations(resources))
        if expected is None:
            assert violations == ""
        else:
            assert expected in violations
