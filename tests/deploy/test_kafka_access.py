"""Who may connect to Kafka, as whom, and what each may touch, on the rendered overlays.

The attack these close: any pod of the cluster connecting to the broker in plaintext, without
logging in, and reading every lead's data or writing forged events and decisions. What each
client may do is derived from the code (tests/deploy/kafka_access.py), not copied here.
"""

from __future__ import annotations

import base64
import functools
from pathlib import PurePosixPath
from typing import Any

import pytest

from shared.consumer.operations import dead_letter_replay_group
from shared.consumer.runner import consumer_group
from shared.settings import KafkaSettings
from shared.topics import ALL_TOPICS, ENRICH_COMMANDS, PRIVACY_ERASURES, PRIVACY_REPORTS
from tests.deploy.kafka_access import (
    Grant,
    Producer,
    crm_topics,
    granted,
    helper_outputs,
    produced,
    producers,
    referenced,
    service_needs,
    subscriptions,
)
from tests.deploy.manifests import OVERLAYS, Resource, describe, of_kind
from tests.deploy.policies import container_env, containers, selects, service_of
from tests.deploy.settings_names import SERVICES

AUTHENTICATED = ("scram-sha-512", "tls")  # Strimzi's listener authentication types but oauth
CRM_USER = "leadflow-crm"
CRM_POD = {"leadflow.io/kafka-client": "true"}
# The KEDA operator's pods, in the namespace and with the labels KEDA's Helm chart gives them
# (its release manifests give `app` and `name` only).
KEDA_NAMESPACE = "keda"
KEDA_OPERATOR = {
    "app": "keda-operator",
    "name": "keda-operator",
    "app.kubernetes.io/name": "keda-operator",
    "app.kubernetes.io/component": "operator",
    "app.kubernetes.io/part-of": "keda-operator",
}


def the_kafka(resources: list[Resource]) -> Resource:
    (kafka,) = of_kind(resources, "Kafka")
    return kafka


def kafka_user(resources: list[Resource], name: str) -> Resource | None:
    return next((u for u in of_kind(resources, "KafkaUser") if u["metadata"]["name"] == name), None)


def service_containers(resources: list[Resource]) -> dict[str, tuple[Resource, dict[str, Any]]]:
    """service -> (its Deployment, the container running it)."""
    found = {}
    for deployment in of_kind(resources, "Deployment"):
        for _, container in containers(deployment):
            service = service_of(container)
            if service is not None:
                found[service] = (deployment, container)
    assert set(found) == set(SERVICES)
    return found


def topic_prefix(resources: list[Resource]) -> str:
    prefixes = {
        container_env(resources, container).get("LEADFLOW_KAFKA_TOPIC_PREFIX") or ""
        for _, container in service_containers(resources).values()
    }
    (prefix,) = prefixes
    return prefix


def listener_ports(resources: list[Resource]) -> set[int]:
    return {listener["port"] for listener in the_kafka(resources)["spec"]["kafka"]["listeners"]}


def bootstrap_port(resources: list[Resource], container: dict[str, Any]) -> int:
    """The port of the (first) bootstrap address a service container is given."""
    servers = str(container_env(resources, container)["LEADFLOW_KAFKA_BOOTSTRAP_SERVERS"])
    return int(servers.split(",")[0].rsplit(":", 1)[1])


def secret_ref(container: dict[str, Any], variable: str) -> dict[str, str] | None:
    for entry in container.get("env", []):
        if entry["name"] == variable:
            reference: dict[str, str] | None = entry.get("valueFrom", {}).get("secretKeyRef")
            return reference
    return None


def show(grants: set[Grant]) -> list[str]:
    return sorted(map(str, grants))


# -- the listener -----------------------------------------------------------------------------


