"""Kafka exports what the monitoring component reads, in the prod overlay: the Kafka's
`spec.kafka.metricsConfig` names a ConfigMap of the render and its key, whose JMX exporter
rules turn the brokers' MBeans into the `kafka_server_*` names the alerts and the dashboard
select; `spec.kafkaExporter` reports the lag of leadflow's consumer groups; and no leadflow
NetworkPolicy stands between Prometheus and the metrics port. Each check is shown to fail on a
broken copy."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from shared.consumer.runner import consumer_group
from shared.settings import KafkaSettings
from tests.deploy.manifests import Resource, of_kind
from tests.deploy.network import Pod, allows
from tests.deploy.observability import metric_names
from tests.deploy.settings_names import SERVICES
from tests.deploy.test_monitoring import (
    STRIMZI_METRICS_PORT,
    dashboard_expressions,
    dashboards,
)
from tests.deploy.test_monitoring import rules as alert_rules

# The MBean attribute behind each broker metric the rules and the dashboard may select, as the
# JMX exporter writes it before matching its rules: `domain<key=value, ...><>attribute: value`
# (Kafka registers kafka.server:type=ReplicaManager,name=UnderReplicatedPartitions...). A new
# `kafka_server_*` name in an expression needs its MBean here.
BROKER_MBEANS = {
    "kafka_server_replicamanager_underreplicatedpartitions": (
        "kafka.server<type=ReplicaManager, name=UnderReplicatedPartitions><>Value: 0"
    ),
    "kafka_server_replicamanager_underminisrpartitioncount": (
        "kafka.server<type=ReplicaManager, name=UnderMinIsrPartitionCount><>Value: 0"
    ),
}
# Broker basics the rules must keep too, as Strimzi's Grafana dashboards read them
# (packaging/examples/metrics/grafana-dashboards/strimzi-kafka.json and strimzi-kraft.json):
# bytes and messages in, request handlers' idle time, partitions, the controller, KRaft's state.
BROKER_BASICS = {
    "kafka.server<type=BrokerTopicMetrics, name=BytesInPerSec><>Count: 10": (
        "kafka_server_brokertopicmetrics_bytesin_total"
    ),
    "kafka.server<type=BrokerTopicMetrics, name=MessagesInPerSec, topic=leads.scored><>Count: 3": (
        "kafka_server_brokertopicmetrics_messagesin_total"
    ),
    "kafka.server<type=ReplicaManager, name=PartitionCount><>Value: 36": (
        "kafka_server_replicamanager_partitioncount"
    ),
    "kafka.server<type=KafkaRequestHandlerPool, name=RequestHandlerAvgIdlePercent><>MeanRate: 0.9": (
        "kafka_server_kafkarequesthandlerpool_requesthandleravgidle_percent"
    ),
    "kafka.controller<type=KafkaController, name=ActiveControllerCount><>Value: 1": (
        "kafka_controller_kafkacontroller_activecontrollercount"
    ),
    "kafka.server<type=raft-metrics><>current-state: leader": (
        "kafka_server_raftmetrics_current_state"
    ),
}
METRICS_PORT = 9404  # Strimzi's MetricsModel.METRICS_PORT, named tcp-prometheus
# Strimzi copies a custom resource's labels to the pods it makes, except these
# (Labels.STRIMZI_LABELS_EXCLUSION_PATTERN's default), then sets its own over them (a
# part-of label of the Kafka's gives way to strimzi-<cluster>).
STRIMZI_LABELS_EXCLUSION = re.compile(
    r"(^app.kubernetes.io/(?!part-of).*|^kustomize.toolkit.fluxcd.io.*)"
)


def jmx_exporter_name(config: dict[str, Any], mbean: str) -> str | None:
    """The metric name Prometheus's JMX exporter gives `mbean` with this configuration: the
    first rule whose pattern matches (anchored as the exporter does, `^.*(?:pattern).*$`), its
    `name` with $1, $2... filled in, lowercased with lowercaseOutputName, characters outside
    [a-zA-Z0-9:_] and repeated underscores folded into one underscore. None when no rule
    matches (the exporter then drops the MBean)."""
    for rule in config.get("rules", []):
        match = re.match(rf"^.*(?:{rule.get('pattern', '')}).*$", mbean)
        if match is None:
            continue
        if "name" not in rule:
            return None
        name = match.expand(re.sub(r"\$(\d+)", r"\\g<\1>", rule["name"]))
        if config.get("lowercaseOutputName"):
            name = name.lower()
        return re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9:_]", "_", name))
    return None


def the_kafka(resources: list[Resource]) -> Resource:
    (kafka,) = of_kind(resources, "Kafka")
    return kafka


def jmx_exporter_config(resources: list[Resource]) -> dict[str, Any]:
    """The JMX exporter configuration the Kafka's metricsConfig names, from the render."""
    kafka = the_kafka(resources)
    metrics = kafka["spec"]["kafka"]["metricsConfig"]
    assert metrics["type"] == "jmxPrometheusExporter"
    reference = metrics["valueFrom"]["configMapKeyRef"]
    config_maps = [
        c
        for c in of_kind(resources, "ConfigMap")
        if c["metadata"]["name"] == reference["name"]
        and c["metadata"].get("namespace") == kafka["metadata"].get("namespace")
    ]
    assert config_maps, f"no ConfigMap {reference['name']} beside the Kafka"
    (config_map,) = config_maps
    assert reference["key"] in config_map.get("data", {}), f"no key {reference['key']}"
    config: dict[str, Any] = yaml.safe_load(config_map["data"][reference["key"]])
    return config


