"""A lead's features: taken as of its cut-off and never after it, counted in windows, free of
personal data, bounded whatever a lead sends, and said in the users' words."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.score.engine.conditions import PROFILE_PREFIXES, facts_of
from services.score.engine.rescoring import HistoryItem, replay
from services.score.engine.ruleset import DEFAULT_RULES_FILE, load_rules
from services.score.engine.scoring import evaluate
from services.score.learning.activity import MAX_KINDS, MAX_RECENT, Activity, kind_of, section_of
from services.score.learning.examples import Example, keep_seconds, lead_example
from services.score.learning.features import (
    MAX_TITLE_WORDS,
    MAX_VALUE,
    activity_features,
    decade_of,
    describe,
    fact_of,
    factor_of,
    picture_features,
)
from services.score.learning.outcomes import OutcomePolicy, SalesOutcome
from tests.unit.builders import account_match, enriched_event, firmographics, profile

LIVE = load_rules(DEFAULT_RULES_FILE)
POLICY = OutcomePolicy()  # cut-off 30 days after the first message, 90-day horizon
WINDOWS = (7.0, 30.0)
FIRST_SEEN = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CUTOFF = FIRST_SEEN + timedelta(days=30)  # no sales outcome before it
NOW = FIRST_SEEN + timedelta(days=400)  # every horizon over: every lead labelled
PICTURE = {
    "profile": profile(seniority="vp", job_function="sales"),
    "firmographics": firmographics(employee_count=850, industry="Software"),
}
_ids = itertools.count()


def message(at: datetime, **call: Any) -> HistoryItem:
    """One message of the lead, with its picture, as score's history keeps it."""
    event = enriched_event(
        message_id=f"m{next(_ids)}", timestamp=at, received_at=at, identified=True,
        **{**PICTURE, **call},
    )  # fmt: skip
    facts = {key: value for key, value in facts_of(event).items() if value is not None}
    return HistoryItem(event.message_id, at, facts, behaviour=call.get("type") != "identify")


def day(n: float) -> datetime:
    return FIRST_SEEN + timedelta(days=n)


def history() -> list[HistoryItem]:
    """A VP who came from a campaign, read pricing twice and attended a webinar in her month."""
    campaign = {"campaign": {"name": "Spring", "source": "linkedin", "medium": "paid"}}
    return [
        message(day(0), type="identify", context=campaign),
        message(day(2), type="page", properties={"path": "/pricing"}),
        message(day(9), type="track", event="Webinar Attended"),
        message(day(25), type="page", properties={"path": "/pricing/enterprise"}),
    ]


def example(items: list[HistoryItem], outcomes: tuple[SalesOutcome, ...] = ()) -> Example:
    found = lead_example(
        items=items, outcomes=outcomes, mql_at=None, rules=LIVE, policy=POLICY,
        windows_days=WINDOWS, now=NOW,
    )  # fmt: skip
    assert isinstance(found, Example), found
    return found


# --- leakage: nothing at or after the cut-off -----------------------------------------------

LATE_MESSAGES = [
    pytest.param({"type": "track", "event": "Demo Requested"}, id="demo-request"),
    pytest.param({"type": "page", "properties": {"path": "/pricing"}}, id="a-page-read-before"),
    pytest.param({"type": "track", "event": "Pricing Calculator Used"}, id="a-new-kind"),
    pytest.param({"type": "screen", "name": "Dashboard"}, id="a-screen"),
    pytest.param(
        {"type": "identify", "profile": profile(seniority="student/intern", title="Student")},
        id="a-profile-change",
    ),
    pytest.param(
        {"type": "identify", "firmographics": firmographics(employee_count=4, industry="Retail")},
        id="firmographics-change",
    ),
    pytest.param(
        {"type": "identify", "context": {"import": {"list": "tradeshow-2026"}}},
        id="an-import-list",
    ),
]


@pytest.mark.parametrize("call", LATE_MESSAGES)
@pytest.mark.parametrize(
    "after",
    [
        timedelta(0),  # at the cut-off itself
        timedelta(hours=1),
        timedelta(days=60),  # long after, within the horizon
    ],
)
def test_a_message_at_or_after_the_cut_off_changes_no_feature(
    call: dict[str, Any], after: timedelta
) -> None:
    alone = example(history())
    late = example([*history(), message(CUTOFF + after, **call)])
    early = example([*history(), message(CUTOFF - timedelta(days=1), **call)])

    assert late.features == alone.features
    assert (late.rules_total, late.label) == (alone.rules_total, alone.label)
    assert early.features != alone.features  # the same message before the cut-off counts