def _unprotected(listener: dict[str, Any]) -> str:
    """What the listener lacks ("" when it has TLS and an authentication)."""
    faults = []
    if not listener.get("tls"):
        faults.append("in plaintext")
    if listener.get("authentication", {}).get("type") not in AUTHENTICATED:
        faults.append("without authentication")
    return " and ".join(faults)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_kafka_listener_requires_tls_and_authentication(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    kafka = the_kafka(resources)
    unprotected = [
        f"{listener['name']}:{listener['port']} {fault}"
        for listener in kafka["spec"]["kafka"]["listeners"]
        if (fault := _unprotected(listener))
    ]
    assert unprotected == [], f"{describe(kafka)} listens {unprotected}"
    # Authenticated but unauthorized would let every user touch every topic.
    assert kafka["spec"]["kafka"].get("authorization", {}).get("type") == "simple"

    # And the services connect that way, to that listener.
    for service, (_, container) in service_containers(resources).items():
        env = container_env(resources, container)
        port = bootstrap_port(resources, container)
        assert port in listener_ports(resources), (service, port)
        assert env["LEADFLOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", service
        assert env["LEADFLOW_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", service


def _admits(
    peers: list[dict[str, Any]], *, home: str, namespace: str, labels: dict[str, str]
) -> bool:
    """Whether the NetworkPolicy Strimzi makes of a listener's peers, in the brokers' namespace
    `home`, lets in a pod of `namespace` with `labels`."""
    for peer in peers:
        if "ipBlock" in peer:
            return True  # addresses, not pods: whoever holds them
        if "namespaceSelector" in peer:
            namespace_labels = {"kubernetes.io/metadata.name": namespace}
            in_namespace = selects(peer["namespaceSelector"], namespace_labels)
        else:
            in_namespace = namespace == home
        if in_namespace and selects(peer.get("podSelector", {}), labels):
            return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_listener_names_its_network_peers(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    """Strimzi makes a NetworkPolicy of each listener's `networkPolicyPeers`; without them any
    pod of any namespace reaches the brokers (the default-deny policy selects leadflow's pods
    only)."""
    resources = rendered[overlay]
    kafka = the_kafka(resources)
    home = kafka["metadata"]["namespace"]
    services = {
        service: deployment["spec"]["template"]["metadata"]["labels"]
        for service, (deployment, _) in service_containers(resources).items()
    }
    (migrate,) = of_kind(resources, "Job")
    for listener in kafka["spec"]["kafka"]["listeners"]:
        peers = listener.get("networkPolicyPeers") or []
        assert peers, f"listener {listener['name']}: no networkPolicyPeers, every pod may connect"

        admits = functools.partial(_admits, peers, home=home)
        for service, labels in services.items():
            assert admits(namespace=home, labels=labels), (
                f"{service} cannot reach listener {listener['name']}"
            )
        assert admits(namespace=home, labels=CRM_POD), (
            "a CRM connector labelled as a Kafka client cannot"
        )
        if of_kind(resources, "ScaledObject"):
            assert admits(namespace=KEDA_NAMESPACE, labels=KEDA_OPERATOR), (
                "KEDA cannot read the lag"
            )

        # Pods with no Kafka user have no business there; labels do not travel: the same
        # labels in another namespace are somebody else's.
        strangers = [
            (home, migrate["spec"]["template"]["metadata"]["labels"]),
            (home, {"app": "some-other-workload"}),
            (home, {}),
            ("another-team", services["enrich"]),
            ("another-team", CRM_POD),
            ("another-team", KEDA_OPERATOR),
            (KEDA_NAMESPACE, {"app": "keda-admission-webhooks"}),
        ]
        let_in = [
            f"{labels or 'no labels'} in {namespace}"
            for namespace, labels in strangers
            if admits(namespace=namespace, labels=labels)
        ]
        assert let_in == [], f"listener {listener['name']} lets in pods it should not"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_may_reach_the_listener_they_are_configured_for(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    """Where leadflow's pods have egress policies, one of them lets each service reach the
    brokers on the port of its bootstrap address."""
    resources = rendered[overlay]
    egress = [
        p for p in of_kind(resources, "NetworkPolicy") if "Egress" in p["spec"]["policyTypes"]
    ]
    if not egress:
        return  # no network policies in this overlay: nothing to open
    kafka_pod = {"strimzi.io/cluster": the_kafka(resources)["metadata"]["name"]}
    for service, (deployment, container) in service_containers(resources).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        port = bootstrap_port(resources, container)
        allowed = {
            rule_port["port"]
            for policy in egress
            if selects(policy["spec"]["podSelector"], labels)
            for rule in policy["spec"].get("egress", [])
            if any(selects(to.get("podSelector", {}), kafka_pod) for to in rule.get("to", []))
            for rule_port in rule.get("ports", [])
        }
        assert port in allowed, f"{service} may not reach Kafka on {port} (only {allowed})"


# -- the users --------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_kafka_user_may_touch_only_its_topics_and_group(
    rendered: dict[str, list[Resource]], overlay: str, service: str
) -> None:
    resources = rendered[overlay]
    # The derivation covers every topic the service's code uses.
    assert referenced(service) <= {*subscriptions(service), *produced(service)}, service

    _, container = service_containers(resources)[service]
    name = container_env(resources, container).get("LEADFLOW_KAFKA_SASL_USERNAME")
    assert name, f"{service} logs in as nobody"
    user = kafka_user(resources, str(name))
    assert user is not None, f"{service} logs in as {name}, and no KafkaUser {name} exists"
    assert (
        user["metadata"]["labels"]["strimzi.io/cluster"] == the_kafka(resources)["metadata"]["name"]
    )
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    assert user["spec"].get("authorization", {}).get("type") == "simple"

    needs = service_needs(service, prefix=topic_prefix(resources))
    grants = granted(user)
    assert show(grants - needs) == [], f"{name} may do more than {service} does"
    assert show(needs - grants) == [], f"{name} would be refused what {service} does"


def test_the_producers_of_each_topic_are_read_as_shared_topics_names_them() -> None:
    """One producer, one marked "(internal)", or a comma-separated list of them; a service is
    the producer of each topic whose list names it."""
    for topic in ALL_TOPICS:
        assert producers(topic), topic.name  # every topic's producer parses
    assert producers(PRIVACY_REPORTS) == [
        Producer("score", internal=False),
        Producer("router", internal=False),
        Producer("console", internal=False),
        Producer("sync", internal=False),
    ]
    assert producers(ENRICH_COMMANDS) == [Producer("enrich", internal=True)]
    for service in ("score", "router", "console", "sync"):
        assert PRIVACY_REPORTS in produced(service), service
    assert produced("console") == [PRIVACY_REPORTS]
    # Erasure reports are made with shared.privacy.erasure_report: who calls it agrees with the
    # registry's producers.
    assert {s for s in SERVICES if PRIVACY_REPORTS in helper_outputs(s)} == {
        "score",
        "router",
        "console",
        "sync",
    }
    assert produced("sync") == [PRIVACY_REPORTS]
    assert PRIVACY_ERASURES in produced("enrich")
    assert PRIVACY_REPORTS not in produced("enrich")
    # Every writer a topic names is a service or the CRMs: a misspelt one would grant nothing.
    writers = {p.name for topic in ALL_TOPICS for p in producers(topic)}
    assert writers <= {*SERVICES, "CRMs"}, writers


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_crm_user_reads_routing_and_erasures_and_writes_feedback_only(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    user = kafka_user(resources, CRM_USER)
    assert user is not None, f"no KafkaUser {CRM_USER} for CRM connectors"
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    assert user["spec"].get("authorization", {}).get("type") == "simple"
    grants = granted(user)
    prefix = topic_prefix(resources)

    topics = {g for g in grants if g.resource == "topic"}
    assert show(topics ^ crm_topics(prefix=prefix)) == []

    groups = grants - topics
    assert groups, "a CRM consumer needs a consumer group"
    assert {(g.resource, g.operation) for g in groups} == {("group", "Read")}
    kafka = KafkaSettings(topic_prefix=prefix)
    for service in SERVICES:
        if not subscriptions(service):
            continue  # no consumer group
        for taken in (consumer_group(kafka, service), dead_letter_replay_group(kafka, service)):
            for group in groups:
                same = taken == group.name or (
                    group.pattern == "prefix" and taken.startswith(group.name)
                )
                assert not same, f"CRMs could join {service}'s group {taken} ({group})"


# -- the credentials --------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_take_kafka_credentials_from_secrets(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    cluster = the_kafka(resources)["metadata"]["name"]
    for config_map in of_kind(resources, "ConfigMap"):
        assert "LEADFLOW_KAFKA_SASL_PASSWORD" not in config_map.get("data", {}), describe(
            config_map
        )
    users = []
    for service, (deployment, container) in service_containers(resources).items():
        env = container_env(resources, container)
        user = str(env["LEADFLOW_KAFKA_SASL_USERNAME"])
        users.append(user)
        # The Secret the User Operator writes for the KafkaUser, under its name.
        assert secret_ref(container, "LEADFLOW_KAFKA_SASL_PASSWORD") == {
            "name": user,
            "key": "password",
        }, f"{service}: the Kafka password is not {user}'s generated Secret"

        # The broker's certificate is checked against Strimzi's cluster CA, mounted read-only.
        ca_file = PurePosixPath(str(env["LEADFLOW_KAFKA_SSL_CAFILE"]))
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(ca_file.parent)]
        assert mount.get("readOnly") is True, f"{service}: the CA is mounted writable"
        (volume,) = [
            v
            for v in deployment["spec"]["template"]["spec"]["volumes"]
            if v["name"] == mount["name"]
        ]
        assert volume["secret"]["secretName"] == f"{cluster}-cluster-ca-cert", service
        paths = {item["key"]: item["path"] for item in volume["secret"].get("items", [])}
        assert paths.get("ca.crt", "ca.crt") == ca_file.name, service
    assert len(set(users)) == len(users), f"services share a Kafka user: {users}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_autoscaler_logs_in_as_a_user_that_may_only_describe(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    """KEDA's Kafka triggers read lag over TLS as their own user, from KEDA's namespace."""
    resources = rendered[overlay]
    scaled = of_kind(resources, "ScaledObject")
    if not scaled:
        return  # no autoscaling in this overlay
    cluster = the_kafka(resources)["metadata"]["name"]
    authentications = {
        a["metadata"]["name"]: a for a in of_kind(resources, "TriggerAuthentication")
    }
    secrets = {s["metadata"]["name"]: s for s in of_kind(resources, "Secret")}
    needs: set[Grant] = set()
    users = set()
    for scaled_object in scaled:
        for trigger in scaled_object["spec"]["triggers"]:
            metadata = trigger["metadata"]
            label = f"{describe(scaled_object)} trigger"
            assert metadata.get("sasl") == "scram_sha512", label
            assert metadata.get("tls") == "enable", label
            # Resolved from KEDA's namespace: the service name needs the namespace.
            host, port = metadata["bootstrapServers"].rsplit(":", 1)
            namespace = scaled_object["metadata"]["namespace"]
            assert host.startswith(f"{cluster}-kafka-bootstrap.{namespace}.svc"), label
            assert int(port) in listener_ports(resources), label

            authentication = authentications[trigger["authenticationRef"]["name"]]
            parameters = {
                ref["parameter"]: ref for ref in authentication["spec"]["secretTargetRef"]
            }
            username_secret = secrets[parameters["username"]["name"]]
            user = base64.b64decode(username_secret["data"][parameters["username"]["key"]]).decode()
            users.add(user)
            assert (parameters["password"]["name"], parameters["password"]["key"]) == (
                user,
                "password",
            ), label
            assert (parameters["ca"]["name"], parameters["ca"]["key"]) == (
                f"{cluster}-cluster-ca-cert",
                "ca.crt",
            ), label
            needs |= {
                Grant("topic", metadata["topic"], "literal", "Describe"),
                Grant("group", metadata["consumerGroup"], "literal", "Describe"),
            }
    (user,) = users
    keda = kafka_user(resources, user)
    assert keda is not None, f"no KafkaUser {user} for KEDA"
    assert keda["spec"]["authentication"]["type"] == "scram-sha-512"
    assert keda["spec"].get("authorization", {}).get("type") == "simple"
    assert show(granted(keda) ^ needs) == []
