"""Data safety in the rendered overlays ("Production-ready on Kubernetes"): PostgreSQL's WAL archive
and daily backups through CloudNativePG's Barman Cloud plugin, synchronous replication, one
instance per node, a pinned PostgreSQL image; every Kafka topic bounded in time and in size,
compressed, on broker volumes that hold every bound with headroom (tests/deploy/sizing.py), a
pinned Kafka on Strimzi's v1 API spread over zones; no overlay owning its Namespace, and the
resources that hold data protected from GitOps pruning.

Each check returns its violations; the tests run it on the rendered overlays (nothing found) and
on altered copies (the expected violation found), so each can fail.
"""

from __future__ import annotations

import copy
import datetime
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiokafka.codec
import pytest
import yaml

from tests.deploy import sizing
from tests.deploy.manifests import (
    DEPLOY,
    OVERLAYS,
    CrdVersion,
    Resource,
    builtin_errors,
    custom_resource_errors,
    describe,
    of_kind,
    render,
    set_topic_config,
)
from tests.deploy.pins import image_violations

# The prod overlay with the restore's patch (deploy/README.md, "Backup and restore").
RESTORE = Path(__file__).parent / "fixtures" / "restore"
PLUGIN = "barman-cloud.cloudnative-pg.io"
ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"
# Kafka's default segment.bytes (log.segment.bytes), for a topic that does not set its own.
DEFAULT_SEGMENT_BYTES = 1 << 30
# Argo CD's and Flux's opt-outs of pruning (and, for Argo CD, of deletion with the Application).
ARGO_SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
FLUX_PRUNE = "kustomize.toolkit.fluxcd.io/prune"
# What holds data: deleting one deletes data (topics, volumes) or stops the WAL archive.
DATA_KINDS = ("Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "ObjectStore")
STRIMZI_V1 = "kafka.strimzi.io/v1"
QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|Pi)?$")
UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50}


def the_one(resources: list[Resource], kind: str) -> Resource:
    (found,) = of_kind(resources, kind)
    return found


def quantity_bytes(value: str) -> int:
    match = QUANTITY.match(str(value))
    assert match, f"{value}: not a quantity in bytes or binary units"
    return int(match.group(1)) * UNITS[match.group(2)]


# -- PostgreSQL ---------------------------------------------------------------------------------


def backup_violations(resources: list[Resource]) -> list[str]:
    """The Cluster archives its WAL through the Barman Cloud plugin into an ObjectStore of the
    same render (credentials from a Secret, a retention policy, compressed WAL), not through the
    deprecated built-in `backup.barmanObjectStore`, and a ScheduledBackup backs it up daily
    through the plugin."""
    found: list[str] = []
    cluster = the_one(resources, "Cluster")
    name = cluster["metadata"]["name"]
    if "barmanObjectStore" in cluster["spec"].get("backup", {}):
        found.append(f"Cluster/{name}: the deprecated backup.barmanObjectStore")
    archivers = [p for p in cluster["spec"].get("plugins", []) if p.get("isWALArchiver")]
    plugin = next((p for p in archivers if p.get("name") == PLUGIN), None)
    if plugin is None or len(archivers) != 1 or plugin.get("enabled", True) is False:
        found.append(f"Cluster/{name}: no {PLUGIN} plugin as its (only) WAL archiver")
        return found
    stores = {s["metadata"]["name"]: s for s in of_kind(resources, "ObjectStore")}
    store_name = plugin.get("parameters", {}).get("barmanObjectName")
    store = stores.get(store_name)
    if store is None:
        found.append(f"Cluster/{name}: its barmanObjectName {store_name!r} is no ObjectStore here")
    else:
        configuration = store["spec"]["configuration"]
        credentials = configuration.get("s3Credentials", {})
        for key in ("accessKeyId", "secretAccessKey"):
            reference = credentials.get(key, {})
            if not (reference.get("name") and reference.get("key")):
                found.append(f"ObjectStore/{store_name}: {key} is not a Secret's key")
        if not configuration.get("destinationPath", "").startswith("s3://"):
            found.append(f"ObjectStore/{store_name}: no s3:// destinationPath")
        if not store["spec"].get("retentionPolicy"):
            found.append(f"ObjectStore/{store_name}: no retentionPolicy (backups kept forever)")
        if not configuration.get("wal", {}).get("compression"):
            found.append(f"ObjectStore/{store_name}: WAL archived uncompressed")
    daily = [
        backup
        for backup in of_kind(resources, "ScheduledBackup")
        if backup["spec"]["cluster"]["name"] == name
        and backup["spec"].get("method") == "plugin"
        and backup["spec"].get("pluginConfiguration", {}).get("name") == PLUGIN
    ]
    if not daily:
        found.append(f"Cluster/{name}: no ScheduledBackup through the {PLUGIN} plugin")
    for backup in daily:
        label = describe(backup)
        fields = str(backup["spec"]["schedule"]).split()
        # CloudNativePG's cron has six fields, seconds first: sec min hour day month weekday.
        if len(fields) != 6 or fields[3:] != ["*", "*", "*"] or not fields[2].isdigit():
            found.append(f"{label}: schedule {backup['spec']['schedule']!r} is not daily")
        if backup["spec"].get("immediate") is not True:
            found.append(f"{label}: no immediate first backup")
        if backup["spec"].get("backupOwnerReference") != "self":
            found.append(f"{label}: its Backups are not owned by it (backupOwnerReference)")
    return found