def test_a_message_after_the_first_sales_outcome_changes_no_feature() -> None:
    """Once sales works a lead, what it does next is sales' doing: the cut-off moves there."""
    accepted = (SalesOutcome("accepted", "applied", day(10)),)
    demo = {"type": "track", "event": "Demo Requested"}
    alone = example(history()[:3], accepted)

    assert alone.label.cutoff == day(10)
    assert example([*history()[:3], message(day(12), **demo)], accepted).features == alone.features
    assert example([*history()[:3], message(day(8), **demo)], accepted).features != alone.features


# --- what it did: behaviour windows ---------------------------------------------------------


def observed(*days_before: float, kind: str = "Webinar Attended") -> dict[str, float]:
    """The features, at the cut-off, of occurrences of one event `days_before` it."""
    activity = Activity()
    for days in days_before:
        activity.observe(
            {"type": "track", "event": kind}, at=CUTOFF - timedelta(days=days), behaviour=True,
            keep_s=keep_seconds(WINDOWS),
        )  # fmt: skip
    return activity_features(activity, at=CUTOFF, windows_days=WINDOWS)


@pytest.mark.parametrize(
    ("days_before", "windows"),
    [
        (3, {"@7d", "@30d", "@ever"}),
        (20, {"@30d", "@ever"}),
        (40, {"@ever"}),
        (0, {"@7d", "@30d", "@ever"}),  # at the very time the features are taken
        (7, {"@30d", "@ever"}),  # a window holds what came after its start
        (30, {"@ever"}),
    ],
)
def test_an_occurrence_counts_in_the_windows_it_falls_in(
    days_before: float, windows: set[str]
) -> None:
    assert observed(days_before) == {f"event:webinar attended{w}": 1.0 for w in windows}


def test_a_window_is_valued_log2_of_one_plus_its_count() -> None:
    features = observed(1, 2, 3, 10, 11, 12, 13, 45)  # 3 in the week, 7 in the month, 8 ever

    assert features == {
        "event:webinar attended@7d": 2.0,
        "event:webinar attended@30d": 3.0,
        "event:webinar attended@ever": math.log2(9),
    }


def test_an_occurrence_older_than_the_longest_window_still_counts_ever() -> None:
    """A later occurrence pushes it out of the kept times, not out of the total."""
    features = observed(40, 1)

    assert features == {
        "event:webinar attended@7d": 1.0,
        "event:webinar attended@30d": 1.0,
        "event:webinar attended@ever": math.log2(3),
    }


def test_live_scoring_may_take_only_the_kinds_its_model_weighs() -> None:
    activity = Activity()
    for item in history():
        activity.observe(item.facts, at=item.at, behaviour=item.behaviour,
                         keep_s=keep_seconds(WINDOWS))  # fmt: skip
    every = activity_features(activity, at=CUTOFF, windows_days=WINDOWS)
    some = activity_features(activity, at=CUTOFF, windows_days=WINDOWS, kinds={"page:/pricing"})

    assert "event:webinar attended@ever" in every
    assert some == {name: value for name, value in every.items() if not name.startswith("event:")}


# --- where it came from, and what the rules say ---------------------------------------------


def test_a_lead_example_holds_its_origin_behaviour_picture_and_rules() -> None:
    found = example(history())
    features = found.features
    card = evaluate(LIVE, replay(LIVE, history()), CUTOFF)

    assert {
        "origin.source=website", "origin.campaign.name=spring",
        "origin.campaign.source=linkedin", "origin.campaign.medium=paid",
        "profile.seniority=vp", "profile.title~vp", "firmographics.industry=software",
        "firmographics.employee_count~100-999",
    } <= features.keys()  # fmt: skip
    assert features["page:/pricing@ever"] == math.log2(3)  # /pricing and /pricing/enterprise
    assert features["page:/pricing@7d"] == 1.0  # day 25 of 30
    assert features["event:webinar attended@30d"] == 1.0
    assert "event:webinar attended@7d" not in features  # day 9 of 30
    assert features["rule:pricing-page"] == math.log2(3)  # awarded twice
    assert features["rule:webinar-attended"] == 1.0
    assert features["rule:vp"] == 1.0  # a fit rule that holds
    assert (features["rules.fit"], features["rules.behaviour"]) == (
        card.fit / 100, card.behaviour / 100,
    )  # fmt: skip
    assert found.rules_total == card.total


