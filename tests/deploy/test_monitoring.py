"""Monitoring in the prod overlay (components/monitoring): the PodMonitors scrape every
service's /metrics where it serves them, PostgreSQL's instances and Kafka's brokers and exporter
by the labels their operators give them; every alert has a severity, a summary, a description
and a runbook; the alerts watch what must be watched; and every PromQL expression of the rules
and of the Grafana dashboard names only metrics that exist: leadflow's from its code, the
others from the exporters' known names (tests/deploy/observability.py). Each check is shown to
fail on a broken copy."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from shared.consumer.runner import consumer_group
from shared.settings import KafkaSettings
from tests.deploy.manifests import DEPLOY, Resource, describe, of_kind, rule_groups
from tests.deploy.observability import exported_metric_names, metric_names, unknown_metrics
from tests.deploy.policies import containers, selects
from tests.deploy.settings_names import SERVICES

COMPONENT = DEPLOY / "components" / "monitoring"
DASHBOARD_FILE = COMPONENT / "leadflow-dashboard.json"

# What Strimzi puts on the pods it makes for a Kafka resource named K (Strimzi's Labels and
# KafkaResources): strimzi.io/cluster K, strimzi.io/kind Kafka, strimzi.io/name K-kafka for the
# node pools' brokers and K-kafka-exporter for Kafka Exporter; both serve metrics on the port
# `tcp-prometheus` (MetricsModel.METRICS_PORT_NAME).
STRIMZI_METRICS_PORT = "tcp-prometheus"
# CloudNativePG's instance pods: cnpg.io/cluster <name>, cnpg.io/podRole instance, metrics on
# the port `metrics` (9187).
CNPG_METRICS_PORT = "metrics"


def rules(resources: list[Resource]) -> list[dict[str, Any]]:
    return [rule for group in rule_groups(resources) for rule in group["rules"]]


def dashboards(resources: list[Resource]) -> dict[str, dict[str, Any]]:
    """Each Grafana dashboard of a ConfigMap labelled for Grafana's sidecar, by key."""
    return {
        key: json.loads(value)
        for config_map in of_kind(resources, "ConfigMap")
        if config_map["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        for key, value in config_map["data"].items()
    }


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expression) for every panel's query and every query variable."""
    found = []

    def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for item in items for p in [item, *panels(item.get("panels", []))]]

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            found.append((f"panel {panel.get('title')!r}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            found.append((f"variable {variable['name']}", query.get("query", query)))
    return found


def expression_violations(resources: list[Resource]) -> list[str]:
    found = []
    for rule in rules(resources):
        where = f"alert {rule.get('alert', rule.get('record'))}"
        found += [f"{where}: {problem}" for problem in unknown_metrics(str(rule["expr"]))]
    for key, dashboard in dashboards(resources).items():
        for where, expression in dashboard_expressions(dashboard):
            found += [f"{key} {where}: {problem}" for problem in unknown_metrics(expression)]
    return found


def test_prod_deploys_the_monitoring_component(rendered: dict[str, list[Resource]]) -> None:
    prod = rendered["prod"]
    assert {m["metadata"]["name"] for m in of_kind(prod, "PodMonitor")} == {
        "leadflow-services",
        "leadflow-db",
        "leadflow-kafka",
    }
    assert len(rules(prod)) >= 10
    # The dashboard is the committed file, valid JSON, in a ConfigMap Grafana's sidecar loads.
    assert dashboards(prod) == {"leadflow.json": json.loads(DASHBOARD_FILE.read_text())}
    assert not of_kind(rendered["dev"], "PrometheusRule")


def test_every_expression_names_only_exported_metrics(rendered: dict[str, list[Resource]]) -> None:
    prod = rendered["prod"]
    assert expression_violations(prod) == []
    # What the check covers: every rule and every panel's query.
    (dashboard,) = dashboards(prod).values()
    assert len(dashboard_expressions(dashboard)) >= 15


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("rate(leadflow_mesages_in_total[5m])", "leadflow_mesages_in_total: no metric"),
        # A counter's series carry `_total`; the bare name is no series.
        ("rate(leadflow_messages_in[5m])", "leadflow_messages_in: no metric"),
        ("histogram_quantile(0.99, rate(leadflow_speed_to_lead_seconds[5m]))", "no metric"),
        ("node_cpu_seconds_total", "not a leadflow metric nor a known exporter's"),
        ("rat(leadflow_messages_in_total[5m])", "no PromQL function 'rat'"),
        ("vector(1)", "names no metric"),
    ],
)
def test_the_metric_check_rejects_what_does_not_exist(expression: str, expected: str) -> None:
    assert expected in " | ".join(unknown_metrics(expression))


