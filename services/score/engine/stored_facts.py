"""What score keeps of a message's facts in its history (`score.history.facts`): only what is
needed. Pure.

The rules read a message's facts in full while it is scored (`conditions.call_facts_of`): the
live event is never minimised. What is stored for later (the history a rescore, an unmerge, a
simulation, the facts endpoint and the learning read) leaves out the visitor's network
identity unless the live rule set reads it:

- **IP-bearing context facts** (`context.ip`, and any `context.*` fact named like an address:
  `clientIp`, `remote_addr`, `x-forwarded-for`, ...; `personal_kind`): not stored, unless a
  condition of the live rules reads that very fact; then stored truncated to its network, an
  IPv4 address to its /24 (`192.0.2.77` -> `192.0.2.0`), an IPv6 one to its /48
  (`2001:db8:85a3:8d3:1319:8a2e:370:7348` -> `2001:db8:85a3::`; an IPv4-mapped IPv6 address
  as the IPv4 one). A value that is no single address (a list, a port, a name) is not stored.
- **User-agent facts** (`context.userAgent`, and the client hints under
  `context.userAgentData.*`): not stored, unless a condition of the live rules reads that
  fact; then stored as sent.

Which facts the rules read is worked out once per rule set (`RuleSet.personal_facts_read`),
not per event; per event, `stored_facts` sets the names it already knows to be harmless apart
in one set operation (each name is classified once), and copies the facts only when there is
something to leave out or truncate.

What follows for rules that start reading such a fact later: the history of messages scored
before has none of it (or the truncated value), so a rescore or a simulation under those rules
cannot count them on it; only messages scored while a live rule reads the fact carry it, and
then only its network. A rule on an address should therefore test the network (a /24 or /48
prefix, e.g. `regex: '^192\\.0\\.2\\.'`), which reads the same on the live event and on its
replay; one that tests a whole address holds live and not on a replay.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

from services.score.engine.conditions import Facts

PersonalKind = Literal["ip", "user_agent"]

CONTEXT = "context."
IP_NAMES = frozenset(
    {"ip", "ips", "ipaddress", "ipv4", "ipv6", "clientip", "clientipaddress", "remoteip",
     "remoteaddr", "remoteaddress", "realip", "xrealip", "forwardedfor", "xforwardedfor",
     "xclientip", "trueclientip", "cfconnectingip"}
)  # fmt: skip
"""Names of context facts that hold an IP address (casefolded, without `_` and `-`)."""
USER_AGENT_NAMES = frozenset({"useragent", "useragentdata", "httpuseragent"})
"""Names of context facts (or of the object holding them) that hold the user agent."""

_IPV4_NETWORK = 0xFFFF_FF00  # /24
_IPV6_HOST_BITS = 128 - 48  # /48
_LONGEST_ADDRESS = 64  # an IPv6 address with a zone id is shorter; anything longer is none


@lru_cache(maxsize=4096)
def personal_kind(field: str) -> PersonalKind | None:
    """Whether a fact name is one of a visitor's network identity: `ip` for an IP-bearing
    context fact, `user_agent` for a user-agent one, None for any other fact (and for every
    fact outside `context.*`). Decided by the names under `context`, any of them (so
    `context.device.ip` and `context.userAgentData.mobile` count)."""
    if not field.startswith(CONTEXT):
        return None
    parts = [part.casefold().replace("_", "").replace("-", "") for part in field.split(".")[1:]]
    if any(part in IP_NAMES for part in parts):
        return "ip"
    if any(part in USER_AGENT_NAMES for part in parts):
        return "user_agent"
    return None


def personal_facts_read(fields: Iterable[str]) -> frozenset[str]:
    """Of the facts a rule set reads, those of a visitor's network identity: the ones
    `stored_facts` keeps."""
    return frozenset(field for field in fields if personal_kind(field) is not None)


def truncated_ip(value: object) -> str | None:
    """The network of an IP address as text: an IPv4 address's /24, an IPv6 address's /48 (an
    IPv4-mapped IPv6 address counts as its IPv4 address), host bits zeroed, without a prefix
    length; None for anything that is not one address (not text, blank, a list, a port, a
    name)."""
    if not isinstance(value, str) or len(value) > _LONGEST_ADDRESS:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is None:  # (the zone id of a link-local address goes with the host bits)
            return str(ipaddress.IPv6Address(int(address) >> _IPV6_HOST_BITS << _IPV6_HOST_BITS))
        address = mapped
    return str(ipaddress.IPv4Address(int(address) & _IPV4_NETWORK))


# Fact names known to be no network identity, so that an event's facts are told apart in one
# set difference (C speed; the names' hashes are cached by the dict that holds them) instead of
# a Python test per name. Bounded: past `_MAX_PLAIN` names (a sender inventing property names),
# new ones are classified each time (`personal_kind` keeps its own bounded cache).
_PLAIN: set[str] = set()
_MAX_PLAIN = 20_000


def stored_facts(facts: Facts, read: frozenset[str]) -> Facts:
    """The facts to store for a scored message: `facts` without the network-identity facts
    (`personal_kind`) that are not in `read` (the live rules' `personal_facts_read`), and with
    the IP-bearing ones in `read` truncated (`truncated_ip`; a value that is no address is
    left out). `facts` itself when nothing is left out or changed (it is never changed)."""
    unknown = facts.keys() - _PLAIN
    if not unknown:
        return facts
    stored: Facts | None = None
    for field in unknown:
        kind = personal_kind(field)
        if kind is None:
            if len(_PLAIN) < _MAX_PLAIN:
                _PLAIN.add(field)
            continue
        if stored is None:
            stored = dict(facts)
        if field not in read:
            del stored[field]
        elif kind == "ip":
            network = truncated_ip(facts[field])
            if network is None:
                del stored[field]
            else:
                stored[field] = network
    return facts if stored is None else stored