def replication_violations(resources: list[Resource]) -> list[str]:
    """Commits wait for one standby of at least two (quorum, ANY 1), with a stated durability."""
    cluster = the_one(resources, "Cluster")
    label = describe(cluster)
    synchronous = cluster["spec"].get("postgresql", {}).get("synchronous")
    if not synchronous:
        return [f"{label}: no synchronous replication"]
    found = []
    if synchronous.get("method") != "any" or synchronous.get("number") != 1:
        found.append(f"{label}: synchronous is not `any` 1: {synchronous}")
    if synchronous.get("dataDurability") not in ("required", "preferred"):
        found.append(f"{label}: no dataDurability chosen (required or preferred)")
    if cluster["spec"]["instances"] < 3:
        found.append(f"{label}: fewer than 3 instances for ANY 1 of the standbys")
    return found


def placement_violations(resources: list[Resource]) -> list[str]:
    """No two instances on one node (required anti-affinity), and spread over zones."""
    cluster = the_one(resources, "Cluster")
    label = describe(cluster)
    affinity = cluster["spec"].get("affinity", {})
    found = []
    if affinity.get("enablePodAntiAffinity") is False:
        found.append(f"{label}: pod anti-affinity disabled")
    if affinity.get("podAntiAffinityType") != "required":
        found.append(f"{label}: podAntiAffinityType is not required")
    if affinity.get("topologyKey", HOSTNAME) != HOSTNAME:
        found.append(f"{label}: anti-affinity over {affinity['topologyKey']}, not nodes")
    zones = [
        c
        for c in cluster["spec"].get("topologySpreadConstraints", [])
        if c.get("topologyKey") == ZONE
        and c.get("whenUnsatisfiable") == "DoNotSchedule"
        and c.get("labelSelector", {}).get("matchLabels", {}).get("cnpg.io/cluster")
        == cluster["metadata"]["name"]
    ]
    if not zones:
        found.append(f"{label}: instances not spread over zones")
    return found


def postgresql_image_violations(resources: list[Resource]) -> list[str]:
    """The PostgreSQL image names its minor version and is pinned by digest: no floating tag
    (`17`, `latest`) that moves the cluster to another build at the next restart."""
    cluster = the_one(resources, "Cluster")
    image = cluster["spec"].get("imageName", "")
    found = [f"{describe(cluster)}: {v}" for v in image_violations(image)] if image else []
    if not re.search(r"/postgresql:\d+\.\d+([-.@]|$)", image):
        found.append(f"{describe(cluster)}: image {image!r} names no PostgreSQL minor version")
    return found