def broker_metrics_selected(resources: list[Resource]) -> set[str]:
    """The brokers' metric names the rules and the dashboard select."""
    expressions = [str(rule["expr"]) for rule in alert_rules(resources)]
    for dashboard in dashboards(resources).values():
        expressions += [expression for _, expression in dashboard_expressions(dashboard)]
    return {
        name
        for expression in expressions
        for name in metric_names(expression)
        if name.startswith(("kafka_server_", "kafka_network_", "kafka_controller_"))
    }


def jmx_violations(resources: list[Resource]) -> list[str]:
    config = jmx_exporter_config(resources)
    found = []
    for name in sorted(broker_metrics_selected(resources)):
        if name not in BROKER_MBEANS:
            found.append(f"{name}: which MBean? (BROKER_MBEANS)")
            continue
        made = jmx_exporter_name(config, BROKER_MBEANS[name])
        if made != name:
            found.append(f"{name}: the rules make {made} of {BROKER_MBEANS[name]}")
    for mbean, name in BROKER_BASICS.items():
        made = jmx_exporter_name(config, mbean)
        if made != name:
            found.append(f"{name}: the rules make {made} of {mbean}")
    return found


def test_the_brokers_export_the_metrics_the_alerts_select(
    rendered: dict[str, list[Resource]],
) -> None:
    prod = rendered["prod"]
    assert broker_metrics_selected(prod) >= set(BROKER_MBEANS)
    assert jmx_violations(prod) == []
    # The ConfigMap is a plain resource: its name is the one the Kafka names, no hash suffix.
    assert the_kafka(prod)["spec"]["kafka"]["metricsConfig"]["valueFrom"]["configMapKeyRef"] == {
        "name": "leadflow-kafka-metrics",
        "key": "kafka-metrics-config.yml",
    }


def test_the_jmx_exporter_emulation_follows_rule_order() -> None:
    config = {
        "lowercaseOutputName": True,
        "rules": [
            {
                "pattern": r"kafka.(\w+)<type=(.+), name=(.+)PerSec\w*><>Count",
                "name": "kafka_$1_$2_$3_total",
            },
            {
                "pattern": r"kafka.(\w+)<type=(.+), name=(.+)><>Count",
                "name": "kafka_$1_$2_$3_count",
            },
            {"pattern": r"kafka.(\w+)<type=(.+), name=(.+)><>Value", "name": "kafka_$1_$2_$3"},
        ],
    }
    assert jmx_exporter_name(config, "kafka.server<type=A, name=BytesInPerSec><>Count: 1") == (
        "kafka_server_a_bytesin_total"
    )
    assert jmx_exporter_name(config, "kafka.server<type=A, name=Requests><>Count: 1") == (
        "kafka_server_a_requests_count"
    )
    assert jmx_exporter_name(config, "kafka.server<type=A, name=B><>Mean: 1") is None
    assert (
        jmx_exporter_name(
            {**config, "lowercaseOutputName": False},
            BROKER_MBEANS["kafka_server_replicamanager_underminisrpartitioncount"],
        )
        == "kafka_server_ReplicaManager_UnderMinIsrPartitionCount"
    )