def test_the_metric_check_reads_promql_and_grafana_queries() -> None:
    assert metric_names(
        'sum by (service, topic) (rate(leadflow_messages_in_total{namespace="$namespace",'
        ' topic=~"events.raw|leads.scored"}[$__rate_interval])) / on (service) group_left'
        " max without (pod) (leadflow_consumer_lag offset 5m) > 1e3 and time() - 26 * 3600"
        " > bool 0.25 unless leadflow_dead_letters_total[1h:1m]"
    ) == {"leadflow_messages_in_total", "leadflow_consumer_lag", "leadflow_dead_letters_total"}
    assert metric_names("label_values(leadflow_messages_in_total, namespace)") == {
        "leadflow_messages_in_total"
    }
    assert {"leadflow_messages_in_total", "leadflow_speed_to_lead_seconds_bucket"} <= (
        exported_metric_names()
    )
    # The counter added for offsets Kafka had ahead of PostgreSQL (shared/telemetry.py).
    assert "leadflow_consumer_rewound_records_total" in exported_metric_names()


def test_a_broken_rule_or_panel_fails_the_check(rendered: dict[str, list[Resource]]) -> None:
    broken = copy.deepcopy(rendered["prod"])
    (rule_resource,) = of_kind(broken, "PrometheusRule")
    rule_resource["spec"]["groups"][0]["rules"][0]["expr"] = "sum(leadflow_lag_total) > 0"
    (config_map,) = [c for c in of_kind(broken, "ConfigMap") if "leadflow.json" in c["data"]]
    dashboard = json.loads(config_map["data"]["leadflow.json"])
    dashboard["panels"][1]["targets"][0]["expr"] = "rate(kafka_messages_total[5m])"
    config_map["data"]["leadflow.json"] = json.dumps(dashboard)
    violations = " | ".join(expression_violations(broken))
    assert "leadflow_lag_total: no metric of leadflow's code exports it" in violations
    assert "kafka_messages_total: not a leadflow metric" in violations


# -- the alerts ---------------------------------------------------------------------------------

# What must be watched, by the metric an alert on it reads.
WATCHED = {
    "consumer lag growing": "kafka_consumergroup_lag",
    "dead letters arriving": "leadflow_dead_letters_total",
    "SLA breaches spiking": "leadflow_router_sla_breaches_total",
    "speed-to-lead p99 over its goal": "leadflow_speed_to_lead_seconds_bucket",
    "records applied again after the database lost transactions": (
        "leadflow_consumer_rewound_records_total"
    ),
    "broker disk filling": "kubelet_volume_stats_available_bytes",
    "under-replicated partitions": "kafka_server_replicamanager_underreplicatedpartitions",
    "PostgreSQL replication lag": "cnpg_pg_replication_lag",
    "WAL archiving failing": "cnpg_pg_stat_archiver_last_failed_time",
    "last backup too old": "cnpg_collector_last_available_backup_timestamp",
}


def alert_violations(resources: list[Resource]) -> list[str]:
    """Every alert has a severity (critical or warning), a summary, a description and a runbook
    (what to check, what to do)."""
    found = []
    for rule in rules(resources):
        if "alert" not in rule:
            continue
        name = rule["alert"]
        if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
            found.append(f"{name}: no severity critical or warning")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            if not str(annotations.get(key, "")).strip():
                found.append(f"{name}: no {key}")
        if len(str(annotations.get("runbook", ""))) < 80:
            found.append(f"{name}: a runbook says what to check and what to do")
    return found