def _server_name(plugin: dict[str, Any], default: str) -> str:
    """The folder of the object store a Barman Cloud plugin entry reads or writes."""
    return str(plugin.get("parameters", {}).get("serverName", default))


def restore_violations(restored: list[Resource], prod: list[Resource]) -> list[str]:
    """The restore's Cluster: bootstrapped from the prod Cluster's backups alone (recovery from
    an external cluster read through the plugin, in the ObjectStore and folder prod archives
    to), with the application database and owner initdb made (so the operator manages the
    owner's password), archiving to a folder of its own (the old one is not empty, and
    archiving into it would mix two histories)."""
    found: list[str] = []
    before, after = the_one(prod, "Cluster"), the_one(restored, "Cluster")
    name = before["metadata"]["name"]
    if after["metadata"]["name"] != name:
        found.append(
            f"restored as {after['metadata']['name']}: the services and the network"
            f" policies know {name}"
        )
    bootstrap = after["spec"].get("bootstrap", {})
    recovery = bootstrap.get("recovery", {})
    if set(bootstrap) != {"recovery"}:
        found.append(f"bootstrap {sorted(bootstrap)}, not recovery alone")
    initdb = before["spec"]["bootstrap"]["initdb"]
    for key in ("database", "owner"):
        if recovery.get(key) != initdb[key]:
            found.append(f"recovery.{key} {recovery.get(key)!r}, not {initdb[key]!r}")
    externals = {c["name"]: c for c in after["spec"].get("externalClusters", [])}
    source = externals.get(recovery.get("source", ""))
    (archiver,) = [p for p in before["spec"]["plugins"] if p.get("isWALArchiver")]
    archived_to = (archiver["parameters"]["barmanObjectName"], _server_name(archiver, name))
    if source is None or source.get("plugin", {}).get("name") != PLUGIN:
        found.append(
            f"recovery.source {recovery.get('source')!r}: no external cluster read through {PLUGIN}"
        )
    else:
        plugin = source["plugin"]
        read_from = (
            plugin.get("parameters", {}).get("barmanObjectName"),
            _server_name(plugin, source["name"]),
        )
        if read_from != archived_to:
            found.append(f"restores from {read_from}, where prod archives to {archived_to}")
    archivers = [p for p in after["spec"].get("plugins", []) if p.get("isWALArchiver")]
    if [_server_name(p, name) for p in archivers] in ([], [archived_to[1]]):
        found.append(f"archives to {archived_to[1]!r}, the folder it restores from")
    return found


# -- Kafka --------------------------------------------------------------------------------------


def _config(topic: Resource) -> dict[str, Any]:
    config: dict[str, Any] = topic["spec"].get("config", {})
    return config


def topic_bound_violations(resources: list[Resource]) -> list[str]:
    """Every topic that keeps by time (dead letters included) keeps a bounded time
    (`retention.ms`) and a bounded size per partition (`retention.bytes`); a compact-only topic
    keeps each key's latest record, and Kafka applies neither to it."""
    found = []
    for topic in of_kind(resources, "KafkaTopic"):
        config = _config(topic)
        name = topic["spec"].get("topicName", topic["metadata"]["name"])
        policies = set(str(config.get("cleanup.policy", "delete")).split(","))
        if policies == {"compact"}:
            continue
        for setting in ("retention.ms", "retention.bytes"):
            if setting not in config:
                found.append(f"{name}: no {setting}")
            elif int(config[setting]) <= 0:
                found.append(f"{name}: {setting} {config[setting]} (unbounded)")
    return found


def consumer_codecs() -> set[str]:
    """The codecs the services' consumers (aiokafka, as pinned) can decode."""
    return {
        codec
        for codec in ("gzip", "snappy", "lz4", "zstd")
        if getattr(aiokafka.codec, f"has_{codec}")()
    }


