"""Whether the rendered NetworkPolicies let one endpoint reach another, as Kubernetes decides.

A connection from `source` to `destination` on a port is allowed when both ends allow it:
- the source pod is selected by no policy with `Egress` in its types, or one of those policies
  has an egress rule naming the destination and the port;
- the destination pod is selected by no policy with `Ingress`, or one of those has an ingress
  rule naming the source and the port.
Policies add up (no rule denies). A rule with no (or an empty) `to`/`from` names every peer,
without `ports` every port; a peer with a `podSelector` alone means pods of the policy's namespace; a
`namespaceSelector` sees the namespace's `kubernetes.io/metadata.name` label. An `ipBlock` is
taken to name addresses outside the cluster only (`Address`), never pods: what a CNI does with
pod addresses in an ipBlock varies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.deploy.manifests import Resource
from tests.deploy.policies import containers, selects


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports


@dataclass(frozen=True)
class Address:
    """An address outside the cluster (an identity provider, the cloud's metadata service)."""

    ip: str


Endpoint = Pod | Address


def pod_of(workload: Resource) -> Pod:
    """A pod of a Deployment (its template's labels and named ports, in its namespace)."""
    template = workload["spec"]["template"]
    return Pod(
        namespace=workload["metadata"]["namespace"],
        labels=dict(template["metadata"].get("labels", {})),
        ports={
            port["name"]: port["containerPort"]
            for _, container in containers(workload)
            for port in container.get("ports", [])
            if "name" in port
        },
    )


def _policy_types(policy: Resource) -> list[str]:
    spec = policy["spec"]
    types: list[str] | None = spec.get("policyTypes")
    if types:
        return types
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


def _names(peer: dict[str, Any], other: Endpoint, *, home: str) -> bool:
    """Whether a rule's peer (`from`/`to` entry) of a policy in namespace `home` names `other`."""
    if "ipBlock" in peer:
        if not isinstance(other, Address):
            return False
        address = ipaddress.ip_address(other.ip)
        block = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        if address.version != block.version or address not in block:
            return False
        return not any(
            address in ipaddress.ip_network(excepted)
            for excepted in peer["ipBlock"].get("except", [])
            if ipaddress.ip_network(excepted).version == address.version
        )
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
        in_namespace = selects(peer["namespaceSelector"], namespace_labels)
    else:
        in_namespace = other.namespace == home
    return in_namespace and selects(peer.get("podSelector", {}), dict(other.labels))


def _covers(ports: list[dict[str, Any]], port: int, protocol: str, destination: Endpoint) -> bool:
    """Whether a rule's `ports` cover `port` of the destination (named ports are its own)."""
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        number = entry["port"]
        if isinstance(number, str):
            number = destination.ports.get(number) if isinstance(destination, Pod) else None
            if number is None:
                continue
        if number <= port <= entry.get("endPort", number):
            return True
    return False


def _selecting(resources: list[Resource], pod: Pod, policy_type: str) -> list[Resource]:
    return [
        policy
        for policy in resources
        if policy.get("kind") == "NetworkPolicy"
        and policy["metadata"].get("namespace") == pod.namespace
        and policy_type in _policy_types(policy)
        and selects(policy["spec"].get("podSelector", {}), dict(pod.labels))
    ]


def egress_allows(
    resources: list[Resource],
    source: Pod,
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    policies = _selecting(resources, source, "Egress")
    return not policies or any(
        _covers(rule.get("ports", []), port, protocol, destination)
        and (
            not rule.get("to")
            or any(_names(peer, destination, home=source.namespace) for peer in rule["to"])
        )
        for policy in policies
        for rule in policy["spec"].get("egress", [])
    )


def ingress_allows(
    resources: list[Resource],
    source: Endpoint,
    destination: Pod,
    port: int,
    protocol: str = "TCP",
) -> bool:
    policies = _selecting(resources, destination, "Ingress")
    return not policies or any(
        _covers(rule.get("ports", []), port, protocol, destination)
        and (
            not rule.get("from")
            or any(_names(peer, source, home=destination.namespace) for peer in rule["from"])
        )
        for policy in policies
        for rule in policy["spec"].get("ingress", [])
    )


def allows(
    resources: list[Resource],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether `source` may open a connection to `destination` on `port`."""
    if isinstance(source, Pod) and not egress_allows(
        resources, source, destination, port, protocol
    ):
        return False
    return not isinstance(destination, Pod) or ingress_allows(
        resources, source, destination, port, protocol
    )