def _with_rules(resources: list[Resource], change: Any) -> list[Resource]:
    broken = copy.deepcopy(resources)
    reference = the_kafka(broken)["spec"]["kafka"]["metricsConfig"]["valueFrom"]["configMapKeyRef"]
    (config_map,) = [
        c for c in of_kind(broken, "ConfigMap") if c["metadata"]["name"] == reference["name"]
    ]
    config = yaml.safe_load(config_map["data"][reference["key"]])
    change(config)
    config_map["data"][reference["key"]] = yaml.safe_dump(config)
    return broken


def test_broken_jmx_rules_fail_the_check(rendered: dict[str, list[Resource]]) -> None:
    prod = rendered["prod"]

    def without_generic_gauges(config: dict[str, Any]) -> None:
        config["rules"] = [r for r in config["rules"] if r.get("name") != "kafka_$1_$2_$3"]

    def not_lowercased(config: dict[str, Any]) -> None:
        del config["lowercaseOutputName"]

    assert (
        "kafka_server_replicamanager_underreplicatedpartitions: the rules make None"
        in " | ".join(jmx_violations(_with_rules(prod, without_generic_gauges)))
    )
    assert (
        "kafka_server_replicamanager_underminisrpartitioncount: the rules make "
        "kafka_server_ReplicaManager_UnderMinIsrPartitionCount"
        in " | ".join(jmx_violations(_with_rules(prod, not_lowercased)))
    )

    # The Kafka naming a ConfigMap or a key the render does not have.
    for field, value, message in (
        ("name", "kafka-metrics", "no ConfigMap kafka-metrics"),
        ("key", "metrics.yml", "no key metrics.yml"),
    ):
        broken = copy.deepcopy(prod)
        the_kafka(broken)["spec"]["kafka"]["metricsConfig"]["valueFrom"]["configMapKeyRef"][
            field
        ] = value
        with pytest.raises(AssertionError, match=message):
            jmx_violations(broken)


# -- Kafka Exporter -----------------------------------------------------------------------------


def exporter_violations(resources: list[Resource]) -> list[str]:
    """Kafka Exporter runs, with requests and limits, reports every consuming service's group
    (it searches with groupRegex, unanchored, as Go's MatchString does) and every topic, and
    groups without a connected consumer too."""
    exporter = the_kafka(resources)["spec"].get("kafkaExporter")
    if exporter is None:
        return ["no spec.kafkaExporter: nothing reports kafka_consumergroup_lag"]
    found = []
    group_regex = exporter.get("groupRegex", ".*")
    settings = KafkaSettings(topic_prefix="")
    for service in SERVICES:
        if service == "ingest":  # produces only
            continue
        group = consumer_group(settings, service)
        if not re.search(group_regex, group):
            found.append(f"groupRegex {group_regex!r} leaves out {group}")
    topic_regex = exporter.get("topicRegex", ".*")
    for topic in of_kind(resources, "KafkaTopic"):
        name = topic["spec"].get("topicName", topic["metadata"]["name"])
        if not re.search(topic_regex, name):
            found.append(f"topicRegex {topic_regex!r} leaves out {name}")
    if exporter.get("showAllOffsets") is False:
        found.append("showAllOffsets false: a group whose consumers are all down shows no lag")
    resources_ = exporter.get("resources", {})
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources_.get(kind, {})):
            found.append(f"no cpu and memory {kind}")
    return found