def compression_violations(resources: list[Resource], decodable: set[str]) -> list[str]:
    """Every topic compressed by Kafka with one codec, set on the topic (whatever the producers
    send), that leadflow's consumers decode; zstd as soon as they can."""
    found = []
    codecs = set()
    for topic in of_kind(resources, "KafkaTopic"):
        name = topic["spec"].get("topicName", topic["metadata"]["name"])
        codec = _config(topic).get("compression.type")
        codecs.add(codec)
        if codec in (None, "producer", "uncompressed"):
            found.append(f"{name}: compression.type {codec} (stored as producers send it)")
        elif codec not in decodable:
            found.append(f"{name}: compression.type {codec}, which the consumers cannot decode")
        elif "zstd" in decodable and codec != "zstd":
            found.append(f"{name}: compression.type {codec}, where the consumers decode zstd")
    if len(codecs) > 1:
        found.append(f"topics compressed with several codecs: {sorted(map(str, codecs))}")
    return found


def _brokers(resources: list[Resource]) -> tuple[int, list[dict[str, Any]]]:
    """The number of brokers and their data volumes (one pool's, as every broker has them)."""
    pools = [p for p in of_kind(resources, "KafkaNodePool") if "broker" in p["spec"]["roles"]]
    brokers = sum(p["spec"]["replicas"] for p in pools)
    storage = pools[0]["spec"]["storage"]
    volumes = storage["volumes"] if storage["type"] == "jbod" else [storage]
    return brokers, volumes


def sizing_violations(resources: list[Resource]) -> list[str]:
    """Each capped topic keeps what the design throughput writes over its retention
    (`sizing.cap`: 1.5x, or the floor), so that time decides at that rate; and every cap and open
    segment, on every replica, with the compacted and internal topics' budgets, fills at most
    `sizing.DISK_FILL` of each broker's volume, which is also at least what `sizing.plan` gives
    for the design throughput (the table of deploy/README.md)."""
    found = []
    brokers, volumes = _brokers(resources)
    (kafka,) = of_kind(resources, "Kafka")
    default_segment = int(
        kafka["spec"]["kafka"].get("config", {}).get("log.segment.bytes", DEFAULT_SEGMENT_BYTES)
    )
    if brokers != sizing.BROKERS:
        found.append(f"{brokers} brokers, sizing.py assumes {sizing.BROKERS}")
    capped: list[tuple[int, int, int, int]] = []
    layout: dict[str, tuple[int, int]] = {}
    for topic in of_kind(resources, "KafkaTopic"):
        config = _config(topic)
        name = topic["spec"]["topicName"]
        partitions, replicas = topic["spec"]["partitions"], topic["spec"]["replicas"]
        if replicas != sizing.REPLICAS:
            found.append(f"{name}: {replicas} replicas, sizing.py assumes {sizing.REPLICAS}")
        if str(config.get("cleanup.policy", "delete")) == "compact":
            if name not in sizing.COMPACTED_BUDGET:
                found.append(f"{name}: compacted, without a budget in sizing.COMPACTED_BUDGET")
            continue
        if int(config.get("retention.bytes", -1)) <= 0 or "retention.ms" not in config:
            found.append(f"{name}: no size cap, no volume holds it for sure")
            continue
        if not name.endswith(".dlq") and name not in sizing.BYTES_PER_EVENT:
            found.append(f"{name}: no bytes per event in sizing.BYTES_PER_EVENT")
            continue
        kept, retention_ms = int(config["retention.bytes"]), int(config["retention.ms"])
        wanted = sizing.cap(
            name,
            events_per_s=sizing.DESIGN_EVENTS_PER_S,
            retention_ms=retention_ms,
            partitions=partitions,
        )
        if kept < wanted:
            found.append(
                f"{name}: retention.bytes {kept} < {wanted}, what"
                f" {sizing.DESIGN_EVENTS_PER_S} events/s need per partition (sizing.cap)"
            )
        segment = int(config.get("segment.bytes", default_segment))
        capped.append((partitions, replicas, kept, segment))
        layout[name] = (partitions, retention_ms)
    size = min(quantity_bytes(volume["size"]) for volume in volumes)
    needed = sizing.volume_size(capped, brokers=brokers)
    if size < needed:
        found.append(
            f"broker volume {size / sizing.GIB:g} GiB < {needed / sizing.GIB:.0f} GiB: the caps"
            f" and open segments would fill more than {sizing.DISK_FILL:.0%} of it"
        )
    _, design = sizing.plan(sizing.DESIGN_EVENTS_PER_S, layout)
    if size < design:
        found.append(
            f"broker volume {size / sizing.GIB:g} GiB < {design / sizing.GIB:.0f} GiB, what"
            f" sizing.plan gives for {sizing.DESIGN_EVENTS_PER_S} events/s"
        )
    return found