def test_every_alert_says_what_it_means_and_what_to_do(
    rendered: dict[str, list[Resource]],
) -> None:
    prod = rendered["prod"]
    assert alert_violations(prod) == []
    broken = copy.deepcopy(prod)
    (rule_resource,) = of_kind(broken, "PrometheusRule")
    rule = rule_resource["spec"]["groups"][0]["rules"][0]
    del rule["annotations"]["runbook"]
    rule["labels"]["severity"] = "page"
    assert alert_violations(broken) == [
        f"{rule['alert']}: no severity critical or warning",
        f"{rule['alert']}: no runbook",
        f"{rule['alert']}: a runbook says what to check and what to do",
    ]


@pytest.mark.parametrize("watched", sorted(WATCHED))
def test_an_alert_watches(rendered: dict[str, list[Resource]], watched: str) -> None:
    metric = WATCHED[watched]
    alerts = [r for r in rules(rendered["prod"]) if metric in metric_names(str(r["expr"]))]
    assert alerts, f"no alert on {watched} ({metric})"


def _selector_values(expressions: list[str], label: str) -> set[str]:
    return {
        value
        for expression in expressions
        for value in re.findall(rf'\b{label}\s*=~?\s*"([^"]*)"', expression)
    }


def test_the_names_in_the_alerts_are_the_manifests(rendered: dict[str, list[Resource]]) -> None:
    """The Cluster, the Kafka cluster, the consumer groups and the brokers' volumes the
    expressions select are the rendered ones (Prometheus anchors its regular expressions)."""
    prod = rendered["prod"]
    expressions = [str(r["expr"]) for r in rules(prod)]
    (cluster,) = of_kind(prod, "Cluster")
    (kafka,) = of_kind(prod, "Kafka")
    assert _selector_values(expressions, "cnpg_io_cluster") == {cluster["metadata"]["name"]}
    assert _selector_values(expressions, "strimzi_io_cluster") == {kafka["metadata"]["name"]}
    (groups,) = _selector_values(expressions, "consumergroup")
    kafka_settings = KafkaSettings(topic_prefix="")
    for service in SERVICES:
        if service != "ingest":
            assert re.fullmatch(groups, consumer_group(kafka_settings, service)), service
    assert not re.fullmatch(groups, "crm-hubspot")
    # Strimzi's PVC of a node pool's JBOD volume: data-<volume id>-<pod>, the pod
    # <cluster>-<pool>-<node id>.
    claims = [
        f"data-{volume['id']}-{kafka['metadata']['name']}-{pool['metadata']['name']}-{node}"
        for pool in of_kind(prod, "KafkaNodePool")
        for volume in pool["spec"]["storage"]["volumes"]
        for node in range(pool["spec"]["replicas"])
    ]
    assert claims
    for pattern in _selector_values(expressions, "persistentvolumeclaim"):
        for claim in claims:
            assert re.fullmatch(pattern, claim), (pattern, claim)
        assert not re.fullmatch(pattern, f"pgdata-{cluster['metadata']['name']}-1")


# -- what is scraped ----------------------------------------------------------------------------


def _monitors_of(resources: list[Resource], labels: dict[str, str]) -> list[Resource]:
    return [m for m in of_kind(resources, "PodMonitor") if selects(m["spec"]["selector"], labels)]


def scrape_violations(resources: list[Resource]) -> list[str]:
    """Each service's pods are selected by one PodMonitor whose endpoint names a port of the
    container and the path of the pod's prometheus.io annotations; the migration Job's are
    not selected (it serves nothing)."""
    found = []
    for workload in [*of_kind(resources, "Deployment"), *of_kind(resources, "Job")]:
        template = workload["spec"]["template"]
        monitors = _monitors_of(resources, template["metadata"]["labels"])
        if workload["kind"] == "Job":
            if monitors:
                found.append(f"{describe(workload)} is scraped by {describe(monitors[0])}")
            continue
        if len(monitors) != 1:
            found.append(f"{describe(workload)}: scraped by {len(monitors)} PodMonitors, not one")
            continue
        annotations = template["metadata"].get("annotations", {})
        ports = {
            port["name"]: port["containerPort"]
            for _, container in containers(workload)
            for port in container.get("ports", [])
        }
        for endpoint in monitors[0]["spec"]["podMetricsEndpoints"]:
            port = endpoint.get("port")
            if port not in ports:
                found.append(f"{describe(workload)}: no container port named {port}")
            elif str(ports[port]) != annotations.get("prometheus.io/port"):
                found.append(f"{describe(workload)}: {port} is not the annotated metrics port")
            if endpoint.get("path", "/metrics") != annotations.get("prometheus.io/path"):
                found.append(f"{describe(workload)}: scraped at {endpoint.get('path')}")
    return found


