"""The pure parts of the console's people (`services.console.people`): the role a single
sign-on's claims give, what a role may do, and local passwords (argon2)."""

from __future__ import annotations

from typing import Any

import pytest

from services.console import people
from services.console.config import ROLES, Role
from services.console.people import (
    Person,
    hash_password,
    new_password,
    password_matches,
    role_from_claims,
)

MAPPING: dict[str, Role] = {
    "leadflow-viewers": "viewer",
    "leadflow-editors": "editor",
    "leadflow-admins": "admin",
}


@pytest.mark.parametrize(
    ("claims", "default", "role"),
    [
        ({"groups": "leadflow-admins"}, "viewer", "admin"),  # a string claim
        ({"groups": ["staff", "leadflow-editors"]}, "viewer", "editor"),  # a list claim
        (
            {"groups": ["leadflow-viewers", "leadflow-admins", "leadflow-editors"]},
            "viewer",
            "admin",  # the highest mapped role wins, wherever it is listed
        ),
        ({"groups": ["leadflow-editors", "leadflow-viewers"]}, None, "editor"),
        ({"groups": ["leadflow-viewers"]}, "editor", "viewer"),  # a mapped value beats default
        ({"groups": ["staff", "everyone"]}, "viewer", "viewer"),  # nothing mapped: the default
        ({"groups": "staff"}, "editor", "editor"),
        ({"groups": []}, "viewer", "viewer"),
        ({}, "viewer", "viewer"),  # no such claim: the default
        ({"groups": ["staff"]}, None, None),  # default None: refused
        ({}, None, None),
        ({"groups": None}, None, None),
        ({"groups": 7}, "viewer", "viewer"),  # neither a string nor a list
        ({"groups": {"leadflow-admins": True}}, None, None),  # a mapping is not a list
        ({"groups": [1, None, ["leadflow-admins"], "leadflow-editors"]}, None, "editor"),
        ({"groups": "LEADFLOW-ADMINS"}, None, None),  # values are matched exactly
        ({"roles": "leadflow-admins"}, "viewer", "viewer"),  # another claim than configured
    ],
)
def test_the_role_single_sign_on_gives(
    claims: dict[str, Any], default: Role | None, role: Role | None
) -> None:
    assert role_from_claims(claims, claim="groups", roles=MAPPING, default=default) == role


def test_the_claim_read_is_the_configured_one() -> None:
    claims = {"groups": ["leadflow-admins"], "roles": ["leadflow-viewers"]}

    assert role_from_claims(claims, claim="roles", roles=MAPPING, default=None) == "viewer"


def test_an_empty_mapping_gives_everyone_the_default() -> None:
    assert (
        role_from_claims({"groups": "leadflow-admins"}, claim="groups", roles={}, default=None)
        is None
    )


@pytest.mark.parametrize("held", ROLES)
@pytest.mark.parametrize("asked", ROLES)
def test_a_role_may_do_what_the_ones_below_it_may(held: Role, asked: Role) -> None:
    person = Person("ada", "Ada Lovelace", held)

    assert person.may(asked) is (ROLES.index(held) >= ROLES.index(asked))


def test_roles_go_viewer_editor_admin() -> None:
    assert ROLES == ("viewer", "editor", "admin")
    admin, viewer = Person("a", "A", "admin"), Person("v", "V", "viewer")
    assert [admin.may(role) for role in ROLES] == [True, True, True]
    assert [viewer.may(role) for role in ROLES] == [True, False, False]


# --- passwords -----------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(PASSWORD)


def test_the_right_password_matches(stored: str) -> None:
    assert password_matches(stored, PASSWORD)


@pytest.mark.parametrize(
    "attempt",
    [
        "correct horse battery stapl",  # one character short
        "Correct horse battery staple",
        PASSWORD + " ",
        "",
    ],
)
def test_a_wrong_password_does_not_match(stored: str, attempt: str) -> None:
    assert not password_matches(stored, attempt)


@pytest.mark.parametrize("attempt", [PASSWORD, "", "anything"])
def test_an_account_without_a_password_never_matches(attempt: str) -> None:
    assert not password_matches(None, attempt)


def test_an_account_without_a_password_does_not_match_even_the_stand_in_hashs_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An account without a password is checked against a stand-in hash (the same work as a real
    # check); guessing the stand-in's random password must not sign anyone in either.
    monkeypatch.setattr(people, "_DUMMY_HASH", hash_password(PASSWORD))

    assert not password_matches(None, PASSWORD)


@pytest.mark.parametrize("bad_hash", ["", "not-a-hash", "$argon2id$v=19$m=65536,t=3,p=4$broken"])
def test_a_stored_hash_that_is_not_one_never_matches(bad_hash: str) -> None:
    assert not password_matches(bad_hash, PASSWORD)


def test_a_hash_is_argon2id_salted_and_never_the_password(stored: str) -> None:
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert hash_password(PASSWORD) != stored  # a new salt each time


def test_a_new_password_is_long_and_random() -> None:
    first, second = new_password(), new_password()

    assert len(first) >= 20
    assert first != second