def kafka_version_and_rack_violations(resources: list[Resource]) -> list[str]:
    """Strimzi's v1 API, a pinned Kafka version and metadata version, brokers told their zone
    (rack) and spread over zones and nodes."""
    found = []
    for resource in resources:
        api = resource["apiVersion"]
        if api.startswith("kafka.strimzi.io/") and api != STRIMZI_V1:
            found.append(f"{describe(resource)}: {api}, not {STRIMZI_V1}")
    kafka = the_one(resources, "Kafka")
    spec = kafka["spec"]["kafka"]
    version = str(spec.get("version", ""))
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        found.append(f"Kafka: version {version!r} is not pinned (x.y.z)")
    metadata = str(spec.get("metadataVersion", ""))
    if not metadata or not version.startswith(metadata.split("-")[0] + "."):
        found.append(f"Kafka: metadataVersion {metadata!r} is not pinned to version {version}")
    if spec.get("rack", {}).get("topologyKey") != ZONE:
        found.append(f"Kafka: no rack awareness by {ZONE}")
    for pool in of_kind(resources, "KafkaNodePool"):
        constraints = pool["spec"].get("template", {}).get("pod", {})
        keys = {
            c["topologyKey"]
            for c in constraints.get("topologySpreadConstraints", [])
            if c.get("whenUnsatisfiable") == "DoNotSchedule"
            and c.get("labelSelector", {}).get("matchLabels")
            == {
                "strimzi.io/cluster": kafka["metadata"]["name"],
                "strimzi.io/pool-name": pool["metadata"]["name"],
            }
        }
        for key in (ZONE, HOSTNAME):
            if key not in keys:
                found.append(f"{describe(pool)}: its pods are not spread by {key}")
    return found


# -- what holds data ----------------------------------------------------------------------------


def namespace_violations(resources: list[Resource]) -> list[str]:
    """An overlay that renders its Namespace deletes it, and every volume in it, with
    `kubectl delete -k` or a GitOps prune: it is created once, by hand."""
    return [f"{describe(r)}: rendered by the overlay" for r in of_kind(resources, "Namespace")]


def prune_violations(resources: list[Resource]) -> list[str]:
    """What holds data is never pruned nor deleted by Argo CD or Flux, and Kafka's volumes
    outlive their node pool."""
    found = []
    for resource in resources:
        if resource["kind"] not in DATA_KINDS:
            continue
        annotations = resource["metadata"].get("annotations", {})
        options = {o.strip() for o in annotations.get(ARGO_SYNC_OPTIONS, "").split(",")}
        if not {"Prune=false", "Delete=false"} <= options:
            found.append(f"{describe(resource)}: no {ARGO_SYNC_OPTIONS} Prune=false,Delete=false")
        if annotations.get(FLUX_PRUNE) != "disabled":
            found.append(f"{describe(resource)}: no {FLUX_PRUNE}: disabled")
    for pool in of_kind(resources, "KafkaNodePool"):
        storage = pool["spec"]["storage"]
        for volume in storage.get("volumes", [storage]):
            if volume["type"] == "persistent-claim" and volume.get("deleteClaim") is not False:
                found.append(
                    f"{describe(pool)}: volume {volume.get('id')} without deleteClaim false"
                )
    return found


# -- the tests ----------------------------------------------------------------------------------


PROD_CHECKS: list[Callable[[list[Resource]], list[str]]] = [
    backup_violations,
    replication_violations,
    placement_violations,
    postgresql_image_violations,
    topic_bound_violations,
    sizing_violations,
    kafka_version_and_rack_violations,
    namespace_violations,
    prune_violations,
]


