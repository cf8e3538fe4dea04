"""Which metrics exist, and which metrics a PromQL expression names.

- `exported_metric_names()`: every series name leadflow's own code exports, read from the
  prometheus_client objects its modules define (shared/, services/), with the suffixes
  prometheus_client adds by type (`_total` and `_created` for a counter, `_bucket`, `_count`,
  `_sum` for a histogram...). Parsed, not imported: a metric added anywhere is known at once.
- `EXTERNAL_METRICS`: the other exporters' series that the rules and the dashboard may name,
  each with where it comes from. A name outside both is a typo or an exporter nobody installs.
- `metric_names(expression)`: the metric names a PromQL expression (or a Grafana query, with its
  `$variables`) selects; an unknown function is an error, so a misspelt one fails too.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from tests.deploy.manifests import REPO

# prometheus_client's metric types and the series names each exposes for a metric `name`.
_EXPOSED_SUFFIXES = {
    "Counter": ("_total", "_created"),  # a `_total` in the name given is dropped first
    "Gauge": ("",),
    "Histogram": ("_bucket", "_count", "_sum", "_created"),
    "Summary": ("", "_count", "_sum", "_created"),
    "Info": ("_info",),
    "Enum": ("",),
}

# Series of the exporters the monitoring component scrapes, or that a Prometheus scraping a
# Kubernetes cluster has anyway, that leadflow's rules and dashboard use. Add a name here only
# with its source.
EXTERNAL_METRICS = {
    # CloudNativePG's instance manager (port `metrics`): the default monitoring queries
    # (cloudnative-pg config/manager/default-monitoring.yaml: pg_replication, pg_stat_archiver)
    # and its collector (pkg/management/postgres/webserver/metricserver/pg_collector.go).
    "cnpg_pg_replication_lag": "CloudNativePG default-monitoring.yaml, pg_replication",
    "cnpg_pg_stat_archiver_failed_count": "CloudNativePG default-monitoring.yaml, pg_stat_archiver",
    "cnpg_pg_stat_archiver_last_failed_time": "CloudNativePG default-monitoring.yaml",
    "cnpg_pg_stat_archiver_last_archived_time": "CloudNativePG default-monitoring.yaml",
    "cnpg_collector_last_available_backup_timestamp": "CloudNativePG pg_collector.go",
    # The Barman Cloud plugin's metrics, through the same endpoint (plugin-barman-cloud
    # internal/cnpgi/instance/metrics.go: the plugin's name, dots and dashes as underscores).
    "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp": "plugin-barman-cloud",
    # Strimzi's brokers with the JMX exporter rules of Strimzi's example
    # (packaging/examples/metrics/kafka-metrics.yaml: kafka.server<type=ReplicaManager,
    # name=...><>Value -> kafka_server_replicamanager_...).
    "kafka_server_replicamanager_underreplicatedpartitions": "Strimzi kafka-metrics.yaml",
    "kafka_server_replicamanager_underminisrpartitioncount": "Strimzi kafka-metrics.yaml",
    # Kafka Exporter (Strimzi's spec.kafkaExporter; danielqsj/kafka_exporter).
    "kafka_consumergroup_lag": "Kafka Exporter",
    # The kubelet's volume statistics (scraped by every Kubernetes Prometheus setup).
    "kubelet_volume_stats_available_bytes": "kubelet",
    "kubelet_volume_stats_capacity_bytes": "kubelet",
    # cAdvisor, in the kubelet (/metrics/cadvisor).
    "container_cpu_usage_seconds_total": "cAdvisor",
    "container_memory_working_set_bytes": "cAdvisor",
}

# PromQL's functions and aggregation operators (prometheus/promql/parser/functions.go and
# lex.go), and Grafana's `label_values` of template variable queries.
PROMQL_FUNCTIONS = frozenset(
    {
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "double_exponential_smoothing",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "mad_over_time",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "pi",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_by_label",
        "sort_by_label_desc",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "vector",
        "year",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "label_values",
    }
)
PROMQL_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
    }
)

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_VALUES = re.compile(r"\blabel_values\(\s*([^,()]+?)\s*,\s*\w+\s*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_NUMBERS = re.compile(r"(?<![\w:.])(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects. Raises ValueError on a function PromQL (or
    Grafana's `label_values`) does not have."""
    text = _LABEL_VALUES.sub(r"\1", expression)
    text = _STRINGS.sub('""', text)
    text = _VARIABLES.sub("", text)
    text = _RANGES.sub("", text)  # ranges and subqueries: [5m], [1h:1m], [$__rate_interval]
    text = _MATCHERS.sub("", text)
    text = _GROUPING.sub("", text)
    text = _OFFSET.sub("", text)
    text = _NUMBERS.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if word.lower() in PROMQL_KEYWORDS:
            continue
        if text[match.end() :].lstrip().startswith("("):
            if word not in PROMQL_FUNCTIONS:
                raise ValueError(f"no PromQL function {word!r} in {expression!r}")
            continue
        names.add(word)
    return names


def _prometheus_client_names(module: ast.Module) -> dict[str, str]:
    """Local name -> metric type, for what the module imports from prometheus_client."""
    found = {}
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client":
            for alias in node.names:
                if alias.name in _EXPOSED_SUFFIXES:
                    found[alias.asname or alias.name] = alias.name
    return found


def _metric_type(call: ast.Call, imported: dict[str, str]) -> str | None:
    function = call.func
    if isinstance(function, ast.Name) and function.id in imported:
        return imported[function.id]
    if (
        isinstance(function, ast.Attribute)
        and isinstance(function.value, ast.Name)
        and function.value.id == "prometheus_client"
        and function.attr in _EXPOSED_SUFFIXES
    ):
        return function.attr
    return None


def metrics_defined(path: Path) -> dict[str, str]:
    """Metric name -> type, for each prometheus_client metric a module defines."""
    module = ast.parse(path.read_text(), filename=str(path))
    imported = _prometheus_client_names(module)
    defined = {}
    for node in ast.walk(module):
        if not isinstance(node, ast.Call):
            continue
        kind = _metric_type(node, imported)
        if kind is None:
            continue
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        if {"namespace", "subsystem", "unit"} & set(keywords):
            raise ValueError(
                f"{path}: namespace/subsystem/unit are not read here: {ast.unparse(node)}"
            )
        name = node.args[0] if node.args else keywords.get("name")
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            raise ValueError(f"{path}: a metric whose name is not a literal: {ast.unparse(node)}")
        defined[name.value] = kind
    return defined


@cache
def exported_metric_names() -> frozenset[str]:
    """Every series name the services' code exports (shared/ and services/)."""
    names: set[str] = set()
    for folder in ("shared", "services"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for name, kind in metrics_defined(path).items():
                base = name.removesuffix("_total") if kind == "Counter" else name
                names |= {base + suffix for suffix in _EXPOSED_SUFFIXES[kind]}
    return frozenset(names)


def unknown_metrics(expression: str) -> list[str]:
    """What is wrong with the metric names of an expression, one line each."""
    try:
        names = metric_names(expression)
    except ValueError as exc:
        return [str(exc)]
    found = []
    for name in sorted(names):
        if name.startswith("leadflow_"):
            if name not in exported_metric_names():
                found.append(f"{name}: no metric of leadflow's code exports it")
        elif name not in EXTERNAL_METRICS:
            found.append(f"{name}: not a leadflow metric nor a known exporter's (EXTERNAL_METRICS)")
    if not names:
        found.append(f"{expression!r} names no metric")
    return found
