"""Write keys hashed at rest with scopes, the source bound to the key, limits per address and
per key, throttled failed authentications, and the pace of a slow body (services/ingest)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from services.ingest.admission import Admission, Refusal
from services.ingest.auth import Caller, _main
from services.ingest.body import MinimumPace
from services.ingest.config import IngestSettings, WriteKey
from services.ingest.rate_limit import RateLimits
from shared.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit

WEBSITE, SERVER, LISTS = "wk-website-7f3a", "wk-server-91c2", "wk-lists-0b4e"


def settings(**overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "write_keys": {
            "website": WriteKey.of(WEBSITE, source="website", scopes=["track"]),
            "server": WriteKey.of(
                SERVER, source="backend", scopes=["track"], limit_per_address=False
            ),
            "lists": WriteKey.of(LISTS, source="crm-lists", scopes=["import"]),
        },
        "rate_limit_events_per_s": 1,
        "rate_limit_burst": 100,
        "rate_limit_per_address_events_per_s": 1,
        "rate_limit_per_address_burst": 10,
        "auth_failures_per_s": 1,
        "auth_failures_burst": 3,
    }
    return IngestSettings(**(values | overrides))


def caller(admission: Admission, key: str, scope: Any = "track") -> Caller:
    found = admission.authenticate(key, scope=scope, address="198.51.100.1", now=0.0)
    assert isinstance(found, Caller), found
    return found


def test_the_settings_hold_only_each_keys_hash() -> None:
    configured = settings()

    assert WEBSITE not in configured.model_dump_json()
    with pytest.raises(ValidationError, match="key_sha256"):
        IngestSettings(write_keys={"website": {"key": WEBSITE, "source": "website"}})


def test_a_key_configured_in_clear_is_refused_without_being_repeated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADFLOW_INGEST_WRITE_KEYS", json.dumps({WEBSITE: "website"}))

    with pytest.raises(SettingsError) as refused:
        load_settings(IngestSettings)

    assert "LEADFLOW_INGEST_WRITE_KEYS" in str(refused.value)
    assert WEBSITE not in str(refused.value)


def test_a_well_known_key_is_refused_outside_the_local_stack() -> None:
    local_dev = {
        "local": WriteKey.of("local-dev-key", source="local-dev", scopes=["track", "import"])
    }

    with pytest.raises(ValidationError, match="well-known key 'local-dev-key'"):
        IngestSettings(write_keys=local_dev)
    assert IngestSettings(write_keys=local_dev, local_stack=True).write_keys == local_dev


def test_new_key_prints_a_key_and_an_entry_that_configures_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _main(["new-key", "website", "--source", "website", "--scope", "track"]) == 0
    lines = capsys.readouterr().out.splitlines()
    key = lines[0].rsplit(" ", 1)[1]
    entry = json.loads(lines[1].split(": ", 1)[1])

    admission = Admission(IngestSettings(write_keys=entry))
    assert len(key) >= 43
    assert caller(admission, key).source == "website"


def test_a_website_key_may_not_import_nor_read_reports() -> None:
    admission = Admission(settings())

    refused = admission.authenticate(WEBSITE, scope="import", address="a", now=0.0)

    assert isinstance(refused, Refusal)
    assert (refused.status, "scope 'import'" in refused.reason) == (403, True)
    assert caller(admission, LISTS, scope="import").source == "crm-lists"


def test_one_address_cannot_drain_a_public_keys_bucket() -> None:
    admission = Admission(settings())
    website = caller(admission, WEBSITE)

    first = admission.admit(website, address="203.0.113.9", events=10, now=0.0)
    again = admission.admit(website, address="203.0.113.9", events=1, now=0.0)
    another_visitor = admission.admit(website, address="203.0.113.10", events=10, now=0.0)

    assert first is None
    assert another_visitor is None
    assert again is not None
    assert (again.status, again.retry_after) == (429, 1)
    assert "client address" in again.reason


def test_a_server_keys_senders_share_only_the_keys_bucket() -> None:
    admission = Admission(settings())
    server = caller(admission, SERVER)

    assert admission.admit(server, address="10.0.0.5", events=100, now=0.0) is None
    refused = admission.admit(server, address="10.0.0.5", events=1, now=0.0)

    assert refused is not None
    assert "write key" in refused.reason


def test_failed_authentications_are_throttled_per_address_but_never_a_valid_key() -> None:
    admission = Admission(settings())
    answers = [
        admission.authenticate("guess", scope="track", address="a", now=0.0) for _ in range(5)
    ]

    statuses = [answer.status for answer in answers if isinstance(answer, Refusal)]
    assert statuses == [401, 401, 401, 429, 429]
    assert admission.before_reading("a", now=0.0) is not None, "no body read for it"
    assert admission.before_reading("b", now=0.0) is None
    assert isinstance(admission.authenticate(WEBSITE, scope="track", address="a", now=0.0), Caller)
    assert admission.before_reading("a", now=1.0) is None, "it refills"


def test_an_import_waits_for_its_keys_bucket_instead_of_being_refused() -> None:
    admission = Admission(settings())
    lists = caller(admission, LISTS, scope="import")

    assert admission.pace(lists, events=100, now=0.0) == 0.0
    assert admission.pace(lists, events=50, now=0.0) == pytest.approx(50.0)
    tracking_meanwhile = admission.admit(lists, address="x", events=1, now=10.0)
    assert tracking_meanwhile is not None
    assert tracking_meanwhile.status == 429


def test_rate_limit_buckets_are_bounded_dropping_the_least_recently_used() -> None:
    limits = RateLimits(rate=1, burst=2, max_buckets=3)
    assert limits.retry_after("kept", events=2, now=0.0) is None
    for address in ("a", "b"):
        limits.retry_after(address, events=1, now=0.0)
    limits.retry_after("kept", events=0, now=0.0)  # used again: the most recent
    limits.retry_after("c", events=1, now=0.0)

    assert len(limits) == 3
    assert limits.retry_after("kept", events=1, now=0.0) == 1, "still dry: it was kept"
    assert limits.retry_after("a", events=2, now=0.0) is None, "dropped, so full again"


@pytest.mark.parametrize(
    ("received", "elapsed_s", "too_slow"),
    [
        pytest.param(0, 10.0, False, id="within-the-grace"),
        pytest.param(40_000, 30.0, False, id="fast-enough"),
        pytest.param(10, 31.0, True, id="a-byte-now-and-then"),
        pytest.param(29_999, 30.5, True, id="just-below"),
    ],
)
def test_an_upload_must_keep_a_minimum_pace_after_its_grace(
    received: int, elapsed_s: float, too_slow: bool
) -> None:
    pace = MinimumPace(bytes_per_s=1000, grace_s=30)

    reason = pace.shortfall(received=received, elapsed_s=elapsed_s)

    assert (reason is not None) == too_slow