@pytest.mark.parametrize("check", PROD_CHECKS, ids=lambda check: check.__name__)
def test_prod_keeps_its_data(rendered: dict[str, list[Resource]], check: Any) -> None:
    assert check(rendered["prod"]) == []


def test_prod_topics_are_compressed_with_a_codec_the_consumers_decode(
    rendered: dict[str, list[Resource]],
) -> None:
    assert compression_violations(rendered["prod"], consumer_codecs()) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_overlay_renders_a_namespace(rendered: dict[str, list[Resource]], overlay: str) -> None:
    assert namespace_violations(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_has_its_namespace_beside_it_to_apply_once(overlay: str) -> None:
    """The Namespace the install steps apply by hand: the one the overlay deploys into."""
    directory = DEPLOY / "overlays" / overlay
    (namespace,) = [d for d in yaml.safe_load_all((directory / "namespace.yaml").read_text()) if d]
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert namespace["kind"] == "Namespace"
    assert namespace["metadata"]["name"] == kustomization["namespace"]
    assert "namespace.yaml" not in kustomization.get("resources", [])
    assert builtin_errors(namespace) == []


def test_dev_runs_without_an_object_store_or_zones(rendered: dict[str, list[Resource]]) -> None:
    """A development namespace has no object store (no backups, no WAL archiver that would fail
    and keep the WAL), and its nodes need no zone label (nothing would schedule)."""
    resources = rendered["dev"]
    assert not of_kind(resources, "ObjectStore")
    assert not of_kind(resources, "ScheduledBackup")
    cluster = the_one(resources, "Cluster")
    assert "plugins" not in cluster["spec"]
    assert "topologySpreadConstraints" not in cluster["spec"]
    assert "rack" not in the_one(resources, "Kafka")["spec"]["kafka"]
    assert "template" not in the_one(resources, "KafkaNodePool")["spec"]
    # The rest holds in dev too: topics bounded and compressed like prod's.
    assert topic_bound_violations(resources) == []
    assert compression_violations(resources, consumer_codecs()) == []


def _strings(value: Any) -> Any:
    """The rendered YAML as the API server reads it: kubectl's YAML parser keeps a timestamp-like
    scalar (recoveryTarget.targetTime) a string, PyYAML's makes it a datetime."""
    if isinstance(value, dict):
        return {key: _strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strings(item) for item in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


@pytest.fixture(scope="module")
def restored() -> list[Resource]:
    return [_strings(resource) for resource in render(RESTORE)]


def test_the_restore_of_the_readme_makes_a_valid_cluster_from_prods_backups(
    rendered: dict[str, list[Resource]],
    crds: dict[tuple[str, str], CrdVersion],
    restored: list[Resource],
) -> None:
    cluster = the_one(restored, "Cluster")
    assert custom_resource_errors(cluster, crds) == []
    assert restore_violations(restored, rendered["prod"]) == []
    # Point in time: the recovery stops at the target.
    assert cluster["spec"]["bootstrap"]["recovery"]["recoveryTarget"]["targetTime"]
    # Everything else is prod's.
    assert backup_violations(restored) == []
    assert [r for r in restored if r["kind"] != "Cluster"] == [
        r for r in rendered["prod"] if r["kind"] != "Cluster"
    ]


def _restore_edit(change: Callable[[dict[str, Any]], Any]) -> Any:
    def apply(resources: list[Resource]) -> list[Resource]:
        change(the_one(resources, "Cluster")["spec"])
        return resources

    return apply


@pytest.mark.parametrize(
    ("alter", "expected"),
    [
        # Archiving into the folder it restores from.
        (
            _restore_edit(lambda spec: spec["plugins"][0]["parameters"].pop("serverName")),
            "the folder it restores from",
        ),
        # Reading another folder than prod's (the source's own name by default).
        (
            _restore_edit(
                lambda spec: spec["externalClusters"][0]["plugin"]["parameters"].pop("serverName")
            ),
            "where prod archives to",
        ),
        (_restore_edit(lambda spec: spec.update(externalClusters=[])), "no external cluster"),
        (
            _restore_edit(lambda spec: spec["bootstrap"]["recovery"].pop("owner")),
            "recovery.owner None",
        ),
        (
            _restore_edit(lambda spec: spec["bootstrap"].update(initdb={"database": "x"})),
            "not recovery alone",
        ),
    ],
)
def test_the_restore_check_reports_a_restore_gone_wrong(
    rendered: dict[str, list[Resource]], restored: list[Resource], alter: Any, expected: str
) -> None:
    broken = alter(copy.deepcopy(restored))
    assert expected in " | ".join(restore_violations(broken, rendered["prod"]))


def test_the_sizing_grows_with_the_throughput() -> None:
    """The README's table: more events need larger caps and volumes; a design of 100 events/s
    keeps each capped topic's retention at that rate."""
    layout = {"events.raw": (12, 7 * 86_400_000), "leads.scored": (12, 30 * 86_400_000)}
    disks = [sizing.plan(rate, layout)[1] for rate in (100, 300, 1000)]
    assert disks == sorted(disks)
    assert disks[0] < disks[-1]
    plans, _ = sizing.plan(100, layout)
    raw = sizing.design_bytes("events.raw", events_per_s=100, retention_ms=7 * 86_400_000)
    assert plans["events.raw"].retention_bytes >= sizing.CAP_MARGIN * raw / 12
    assert plans["events.raw"].segment_bytes <= plans["events.raw"].retention_bytes // 8


# -- each check fails on what it guards against ------------------------------------------------


def _edit(kind: str, change: Callable[[Resource], Any], name: str | None = None) -> Any:
    def apply(resources: list[Resource]) -> list[Resource]:
        for resource in resources:
            if resource["kind"] == kind and name in (None, resource["metadata"]["name"]):
                change(resource)
        return resources

    return apply


def _topic(name: str, **config: Any) -> Any:
    def apply(resources: list[Resource]) -> list[Resource]:
        set_topic_config(resources, name, **config)
        return resources

    return apply


def _drop(kind: str) -> Any:
    return lambda resources: [r for r in resources if r["kind"] != kind]


def _add_namespace(resources: list[Resource]) -> list[Resource]:
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "leadflow"}}, *resources]


