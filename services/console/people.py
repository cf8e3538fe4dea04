"""The people who use the console: accounts, roles, sessions and the audit log.

- **Roles** (`config.ROLES`): viewer < editor < admin; a role may do what the ones below may.
- **Local accounts**: a username and a password hashed with argon2id (`argon2-cffi`'s defaults,
  the RFC 9106 second recommended profile); for development and a first admin. `python -m
  services.console add-person` makes one and prints its password once; nothing keeps it.
- **Single sign-on** (OpenID Connect, `web.sign_in`): a person is matched by the provider's
  subject; the first sign-in creates the account, and every sign-in sets the role the claims
  give (`OidcSettings`).
- **Sessions**: a random id in the signed session cookie; only its SHA-256 is stored, with its
  expiry. Signing out deletes it; disabling a person or changing their role takes effect on
  their next request (the role is read from the account each time).
- **Audit**: who signed in and out, changed whom, and looked up which lead (by id).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.console.config import ROLES, Role
from shared.db import execute, fetch, fetchrow
from shared.secret_hashes import secret_hash

_HASHER = PasswordHasher()
# Verified when the username is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Person:
    username: str
    display_name: str
    role: Role

    def may(self, role: Role) -> bool:
        """Whether this person holds `role` or a higher one."""
        return ROLES.index(self.role) >= ROLES.index(role)


def new_password() -> str:
    return secrets.token_urlsafe(15)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the account has a password (an SSO-only account has none)."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def add_local_person(
    session: AsyncSession, *, username: str, role: Role, password: str, display_name: str = ""
) -> bool:
    """Create a local account; False when the username is taken."""
    touched = await execute(
        session,
        "INSERT INTO console.people (username, display_name, role, password_hash)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (username) DO NOTHING",
        username,
        display_name or username,
        role,
        hash_password(password),
    )
    return touched == 1


async def set_password(session: AsyncSession, *, username: str, password: str) -> bool:
    touched = await execute(
        session,
        "UPDATE console.people SET password_hash = $2 WHERE username = $1",
        username,
        hash_password(password),
    )
    return touched == 1


async def set_role(session: AsyncSession, *, username: str, role: Role) -> bool:
    touched = await execute(
        session, "UPDATE console.people SET role = $2 WHERE username = $1", username, role
    )
    return touched == 1


async def set_disabled(session: AsyncSession, *, username: str, disabled: bool) -> bool:
    touched = await execute(
        session,
        "UPDATE console.people SET disabled = $2 WHERE username = $1",
        username,
        disabled,
    )
    if disabled:
        await execute(session, "DELETE FROM console.sessions WHERE username = $1", username)
    return touched == 1


async def check_password(session: AsyncSession, *, username: str, password: str) -> Person | None:
    """The person, when `username` names an enabled local account and `password` is its own."""
    row = await fetchrow(
        session,
        "SELECT username, display_name, role, password_hash, disabled FROM console.people"
        " WHERE username = $1",
        username,
    )
    matches = password_matches(row["password_hash"] if row is not None else None, password)
    if row is None or not matches or row["disabled"]:
        return None
    return Person(row["username"], row["display_name"], row["role"])


async def person_from_sso(
    session: AsyncSession, *, subject: str, email: str | None, name: str | None, role: Role
) -> Person | None:
    """The account of the provider's `subject` (created at the first sign-in; the username is
    the email, else the subject), with the role the claims give now; None when disabled."""
    username = email or subject
    row = await fetchrow(
        session,
        """
        INSERT INTO console.people (username, display_name, role, oidc_subject)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (oidc_subject) DO UPDATE SET role = EXCLUDED.role,
                                                 display_name = EXCLUDED.display_name
        RETURNING username, display_name, role, disabled
        """,
        username,
        name or username,
        role,
        subject,
    )
    if row is None or row["disabled"]:
        return None
    return Person(row["username"], row["display_name"], row["role"])


async def open_session(
    session: AsyncSession, person: Person, *, at: datetime, max_age: timedelta
) -> str:
    """A new session for `person`; returns its id (for the cookie; only its hash is stored)."""
    session_id = secrets.token_urlsafe(32)
    await execute(
        session,
        "INSERT INTO console.sessions (session_sha256, username, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4)",
        secret_hash(session_id),
        person.username,
        at,
        at + max_age,
    )
    await execute(
        session,
        "UPDATE console.people SET last_signed_in_at = $2 WHERE username = $1",
        person.username,
        at,
    )
    return session_id


async def person_of_session(
    session: AsyncSession, session_id: str, *, at: datetime
) -> Person | None:
    """Who holds the session `session_id`: None when it is unknown, expired or its person is
    disabled."""
    row = await fetchrow(
        session,
        "SELECT person.username, person.display_name, person.role FROM console.sessions"
        " JOIN console.people AS person USING (username)"
        " WHERE session_sha256 = $1 AND expires_at > $2 AND NOT person.disabled",
        secret_hash(session_id),
        at,
    )
    return Person(row["username"], row["display_name"], row["role"]) if row else None


async def close_session(session: AsyncSession, session_id: str) -> None:
    await execute(
        session, "DELETE FROM console.sessions WHERE session_sha256 = $1", secret_hash(session_id)
    )


async def forget_expired_sessions(session: AsyncSession, *, at: datetime) -> int:
    return await execute(session, "DELETE FROM console.sessions WHERE expires_at <= $1", at)


async def audit(
    session: AsyncSession,
    *,
    username: str,
    action: str,
    lead_id: str | None = None,
    detail: str = "",
) -> None:
    await execute(
        session,
        "INSERT INTO console.audit (username, action, lead_id, detail) VALUES ($1, $2, $3, $4)",
        username,
        action,
        lead_id,
        detail,
    )


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    username: str
    action: str
    lead_id: str | None
    detail: str


async def audit_log(
    session: AsyncSession, *, lead_id: str | None = None, limit: int = 200
) -> list[AuditEntry]:
    """The newest entries first (of one lead's lookups when `lead_id` is given)."""
    rows = await fetch(
        session,
        "SELECT at, username, action, lead_id, detail FROM console.audit"
        " WHERE $1::text IS NULL OR lead_id = $1 ORDER BY seq DESC LIMIT $2",
        lead_id,
        limit,
    )
    return [AuditEntry(**dict(row)) for row in rows]


async def people(session: AsyncSession) -> list[dict[str, object]]:
    rows = await fetch(
        session,
        "SELECT username, display_name, role, disabled, oidc_subject IS NOT NULL AS sso,"
        " last_signed_in_at FROM console.people ORDER BY username",
    )
    return [dict(row) for row in rows]


def role_from_claims(
    claims: Mapping[str, Any], *, claim: str, roles: Mapping[str, Role], default: Role | None
) -> Role | None:
    """The role an OpenID Connect sign-in gives: the highest role that a value of the claim
    `claim` (a string or a list of them, e.g. groups) maps to in `roles`, else `default`."""
    value = claims.get(claim)
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    mapped = [roles[item] for item in values if isinstance(item, str) and item in roles]
    return max(mapped, key=ROLES.index) if mapped else default