def test_every_service_is_scraped_where_it_serves_metrics(
    rendered: dict[str, list[Resource]],
) -> None:
    prod = rendered["prod"]
    assert scrape_violations(prod) == []

    def changed(change: Any) -> list[Resource]:
        resources = copy.deepcopy(prod)
        (monitor,) = [
            m
            for m in of_kind(resources, "PodMonitor")
            if m["metadata"]["name"] == "leadflow-services"
        ]
        change(monitor["spec"])
        return resources

    def wrong_port(spec: dict[str, Any]) -> None:
        spec["podMetricsEndpoints"][0]["port"] = "http"

    def narrow(spec: dict[str, Any]) -> None:
        spec["selector"]["matchExpressions"][0]["values"].remove("sync")

    def broad(spec: dict[str, Any]) -> None:
        spec["selector"].pop("matchExpressions")

    assert "Deployment/leadflow-enrich: no container port named http" in scrape_violations(
        changed(wrong_port)
    )
    assert "Deployment/leadflow-sync: scraped by 0 PodMonitors, not one" in scrape_violations(
        changed(narrow)
    )
    assert "Job/leadflow-migrate is scraped by PodMonitor/leadflow-services" in scrape_violations(
        changed(broad)
    )


def test_postgresql_and_kafka_are_scraped_by_their_operators_labels(
    rendered: dict[str, list[Resource]],
) -> None:
    prod = rendered["prod"]
    (cluster,) = of_kind(prod, "Cluster")
    (kafka,) = of_kind(prod, "Kafka")
    name = kafka["metadata"]["name"]
    instance = {"cnpg.io/cluster": cluster["metadata"]["name"], "cnpg.io/podRole": "instance"}
    broker = {
        "strimzi.io/cluster": name,
        "strimzi.io/kind": "Kafka",
        "strimzi.io/name": f"{name}-kafka",
    }
    exporter = {**broker, "strimzi.io/name": f"{name}-kafka-exporter"}
    entity_operator = {**broker, "strimzi.io/name": f"{name}-entity-operator"}
    for labels, port in (
        (instance, CNPG_METRICS_PORT),
        (broker, STRIMZI_METRICS_PORT),
        (exporter, STRIMZI_METRICS_PORT),
    ):
        (monitor,) = _monitors_of(prod, labels)
        assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == [port]
    assert _monitors_of(prod, entity_operator) == []
    # The rules select by the labels the PodMonitors copy from the pods.
    copied = {
        label for m in of_kind(prod, "PodMonitor") for label in m["spec"].get("podTargetLabels", [])
    }
    assert {"cnpg.io/cluster", "strimzi.io/cluster"} <= copied


def test_the_dashboard_shows_the_pipeline(rendered: dict[str, list[Resource]]) -> None:
    """Throughput per stage, lag, speed-to-lead p50/p95/p99, dead letters, retried batches, each
    service's CPU and memory; every panel on the dashboard's data source variable."""
    (dashboard,) = dashboards(rendered["prod"]).values()
    expressions = [expression for _, expression in dashboard_expressions(dashboard)]
    named = set().union(*(metric_names(e) for e in expressions))
    assert {
        "leadflow_messages_in_total",
        "leadflow_messages_out_total",
        "leadflow_consumer_lag",
        "leadflow_speed_to_lead_seconds_bucket",
        "leadflow_dead_letters_total",
        "leadflow_transient_retries_total",
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
    } <= named
    quantiles = {
        match
        for e in expressions
        if "leadflow_speed_to_lead_seconds_bucket" in e
        for match in re.findall(r"histogram_quantile\(\s*([0-9.]+)", e)
    }
    assert quantiles == {"0.5", "0.95", "0.99"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])