def _spec(path: str, value: Any) -> Callable[[Resource], None]:
    """Set (or, with None, remove) a key under `spec` given as a/b/c."""

    def change(resource: Resource) -> None:
        *parents, last = path.split("/")
        node = resource["spec"]
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value

    return change


def _annotations(resource: Resource) -> None:
    resource["metadata"].pop("annotations", None)


BROKEN: list[tuple[Callable[[list[Resource]], list[str]], Any, str]] = [
    # Backups: the plugin missing, pointing nowhere, the old built-in archiver, no schedule.
    (backup_violations, _edit("Cluster", _spec("plugins", None)), "no barman-cloud"),
    (backup_violations, _drop("ObjectStore"), "is no ObjectStore here"),
    (
        backup_violations,
        _edit("Cluster", _spec("backup", {"barmanObjectStore": {"destinationPath": "s3://x"}})),
        "deprecated",
    ),
    (backup_violations, _drop("ScheduledBackup"), "no ScheduledBackup"),
    (
        backup_violations,
        _edit("ScheduledBackup", _spec("schedule", "0 0 3 * * 0")),
        "is not daily",
    ),
    (backup_violations, _edit("ObjectStore", _spec("retentionPolicy", None)), "kept forever"),
    (
        backup_violations,
        _edit("ObjectStore", _spec("configuration/s3Credentials/accessKeyId", {"name": "s"})),
        "accessKeyId is not a Secret's key",
    ),
    # Replication, placement, image.
    (replication_violations, _edit("Cluster", _spec("postgresql/synchronous", None)), "no sync"),
    (
        replication_violations,
        _edit("Cluster", _spec("postgresql/synchronous", {"method": "first", "number": 2})),
        "not `any` 1",
    ),
    (
        placement_violations,
        _edit("Cluster", _spec("affinity/podAntiAffinityType", "preferred")),
        "not required",
    ),
    (placement_violations, _edit("Cluster", _spec("topologySpreadConstraints", None)), "zones"),
    (
        postgresql_image_violations,
        _edit("Cluster", _spec("imageName", "ghcr.io/cloudnative-pg/postgresql:17")),
        "no PostgreSQL minor version",
    ),
    # Topics: a bound missing or unbounded.
    (topic_bound_violations, _topic("events.raw", **{"retention.bytes": None}), "no retention.by"),
    (topic_bound_violations, _topic("events.raw.dlq", **{"retention.bytes": -1}), "unbounded"),
    (topic_bound_violations, _topic("leads.scored", **{"retention.ms": None}), "no retention.ms"),
    # Sizing: a cap below the design volume, a volume too small for the caps, segments too big.
    (sizing_violations, _topic("events.enriched", **{"retention.bytes": 1 << 30}), "sizing.cap"),
    (
        sizing_violations,
        _edit("KafkaNodePool", lambda r: r["spec"]["storage"]["volumes"][0].update(size="100Gi")),
        "would fill more than",
    ),
    # Kafka's default segment (1 GiB) open on every partition.
    (
        sizing_violations,
        _edit("KafkaTopic", lambda r: r["spec"]["config"].pop("segment.bytes", None)),
        "would fill more",
    ),
    # Kafka's pins, API and placement.
    (
        kafka_version_and_rack_violations,
        _edit("Kafka", lambda r: r["spec"]["kafka"].pop("version")),
        "is not pinned",
    ),
    (
        kafka_version_and_rack_violations,
        _edit("Kafka", lambda r: r["spec"]["kafka"].update(metadataVersion="4.1-IV0")),
        "metadataVersion",
    ),
    (
        kafka_version_and_rack_violations,
        _edit("Kafka", lambda r: r["spec"]["kafka"].pop("rack")),
        "no rack",
    ),
    (
        kafka_version_and_rack_violations,
        _edit("KafkaNodePool", _spec("template", None)),
        "not spread by topology.kubernetes.io/zone",
    ),
    (
        kafka_version_and_rack_violations,
        _edit("KafkaTopic", lambda r: r.update(apiVersion="kafka.strimzi.io/v1beta2")),
        "not kafka.strimzi.io/v1",
    ),
    # What holds data.
    (namespace_violations, _add_namespace, "Namespace/leadflow"),
    (prune_violations, _edit("Cluster", _annotations), "Prune=false,Delete=false"),
    (prune_violations, _edit("KafkaTopic", _annotations, name="events-raw"), "kustomize.toolkit"),
    (
        prune_violations,
        _edit("KafkaNodePool", lambda r: r["spec"]["storage"]["volumes"][0].pop("deleteClaim")),
        "without deleteClaim false",
    ),
]


@pytest.mark.parametrize(
    ("check", "alter", "expected"),
    BROKEN,
    ids=[f"{check.__name__}-{i}" for i, (check, _, _) in enumerate(BROKEN)],
)
def test_each_check_reports_what_it_guards_against(
    rendered: dict[str, list[Resource]], check: Any, alter: Any, expected: str
) -> None:
    resources = alter(copy.deepcopy(rendered["prod"]))
    assert expected in " | ".join(check(resources))


@pytest.mark.parametrize(
    ("codec", "decodable", "expected"),
    [
        ("producer", {"gzip"}, "stored as producers send it"),
        ("zstd", {"gzip"}, "cannot decode"),
        ("gzip", {"gzip", "zstd"}, "where the consumers decode zstd"),
    ],
)
def test_the_compression_check_reports_a_codec_to_change(
    rendered: dict[str, list[Resource]], codec: str, decodable: set[str], expected: str
) -> None:
    resources = _topic("events.raw", **{"compression.type": codec})(copy.deepcopy(rendered["prod"]))
    assert expected in " | ".join(compression_violations(resources, decodable))