def test_kafka_exporter_reports_leadflows_consumer_groups(
    rendered: dict[str, list[Resource]],
) -> None:
    prod = rendered["prod"]
    assert exporter_violations(prod) == []
    exporter = the_kafka(prod)["spec"]["kafkaExporter"]
    assert re.search(exporter["groupRegex"], "leadflow-enrich")

    def broken(change: Any) -> list[str]:
        resources = copy.deepcopy(prod)
        change(the_kafka(resources)["spec"])
        return exporter_violations(resources)

    assert broken(lambda spec: spec.pop("kafkaExporter")) == [
        "no spec.kafkaExporter: nothing reports kafka_consumergroup_lag"
    ]
    assert "groupRegex '^crm-.+$' leaves out leadflow-enrich" in broken(
        lambda spec: spec["kafkaExporter"].update(groupRegex="^crm-.+$")
    )
    assert "topicRegex '^crm-' leaves out leads.scored" in broken(
        lambda spec: spec["kafkaExporter"].update(topicRegex="^crm-")
    )
    assert "no cpu and memory limits" in broken(
        lambda spec: spec["kafkaExporter"]["resources"].pop("limits")
    )


# -- reaching the metrics port --------------------------------------------------------------------


def strimzi_pod(resources: list[Resource], component: str, *owners: Resource) -> Pod:
    """A pod Strimzi makes for the Kafka (component `kafka` or `kafka-exporter`): its labels
    (Labels.generateDefaultLabels, with the owners' labels but the excluded ones) and its
    metrics port."""
    kafka = the_kafka(resources)
    name = kafka["metadata"]["name"]
    labels = {
        key: value
        for owner in owners
        for key, value in owner["metadata"].get("labels", {}).items()
        if not STRIMZI_LABELS_EXCLUSION.fullmatch(key)
    }
    labels |= {
        "strimzi.io/kind": "Kafka",
        "strimzi.io/name": f"{name}-{component}",
        "strimzi.io/cluster": name,
        "strimzi.io/component-type": component,
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/part-of": f"strimzi-{name}",
        "app.kubernetes.io/managed-by": "strimzi-cluster-operator",
    }
    return Pod(
        namespace=kafka["metadata"]["namespace"],
        labels=labels,
        ports={STRIMZI_METRICS_PORT: METRICS_PORT},
    )


PROMETHEUS = Pod(namespace="monitoring", labels={"app.kubernetes.io/name": "prometheus"})


def scrape_blocked(resources: list[Resource]) -> list[str]:
    """The brokers and Kafka Exporter, as far as leadflow's NetworkPolicies decide (Strimzi's
    own open 9404 to every pod), take Prometheus's connections on their metrics port."""
    kafka = the_kafka(resources)
    pods = {
        f"{pool['metadata']['name']} broker": strimzi_pod(resources, "kafka", kafka, pool)
        for pool in of_kind(resources, "KafkaNodePool")
    }
    pods["Kafka Exporter"] = strimzi_pod(resources, "kafka-exporter", kafka)
    return [
        f"Prometheus cannot reach the {where}'s metrics port"
        for where, pod in pods.items()
        if not allows(resources, PROMETHEUS, pod, METRICS_PORT)
    ]


def test_prometheus_reaches_the_kafka_metrics_port(rendered: dict[str, list[Resource]]) -> None:
    prod = rendered["prod"]
    assert of_kind(prod, "NetworkPolicy")
    assert scrape_blocked(prod) == []
    # A default deny for every pod of the namespace (podSelector {}) would take the brokers and
    # the exporter too: the scrape then needs a policy letting `monitoring` in on 9404.
    broken = copy.deepcopy(prod)
    for policy in of_kind(broken, "NetworkPolicy"):
        if policy["metadata"]["name"] == "leadflow-default-deny":
            policy["spec"]["podSelector"] = {}
    assert scrape_blocked(broken) == [
        *(
            f"Prometheus cannot reach the {pool['metadata']['name']} broker's metrics port"
            for pool in of_kind(prod, "KafkaNodePool")
        ),
        "Prometheus cannot reach the Kafka Exporter's metrics port",
    ]