def test_only_the_first_origin_is_kept_and_each_import_list() -> None:
    activity = Activity()
    for source, listed in [("import", "tradeshow"), ("website", "purchased"), ("api", "tradeshow")]:
        facts = {"type": "identify", "source": source, "context.import.list": listed}
        activity.observe(facts, at=CUTOFF, behaviour=False, keep_s=keep_seconds(WINDOWS))

    assert activity_features(activity, at=CUTOFF, windows_days=WINDOWS) == {
        "origin.source=import": 1.0,
        "origin.import_list=tradeshow": 1.0,
        "origin.import_list=purchased": 1.0,
    }


# --- who the lead is ------------------------------------------------------------------------

SENT_TO_ENRICH = enriched_event(
    type="identify",
    identified=True,
    profile=profile(phone="+33612345678", seniority="vp"),
    firmographics=firmographics(),
    account=account_match(
        owner_id="rep-grace", owner_email="grace@example.com",
        evidence="email domain northwind-logistics.com",
    ),
)  # fmt: skip
PICTURE_FACTS = {
    k: v for k, v in facts_of(SENT_TO_ENRICH).items() if k.startswith(PROFILE_PREFIXES)
}


@pytest.mark.parametrize(
    "fact",
    [
        "profile.email",
        "profile.email_domain",
        "profile.first_name",
        "profile.last_name",
        "profile.phone",
        "profile.company",
        "profile.company_domain",
        "firmographics.domain",
        "firmographics.company_name",
        "account.account_id",
        "account.name",
        "account.owner_id",  # the account owner: a person
        "account.owner_email",
        "account.evidence",  # "email domain northwind-logistics.com"
    ],
)
def test_a_fact_that_names_a_person_or_a_company_never_becomes_a_feature(fact: str) -> None:
    """A model is a document people read and copy: it holds no personal data."""
    value = PICTURE_FACTS[fact]
    features = picture_features(PICTURE_FACTS)

    assert isinstance(value, str)
    assert value
    assert not [name for name in features if name.startswith((f"{fact}=", f"{fact}~"))]
    assert not [name for name in features if value.casefold() in name]
    assert "profile.seniority=vp" in features  # the picture's other facts are there


@pytest.mark.parametrize(
    ("picture", "features"),
    [
        ({"profile.seniority": "VP"}, {"profile.seniority=vp"}),  # text casefolded
        (
            {"firmographics.industry": " Financial  Services "},
            {"firmographics.industry=financial services"},
        ),
        ({"firmographics.employee_count": 850}, {"firmographics.employee_count~100-999"}),
        ({"account.score": 72.5}, {"account.score~10-99"}),
        ({"firmographics.annual_revenue_usd": 0}, {"firmographics.annual_revenue_usd~0"}),
        ({"profile.free_mail": True}, {"profile.free_mail=true"}),
        ({"profile.free_mail": False}, set()),  # a flag that does not hold says nothing
        ({"profile.country": None}, set()),
        ({"profile.country": "  "}, set()),
        ({"event": "Demo Requested", "page.path": "/pricing"}, set()),  # no picture facts
        ({"profile.job_function": "x" * 100}, {f"profile.job_function={'x' * MAX_VALUE}"}),
    ],
)
def test_each_picture_fact_is_one_feature_per_value(
    picture: dict[str, Any], features: set[str]
) -> None:
    assert picture_features(picture) == dict.fromkeys(features, 1.0)


