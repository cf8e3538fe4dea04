"""What score's history keeps of a message (`engine.stored_facts`): the visitor's IP address and
user agent only where a live rule reads them, an address truncated to its /24 or /48; the
rules themselves read the full values; and the facts catalogue offers no value of them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from services.score.engine.conditions import call_facts_of
from services.score.engine.ruleset import DEFAULT_RULES_FILE, RuleSet, load_rules
from services.score.engine.scoring import ScoreState, score_event
from services.score.engine.stored_facts import (
    personal_facts_read,
    personal_kind,
    stored_facts,
    truncated_ip,
)
from services.score.facts_seen import facts_seen
from tests.unit.builders import track

DEFAULT = load_rules(DEFAULT_RULES_FILE)


@pytest.mark.parametrize(
    ("value", "network"),
    [
        # IPv4: the /24
        ("192.0.2.77", "192.0.2.0"),
        ("84.17.52.103", "84.17.52.0"),
        ("10.0.0.0", "10.0.0.0"),
        ("255.255.255.255", "255.255.255.0"),
        ("0.0.0.1", "0.0.0.0"),
        (" 198.51.100.9 ", "198.51.100.0"),  # surrounding blanks
        # IPv6: the /48
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("2001:0DB8:0000:0042::1", "2001:db8::"),
        ("2a00:1450:4001:82b::200e", "2a00:1450:4001::"),
        ("::1", "::"),
        ("::", "::"),
        ("fe80::1%eth0", "fe80::"),  # a zone id goes with the host bits
        ("::ffff:203.0.113.45", "203.0.113.0"),  # IPv4-mapped: as the IPv4 address
        # not one address: nothing stored
        ("", None),
        ("   ", None),
        ("unknown", None),
        ("256.1.1.1", None),
        ("1.2.3", None),
        ("01.2.3.4", None),  # leading zeros are ambiguous (octal?)
        ("1.2.3.4:8080", None),  # with a port
        ("[2001:db8::1]", None),
        ("192.0.2.1, 198.51.100.2", None),  # a forwarded-for list
        ("192.0.2.0/24", None),  # a network is no address
        ("2001:db8::1::2", None),
        ("x" * 200, None),
        (3232235777, None),  # a number, not text
        (None, None),
        (True, None),
        (["192.0.2.1"], None),
        ({"v4": "192.0.2.1"}, None),
    ],
)
def test_an_ip_address_is_truncated_to_its_network_and_anything_else_is_none(
    value: Any, network: str | None
) -> None:
    assert truncated_ip(value) == network


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("context.ip", "ip"),
        ("context.clientIp", "ip"),
        ("context.client_ip", "ip"),
        ("context.remote_addr", "ip"),
        ("context.x-forwarded-for", "ip"),
        ("context.X_Forwarded_For", "ip"),
        ("context.device.ip", "ip"),
        ("context.ip.v4", "ip"),
        ("context.userAgent", "user_agent"),
        ("context.user_agent", "user_agent"),
        ("context.userAgentData.mobile", "user_agent"),
        ("context.userAgentData.brands", "user_agent"),
        # not the visitor's network identity
        ("context.locale", None),
        ("context.zip", None),
        ("context.library.name", None),
        ("context.page.path", None),
        ("context.campaign.source", None),
        ("context.ipsum", None),
        ("properties.ip", None),  # the call's own properties (a server's address, say)
        ("ip", None),
        ("profile.email", None),
        ("event", None),
    ],
)
def test_which_facts_are_a_visitors_network_identity(field: str, kind: str | None) -> None:
    assert personal_kind(field) == kind


VISIT = {
    "type": "track",
    "event": "Demo Requested",
    "context.ip": "84.17.52.103",
    "context.userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
    "context.userAgentData.mobile": False,
    "context.device.ip": "2001:db8:85a3:8d3::7",
    "context.locale": "en-US",
    "profile.email": "ada@northwind.io",
}


def test_nothing_of_the_network_identity_is_stored_when_no_rule_reads_it() -> None:
    before = dict(VISIT)
    stored = stored_facts(VISIT, frozenset())
    assert stored == {"type": "track", "event": "Demo Requested", "context.locale": "en-US",
                      "profile.email": "ada@northwind.io"}  # fmt: skip
    assert before == VISIT  # the facts the rules read are left as they are


def test_what_a_rule_reads_is_stored_an_address_as_its_network() -> None:
    read = frozenset({"context.ip", "context.userAgent", "context.device.ip"})
    stored = stored_facts(VISIT, read)
    expected = {**VISIT, "context.ip": "84.17.52.0", "context.device.ip": "2001:db8:85a3::"}
    del expected["context.userAgentData.mobile"]  # no rule reads it
    assert stored == expected
    assert list(stored) == list(expected)  # in the order the event gave them
    # an address a rule reads that is no address is not stored at all
    assert "context.ip" not in stored_facts({**VISIT, "context.ip": "unknown"}, read)


def test_facts_without_a_network_identity_are_returned_as_they_are() -> None:
    facts = {"type": "page", "page.path": "/pricing", "context.locale": "de-DE"}
    assert stored_facts(facts, frozenset()) is facts
    assert stored_facts(facts, frozenset()) is facts  # the names are known by now
    assert stored_facts({}, frozenset()) == {}


def rules_reading(*tests: dict[str, Any]) -> RuleSet:
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    document["version"] = "test-ip"
    document["rules"] += [
        {"id": f"network-{n}", "group": "intent", "points": 5, "reason": "from the office",
         "when": test}
        for n, test in enumerate(tests)
    ]  # fmt: skip
    return RuleSet.model_validate(document)


def test_the_rules_read_facts_are_worked_out_once_per_rule_set() -> None:
    assert DEFAULT.personal_facts_read == frozenset()
    assert {"event", "profile.seniority"} <= DEFAULT.fields_read
    rules = rules_reading(
        {"all": [{"field": "context.ip", "regex": r"^84\.17\.52\."},
                 {"not": {"field": "context.userAgent", "contains": "bot"}}]},
        {"field": "event", "equals": "Demo Requested"},
    )  # fmt: skip
    assert rules.personal_facts_read == frozenset({"context.ip", "context.userAgent"})
    assert rules.personal_facts_read is rules.personal_facts_read  # cached
    assert personal_facts_read(["context.ip", "page.path", "count:x"]) == {"context.ip"}


def test_the_rules_read_the_full_address_of_the_live_event() -> None:
    """A rule on a whole address holds on the live event; on the stored (truncated) facts, as a
    replay reads them, only a rule on the network does."""
    rules = rules_reading(
        {"field": "context.ip", "equals": "84.17.52.103"},
        {"field": "context.ip", "regex": r"^84\.17\.52\."},
    )
    event = track("Newsletter Signup", context={"ip": "84.17.52.103"})
    facts = {k: v for k, v in call_facts_of(event).items() if v is not None}

    def awarded(facts: dict[str, Any]) -> set[str]:
        result = score_event(rules, ScoreState(), facts, at=event.timestamp,
                             message_id="m1", behaviour=True, profile=False)  # fmt: skip
        return {line.rule_id for line in result.lines if line.rule_id.startswith("network")}

    assert awarded(facts) == {"network-0", "network-1"}
    assert awarded(stored_facts(facts, rules.personal_facts_read)) == {"network-1"}


def test_the_facts_catalogue_offers_no_value_of_a_network_identity() -> None:
    sample = [
        (f"lead-{n}", {"event": "Demo Requested", "context.ip": "84.17.52.0",
                       "context.clientIp": "84.17.52.0", "context.userAgentData.platform": "Linux",
                       "context.locale": "en-US"})
        for n in range(5)
    ]  # fmt: skip
    catalogue = {fact.field: fact for fact in facts_seen(sample)}
    assert set(catalogue) == {"event", "context.ip", "context.clientIp",
                              "context.userAgentData.platform", "context.locale"}  # fmt: skip
    for field in ("context.ip", "context.clientIp", "context.userAgentData.platform"):
        assert catalogue[field].values == ()
        assert catalogue[field].messages == 5
    assert catalogue["context.locale"].values == ("en-US",)
    assert catalogue["event"].values == ("Demo Requested",)