@pytest.mark.parametrize(
    ("title", "words"),
    [
        ("VP of Sales", ["vp", "sales"]),  # "of": a stopword
        ("Head of Marketing and Growth", ["head", "marketing", "growth"]),
        ("Directeur de la Stratégie", ["directeur", "stratégie"]),
        ("Leiter der Entwicklung und Forschung", ["leiter", "entwicklung", "forschung"]),
        ("Sales Manager, Sales", ["sales", "manager"]),  # once each
        ("C.T.O.", []),  # single letters are no words
        ("Senior Engineer II (3D)", ["senior", "engineer", "ii"]),
        ("a b c d e f g h i j k l m n o p", []),
        (
            "one two three four five six seven eight nine ten",
            ["one", "two", "three", "four", "five", "six", "seven", "eight"],
        ),
    ],
)
def test_a_title_gives_one_feature_per_word(title: str, words: list[str]) -> None:
    assert len(words) <= MAX_TITLE_WORDS
    assert picture_features({"profile.title": title}) == {
        f"profile.title~{word}": 1.0 for word in words
    }


@pytest.mark.parametrize(
    ("number", "decade"),
    [
        (0, "0"),
        (0.5, "0"),
        (1, "1-9"),
        (9, "1-9"),
        (9.99, "1-9"),
        (10, "10-99"),
        (999, "100-999"),
        (1000, "1000-9999"),
        (1_000_000, "1000000-9999999"),
        (-1, "<0"),
        (-0.01, "<0"),
    ],
)
def test_a_number_falls_in_its_decade(number: float, decade: str) -> None:
    assert decade_of(number) == decade


# --- behaviour kinds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "section"),
    [
        ("/pricing/enterprise?x=1", "/pricing"),
        ("/pricing", "/pricing"),
        ("/Docs/API/v2", "/docs"),  # casefolded
        ("/blog#top", "/blog"),
        ("/?utm_source=x", "/"),
        ("/", "/"),
        ("", "/"),
        ("pricing/", "/pricing"),
        ("  /careers/jobs  ", "/careers"),
    ],
)
def test_a_page_counts_by_its_first_path_segment(path: str, section: str) -> None:
    assert section_of(path) == section


@pytest.mark.parametrize(
    ("facts", "kind"),
    [
        ({"type": "track", "event": "Demo  Requested"}, "event:demo requested"),
        ({"type": "page", "page.path": "/docs/start", "name": "Docs"}, "page:/docs"),
        ({"type": "page", "name": "Pricing"}, "page:pricing"),  # no path: its name
        ({"type": "screen", "name": "Dashboard"}, "screen:dashboard"),
        ({"type": "track", "event": "x" * 200}, "event:" + "x" * 80),  # a kind, not a payload
        ({"type": "track", "event": "  "}, None),
        ({"type": "page"}, None),
        ({"type": "identify", "event": None}, None),
        ({"type": "group"}, None),
    ],
)
def test_the_behaviour_kind_of_a_call(facts: dict[str, Any], kind: str | None) -> None:
    assert kind_of(facts) == kind


# --- bounded ----------------------------------------------------------------------------------


def test_a_lead_inventing_event_names_keeps_at_most_max_kinds() -> None:
    activity = Activity()
    keep_s = keep_seconds(WINDOWS)
    for n in range(MAX_KINDS + 50):
        activity.observe({"type": "track", "event": f"made up {n}"}, at=CUTOFF, behaviour=True,
                         keep_s=keep_s)  # fmt: skip
    activity.observe({"type": "track", "event": "made up 0"}, at=CUTOFF, behaviour=True,
                     keep_s=keep_s)  # fmt: skip

    assert len(activity.totals) == len(activity.recent) == MAX_KINDS
    assert "event:made up 210" not in activity.totals
    assert activity.totals["event:made up 0"] == 2  # a kind kept still counts


def test_a_kind_keeps_at_most_max_recent_times_and_counts_every_occurrence() -> None:
    activity = Activity()
    occurrences = MAX_RECENT + 150
    for n in range(occurrences):
        activity.observe({"type": "track", "event": "Email Opened"},
                         at=CUTOFF - timedelta(minutes=n), behaviour=True,
                         keep_s=keep_seconds(WINDOWS))  # fmt: skip
    features = activity_features(activity, at=CUTOFF, windows_days=WINDOWS)

    assert len(activity.recent["event:email opened"]) == MAX_RECENT
    assert features["event:email opened@ever"] == math.log2(1 + occurrences)
    assert features["event:email opened@7d"] == math.log2(1 + MAX_RECENT)  # saturates


def test_times_older_than_the_longest_window_are_dropped() -> None:
    activity = Activity()
    for days in (90, 60, 45, 20, 1):
        activity.observe({"type": "page", "page.path": "/blog"}, at=CUTOFF - timedelta(days=days),
                         behaviour=True, keep_s=keep_seconds(WINDOWS))  # fmt: skip

    assert activity.recent["page:/blog"] == [
        (CUTOFF - timedelta(days=days)).timestamp() for days in (20, 1)
    ]
    assert activity.totals["page:/blog"] == 5


def test_an_activity_read_back_from_its_json_gives_the_same_features() -> None:
    activity = Activity()
    for item in history():
        activity.observe(item.facts, at=item.at, behaviour=item.behaviour,
                         keep_s=keep_seconds(WINDOWS))  # fmt: skip
    stored = json.loads(json.dumps(activity.to_json()))
    again = Activity.from_json(stored)

    assert again == activity
    assert activity_features(again, at=CUTOFF, windows_days=WINDOWS) == activity_features(
        activity, at=CUTOFF, windows_days=WINDOWS
    )
    assert Activity.from_json({}) == Activity()


# --- in the users' words --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("feature", "words"),
    [
        ("event:demo requested@7d", "asked for a demo"),  # the rule's own reason
        ("event:demo request submitted@ever", "asked for a demo"),  # the same rule's other event
        ("event:webinar registered@30d", "did 'webinar registered'"),  # no rule names it
        ("page:/pricing@ever", "visited /pricing"),
        ("screen:dashboard@7d", "viewed screen 'dashboard'"),
        ("rule:vp", "rule vp: VP, a budget holder"),
        ("rule:retired", "rule retired"),  # a rule the rules no longer hold
        ("rules.fit", "fit score under the current rules"),
        ("rules.behaviour", "behaviour score under the current rules"),
        ("origin.import_list=purchased-list", "came from import list 'purchased-list'"),
        ("origin.campaign.name=spring", "came from campaign 'spring'"),
        ("origin.source=website", "came from source 'website'"),
        ("profile.title~student", "title contains 'student'"),
        ("firmographics.employee_count~100-999", "employee count 100-999"),
        ("profile.seniority=vp", "seniority is vp"),
        ("profile.free_mail=true", "free mail"),
    ],
)
def test_a_feature_is_described_in_the_users_words(feature: str, words: str) -> None:
    assert describe(feature, LIVE) == words


def test_without_rules_a_behaviour_is_described_by_what_the_lead_did() -> None:
    assert describe("event:demo requested@7d") == "did 'demo requested'"
    assert describe("rule:vp") == "rule vp"


@pytest.mark.parametrize(
    "kind", ["event:demo requested", "event:webinar registered", "page:/docs", "screen:home"]
)
def test_a_behaviours_windows_share_one_window_free_description(kind: str) -> None:
    descriptions = {describe(f"{kind}{window}", LIVE) for window in ("@ever", "@7d", "@30d")}

    assert len(descriptions) == 1
    assert not [d for d in descriptions if "@" in d or "7d" in d or "30d" in d]


@pytest.mark.parametrize(
    ("feature", "fact", "factor"),
    [
        ("profile.seniority=vp", "profile.seniority", "profile.seniority=vp"),
        ("profile.title~student", "profile.title", "profile.title~student"),
        (
            "firmographics.employee_count~100-999",
            "firmographics.employee_count",
            "firmographics.employee_count~100-999",
        ),
        ("origin.import_list=a=b", "origin.import_list", "origin.import_list=a=b"),
        ("event:demo requested@7d", "event:demo requested", "event:demo requested"),
        ("event:a=b~c@ever", "event:a=b~c", "event:a=b~c"),  # a name with marks in it
        ("page:/docs@30d", "page:/docs", "page:/docs"),
        ("screen:home", "screen:home", "screen:home"),
        ("rule:vp", "rule:vp", "rule:vp"),
        ("rules.fit", "rules.fit", "rules.fit"),
    ],
)
def test_the_fact_and_the_factor_of_a_feature(feature: str, fact: str, factor: str) -> None:
    assert (fact_of(feature), factor_of(feature)) == (fact, factor)
