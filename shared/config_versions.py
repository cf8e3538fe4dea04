"""Versioned configuration: documents a service owns, kept in its own PostgreSQL schema, one
version live per kind.

A *kind* is one sort of document (a scoring model, scoring rules, a routing configuration); a
*version* is one saved document of a kind, with its author, time, note and parent (the version it
was derived from), never changed or deleted once saved. One version per kind is *live*;
*publishing* makes a version live and records it in the publication history with the version it
replaced. Rolling back is publishing an earlier version. `VersionedConfig` is the interface, one
instance per kind; `config_versions_ddl` (and `config_imports_ddl` for `adopt`) is what a
service's migration runs to create the tables.

Two sources, one history:

- **People through an API** (the console's editors): a draft starts from the live version,
  is saved (validated by `parse`, so a draft that fails validation is never a version) and
  published with `expected_live` set to the version it started from. If someone published in
  between, `LiveChanged` refuses it: nothing is silently overwritten.
- **A file kept in git**, read at start (`adopt`): a file whose content was never adopted is
  saved and published (the file changed: it wins); a file adopted before changes nothing (what
  people published since stays live). Both are versions with an author, a note and a parent.

How a consumer follows publications (every replica, within seconds, no restart)::

    async def __call__(self, messages, session):                    # one batch, one transaction
        live = await self._models.live(session)                     # once, at the batch's start
        if live is None: ...                                        # nothing published yet
        version, model = live                                       # used for the WHOLE batch
        ...

`live` reads the live pointer (one primary-key read) on every call and reads and parses a
version's document only the first time this process sees it (a small cache keyed by version).
So each replica picks up a publication at the first batch it starts after the publication
commits, and a batch never mixes two versions, because it asks once and keeps the answer (a
second call inside a batch could see a publication committed in between: don't). A batch running
when a publication commits finishes with the version it started with. Record `version` with
what the batch writes when an outcome must name the configuration that made it.

Transactions and locks (each method runs in the caller's transaction, on `shared.db`'s session
helpers, and commits or rolls back with it):

- `save` takes the next number of its kind by an upsert of the kind's row in `config_kinds`,
  which holds that row locked until the caller's transaction ends: concurrent saves of one kind
  queue there and get consecutive numbers, a rolled-back save gives its number back, other kinds
  are not held up. Keep a transaction that saves short; one that saves several kinds should save
  them in a fixed order (PostgreSQL aborts one of two transactions that lock in opposite orders).
- `publish` is one statement: an upsert of the kind's `config_live` row that reads the version
  it replaces from the locked row (ON CONFLICT DO UPDATE sees the latest committed row), plus the
  history entry. (This is READ COMMITTED, the default; under REPEATABLE READ or SERIALIZABLE a
  publish that meets a concurrent one fails with a serialization error instead of waiting.) Concurrent publishes of one kind queue on that row until the first commits, so
  each records the version really live before it and the history's order is the pointer's order.
  A publication is visible to readers at its commit, pointer and history at once.
- `live` takes no lock: readers never wait for a publisher and publishers never wait for
  batches (MVCC). Versions are immutable, so reading the document in a later statement of the
  batch's transaction reads the document of the version the pointer named.
- Version ids (`"1"`, `"2"`, ... per kind; strings, so a kind may use other ids one day) are
  reused only when the save that took one rolls back. The live pointer also carries the
  version's database-wide `seq` (an identity, never reused), and the cache checks it: a document
  this process saw in a transaction that rolled back never stands in for the version that later
  takes its number.

Documents are JSON objects, stored as jsonb. `parse` (usually a pydantic model's
`model_validate`) checks a document before it is saved and turns it into the value `live`
returns; the parsed value is shared by every batch of the process, so make it immutable (a
frozen model). A stored document that `parse` refuses later (a stricter parser after an upgrade)
makes `live` raise with a note naming the kind and version: the batch fails and is retried, and
publishing a version the new parser accepts fixes it.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import execute, fetch, fetchrow, fetchval, json_document

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

SCHEMA_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A schema name this module accepts: a lower-case PostgreSQL identifier that needs no quoting.
The name is formatted into SQL (identifiers cannot be bind parameters), so nothing else is."""
KIND_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
"""A kind's name: lower case, e.g. `scoring_model`, `routing`."""
STAMP_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A stamped field's name (`VersionedConfig(stamp=...)`): a plain top-level key."""
CACHED_VERSIONS = 4
"""Parsed documents `live` keeps per kind and process: the live one and a few it may go back to."""


class _Anything:
    """`publish`'s default `expected_live`: publish whatever is live."""


ANYTHING = _Anything()


@dataclass(frozen=True)
class ConfigVersion:
    """One saved version of a kind; `document` is None where a listing leaves it out."""

    kind: str
    version: str
    parent: str | None
    author: str
    note: str
    created_at: datetime
    document: dict[str, Any] | None = None


@dataclass(frozen=True)
class Publication:
    """One entry of a kind's publication history: `version` went live, replacing `previous`
    (None for the kind's first publication; equal to `version` when it was published again)."""

    kind: str
    version: str
    previous: str | None
    published_by: str
    note: str
    published_at: datetime


class LiveChanged(Exception):
    """A publish that expected another live version (`publish(expected_live=...)`): someone
    published in between. Nothing was published; the caller says so and offers to start again
    from what is live now."""

    def __init__(self, *, kind: str, expected: str | None, live: str | None) -> None:
        super().__init__(
            f"{kind}: version {live or 'none'} was published since this draft started from "
            f"version {expected or 'none'}; nothing was published. Start again from version "
            f"{live or 'none'} (your changes are kept in the draft you sent)"
        )
        self.kind = kind
        self.expected = expected
        self.live = live


@dataclass(frozen=True)
class Adoption:
    """What `adopt` did with a file's document: `imported` (a new version, published) or not
    (this content was imported before, as `version`); `live`: the live version after it."""

    imported: bool
    version: str
    live: str


class VersionedConfig(Generic[T]):
    """One kind of versioned document in one service's schema.

    `schema` is the owning service's schema (its code's own constant; checked against
    `SCHEMA_PATTERN`), `kind` the kind's name, `parse` the check and conversion of a document
    (see the module doc). `stamp`: a top-level field that `save` sets to the version's id in
    the stored document, so that a parsed document knows its version (a rule set records it
    with every score it makes); whatever a caller's document holds there is replaced. Every
    method takes the caller's session and works in its transaction. Keep one instance per kind
    and process: it holds `live`'s cache."""

    def __init__(
        self,
        *,
        schema: str,
        kind: str,
        parse: Callable[[dict[str, Any]], T],
        stamp: str | None = None,
    ) -> None:
        self._schema = checked_schema(schema)
        if not KIND_PATTERN.fullmatch(kind):
            raise ValueError(f"kind {kind!r}: expected {KIND_PATTERN.pattern}")
        if stamp is not None and not STAMP_PATTERN.fullmatch(stamp):
            raise ValueError(f"stamp {stamp!r}: expected {STAMP_PATTERN.pattern}")
        self._kind = kind
        self._parse = parse
        self._stamp = stamp
        # version -> (its seq, its parsed document), least recently used first
        self._parsed: OrderedDict[str, tuple[int, T]] = OrderedDict()

    @property
    def schema(self) -> str:
        return self._schema

    @property
    def kind(self) -> str:
        return self._kind

    async def save(
        self,
        session: AsyncSession,
        *,
        document: dict[str, Any],
        author: str,
        note: str,
        parent: str | None = None,
    ) -> ConfigVersion:
        """Store `document` as the kind's next version ("1", "2", ...) and return it (with its
        document). Not published: `publish` makes it live.

        `parse` checks the document first, as it will be read back (after its JSON round trip),
        and its exception propagates (the caller answers 4xx or a CLI error): nothing is
        stored. A document that is not a JSON object, or a `parent` that is not a version of
        this kind, raises ValueError, and nothing is stored either. Numbers are consecutive and
        distinct under concurrent savers (see the module doc: the kind's counter row stays
        locked until the caller's transaction ends)."""
        if not isinstance(document, dict):
            raise ValueError(
                f"a {self.kind} document is a JSON object, not {type(document).__name__}"
            )
        text = json_document(document)
        stored: dict[str, Any] = orjson.loads(text)
        if self._stamp is not None:
            stored[self._stamp] = "new"  # what parse sees; the real id is set as it is stored
        self._parse(stored)
        if parent is not None and not await self._exists(session, parent):
            raise ValueError(f"{self.kind}: parent version {parent!r} does not exist")
        # `$6` names the stamped field (NULL: none); jsonb_set's path is a bind parameter.
        row = await fetchrow(
            session,
            f"""
            WITH numbered AS (
                INSERT INTO "{self._schema}".config_kinds AS kinds (kind, last_number)
                VALUES ($1, 1)
                ON CONFLICT (kind) DO UPDATE SET last_number = kinds.last_number + 1
                RETURNING last_number
            )
            INSERT INTO "{self._schema}".config_versions
                (kind, version, parent, author, note, document)
            SELECT $1, numbered.last_number::text, $2, $3, $4,
                   CASE WHEN $6::text IS NULL THEN $5::jsonb
                        ELSE jsonb_set($5::jsonb, ARRAY[$6::text],
                                       to_jsonb(numbered.last_number::text)) END
              FROM numbered
            RETURNING version, created_at
            """,
            self.kind,
            parent,
            author,
            note,
            text,
            self._stamp,
        )
        assert row is not None  # the upsert returns its row
        if self._stamp is not None:
            stored[self._stamp] = row["version"]
        return ConfigVersion(
            kind=self.kind,
            version=row["version"],
            parent=parent,
            author=author,
            note=note,
            created_at=row["created_at"],
            document=stored,
        )

    async def publish(
        self,
        session: AsyncSession,
        version: str,
        *,
        by: str,
        note: str = "",
        expected_live: str | _Anything | None = ANYTHING,
    ) -> Publication:
        """Make `version` the kind's live version in the caller's transaction (readers see it
        when that transaction commits) and record the publication with the version it replaced.
        Publishing the live version again is allowed and recorded (`previous == version`),
        and changes nothing else. A version this kind does not have raises LookupError and
        changes nothing; the transaction stays usable. Concurrent publishes of a kind queue on
        its live row (see the module doc).

        `expected_live`: publish only if this is still the live version (None: nothing is
        published yet), else raise `LiveChanged` and publish nothing: an editor who started
        from version 3 does not silently replace a version 4 someone else published meanwhile.
        It takes the kind's counter row (`FOR UPDATE`, as `save` does) before it looks, so two
        such publishes of one kind are checked one after the other; the caller's transaction
        holds that row until it ends, so commit soon after."""
        if not isinstance(expected_live, _Anything):
            locked = await fetchval(
                session,
                f'SELECT kind FROM "{self._schema}".config_kinds WHERE kind = $1 FOR UPDATE',
                self.kind,
            )
            if locked is None:
                raise LookupError(f"{self.kind}: no version {version!r}")
            # A statement of its own, after the lock: it sees a publication that committed
            # while this one waited (the locking statement kept its older snapshot of
            # config_live, a row it did not lock).
            live = await self.live_version(session)
            if live != expected_live:
                raise LiveChanged(kind=self.kind, expected=expected_live, live=live)
        row = await fetchrow(
            session,
            f"""
            WITH published AS (
                INSERT INTO "{self._schema}".config_live AS live
                    (kind, version, version_seq, previous, published_at, published_by)
                SELECT kind, version, seq, NULL, now(), $3
                  FROM "{self._schema}".config_versions
                 WHERE kind = $1 AND version = $2
                ON CONFLICT (kind) DO UPDATE
                   SET version = excluded.version,
                       version_seq = excluded.version_seq,
                       previous = live.version,
                       published_at = excluded.published_at,
                       published_by = excluded.published_by
                RETURNING kind, version, previous, published_at, published_by
            )
            INSERT INTO "{self._schema}".config_publications
                (kind, version, previous, published_by, note, published_at)
            SELECT kind, version, previous, published_by, $4, published_at FROM published
            RETURNING version, previous, published_at
            """,
            self.kind,
            version,
            by,
            note,
        )
        if row is None:
            raise LookupError(f"{self.kind}: no version {version!r}")
        return Publication(
            kind=self.kind,
            version=row["version"],
            previous=row["previous"],
            published_by=by,
            note=note,
            published_at=row["published_at"],
        )

    async def live(self, session: AsyncSession) -> tuple[str, T] | None:
        """The live version and its parsed document, or None before the kind's first
        publication. One primary-key read of the live pointer per call; the document is read
        and parsed only the first time this process sees the version (then kept, for the last
        `CACHED_VERSIONS` versions). Call it once at the start of a batch, inside the batch's
        transaction, and use the result for the whole batch (see the module doc). Concurrent
        first sightings of a version may each parse it; the result is the same."""
        pointer = await fetchrow(
            session,
            f'SELECT version, version_seq FROM "{self._schema}".config_live WHERE kind = $1',
            self.kind,
        )
        if pointer is None:
            return None
        version: str = pointer["version"]
        seq: int = pointer["version_seq"]
        cached = self._parsed.get(version)
        if cached is not None and cached[0] == seq:
            self._parsed.move_to_end(version)
            return version, cached[1]
        document = await fetchval(
            session,
            f"""
            SELECT document FROM "{self._schema}".config_versions
             WHERE kind = $1 AND version = $2
            """,
            self.kind,
            version,
        )
        try:
            parsed = self._parse(document)
        except Exception as exc:
            exc.add_note(f"the live {self.kind} document, version {version}, in {self._schema}")
            raise
        self._parsed[version] = (seq, parsed)
        self._parsed.move_to_end(version)
        while len(self._parsed) > CACHED_VERSIONS:
            self._parsed.popitem(last=False)
        return version, parsed

    async def get(self, session: AsyncSession, version: str) -> ConfigVersion | None:
        """One version with its document, or None if the kind has no such version."""
        row = await fetchrow(
            session,
            f"""
            SELECT kind, version, parent, author, note, created_at, document
              FROM "{self._schema}".config_versions
             WHERE kind = $1 AND version = $2
            """,
            self.kind,
            version,
        )
        return None if row is None else _version(row, document=row["document"])

    async def versions(self, session: AsyncSession, *, limit: int = 100) -> list[ConfigVersion]:
        """The kind's versions, newest (last saved) first, at most `limit`, without documents."""
        _check_limit(limit)
        rows = await fetch(
            session,
            f"""
            SELECT kind, version, parent, author, note, created_at
              FROM "{self._schema}".config_versions
             WHERE kind = $1
             ORDER BY seq DESC
             LIMIT $2
            """,
            self.kind,
            limit,
        )
        return [_version(row, document=None) for row in rows]

    async def publications(self, session: AsyncSession, *, limit: int = 100) -> list[Publication]:
        """The kind's publication history, newest first, at most `limit` entries."""
        _check_limit(limit)
        rows = await fetch(
            session,
            f"""
            SELECT kind, version, previous, published_by, note, published_at
              FROM "{self._schema}".config_publications
             WHERE kind = $1
             ORDER BY seq DESC
             LIMIT $2
            """,
            self.kind,
            limit,
        )
        return [
            Publication(
                kind=row["kind"],
                version=row["version"],
                previous=row["previous"],
                published_by=row["published_by"],
                note=row["note"],
                published_at=row["published_at"],
            )
            for row in rows
        ]

    async def adopt(
        self, session: AsyncSession, *, document: dict[str, Any], source: str, by: str
    ) -> Adoption:
        """Make a configuration file's `document` (as written) the live version, once per
        content: how a file kept in git stays a source beside versions published through an
        API. Needs the tables of `config_imports_ddl` too.

        - Content never adopted before (by SHA-256 of its canonical JSON): saved as a new
          version (parent: the live one; author `by`; note naming `source`), published, and
          remembered. The file wins over what was published since, because it changed.
        - Content adopted before: nothing happens, whatever is live now (a version published
          through the API since stays live). So a replica of an older release restarting
          during a rollout cannot bring its older file back; to bring back an earlier
          content, change the file (its version label, a comment is not enough: comments are
          not part of the document).

        Concurrent adoptions of a kind (replicas starting together) are serialised by a
        transaction-scoped advisory lock: one imports, the others find it imported. A document
        `parse` refuses raises (see `save`) and nothing is stored."""
        # canonical: keys sorted, so a file whose keys were only reordered is no new content
        digest = hashlib.sha256(
            orjson.dumps(document, default=str, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        await fetchval(
            session,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            f"{self._schema}.{self.kind}.adopt",
        )
        seen = await fetchrow(
            session,
            f"""
            SELECT imports.version, live.version AS live
              FROM "{self._schema}".config_imports AS imports
              LEFT JOIN "{self._schema}".config_live AS live USING (kind)
             WHERE imports.kind = $1 AND imports.digest = $2
            """,
            self.kind,
            digest,
        )
        if seen is not None and seen["live"] is not None:
            return Adoption(imported=False, version=seen["version"], live=seen["live"])
        live = await self.live_version(session)
        saved = await self.save(
            session,
            document=document,
            author=by,
            note=f"imported from {source} (sha256 {digest[:12]})",
            parent=live,
        )
        await self.publish(session, saved.version, by=by, note=f"{source} changed")
        await execute(
            session,
            f"""
            INSERT INTO "{self._schema}".config_imports (kind, digest, version, source)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (kind, digest) DO UPDATE SET version = excluded.version
            """,
            self.kind,
            digest,
            saved.version,
            source,
        )
        return Adoption(imported=True, version=saved.version, live=saved.version)

    async def live_version(self, session: AsyncSession) -> str | None:
        """The live version's id (None before the first publication), without its document."""
        version: str | None = await fetchval(
            session,
            f'SELECT version FROM "{self._schema}".config_live WHERE kind = $1',
            self.kind,
        )
        return version

    async def _exists(self, session: AsyncSession, version: str) -> bool:
        found = await fetchval(
            session,
            f"""
            SELECT EXISTS (SELECT FROM "{self._schema}".config_versions
                            WHERE kind = $1 AND version = $2)
            """,
            self.kind,
            version,
        )
        return bool(found)


class LiveSource(Protocol[T_co]):
    """Where a consumer gets the configuration for a batch: a `VersionedConfig` in a service,
    a `Pinned` value where no database decides (a unit test, a benchmark's replay)."""

    async def live(self, session: AsyncSession) -> tuple[str, T_co] | None: ...


@dataclass(frozen=True)
class Pinned(Generic[T_co]):
    """A `LiveSource` that always answers the same version and value."""

    version: str
    value: T_co

    async def live(self, session: AsyncSession) -> tuple[str, T_co] | None:
        return self.version, self.value


def config_versions_ddl(schema: str) -> list[str]:
    """The statements a service's migration runs, each with `op.execute`, to hold its versioned
    configuration in `schema` (which must exist; the migration's environment creates it):

        for statement in config_versions_ddl("score"):
            op.execute(statement)

    - `config_versions`: every saved version, never updated or deleted. `seq` is a database-wide
      save order (an identity: never reused, even by a rolled-back save); `parent` is a version
      of the same kind; `document` a JSON object.
    - `config_kinds`: one row per kind that has a version, its last version number: the counter
      saves of the kind lock in turn.
    - `config_live`: one row per published kind, the live version (and its `seq`) and the
      version its latest publication replaced.
    - `config_publications`: the publication history, in `seq` order.

    A schema name that is not a plain lower-case identifier raises ValueError."""
    schema = checked_schema(schema)
    return [
        f"""
        CREATE TABLE "{schema}".config_versions (
            kind text NOT NULL,
            version text NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            parent text,
            author text NOT NULL,
            note text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            document jsonb NOT NULL CHECK (jsonb_typeof(document) = 'object'),
            PRIMARY KEY (kind, version),
            FOREIGN KEY (kind, parent) REFERENCES "{schema}".config_versions (kind, version)
        )
        """,
        f'CREATE INDEX config_versions_seq_idx ON "{schema}".config_versions (kind, seq)',
        f"""
        CREATE TABLE "{schema}".config_kinds (
            kind text PRIMARY KEY,
            last_number bigint NOT NULL
        )
        """,
        f"""
        CREATE TABLE "{schema}".config_live (
            kind text PRIMARY KEY,
            version text NOT NULL,
            version_seq bigint NOT NULL,
            previous text,
            published_at timestamptz NOT NULL,
            published_by text NOT NULL,
            FOREIGN KEY (kind, version) REFERENCES "{schema}".config_versions (kind, version)
        )
        """,
        f"""
        CREATE TABLE "{schema}".config_publications (
            kind text NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            version text NOT NULL,
            previous text,
            published_by text NOT NULL,
            note text NOT NULL,
            published_at timestamptz NOT NULL,
            PRIMARY KEY (kind, seq),
            FOREIGN KEY (kind, version) REFERENCES "{schema}".config_versions (kind, version)
        )
        """,
    ]


def config_imports_ddl(schema: str) -> list[str]:
    """The statements a service's migration runs (after `config_versions_ddl`'s) for `adopt`:
    `config_imports`, one row per file content adopted (its SHA-256) and the version it
    became. A schema name that is not a plain lower-case identifier raises ValueError."""
    schema = checked_schema(schema)
    return [
        f"""
        CREATE TABLE "{schema}".config_imports (
            kind text NOT NULL,
            digest text NOT NULL,
            version text NOT NULL,
            source text NOT NULL,
            imported_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (kind, digest),
            FOREIGN KEY (kind, version) REFERENCES "{schema}".config_versions (kind, version)
        )
        """,
    ]


def checked_schema(schema: str) -> str:
    """`schema` if it is a plain identifier that needs no quoting (`SCHEMA_PATTERN`), else
    ValueError: a schema name is formatted into SQL, never a bind parameter."""
    if not SCHEMA_PATTERN.fullmatch(schema):
        raise ValueError(
            f"schema {schema!r}: expected a plain identifier, {SCHEMA_PATTERN.pattern}"
        )
    return schema


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit {limit}: expected 0 or more")


def _version(row: asyncpg.Record, *, document: dict[str, Any] | None) -> ConfigVersion:
    return ConfigVersion(
        kind=row["kind"],
        version=row["version"],
        parent=row["parent"],
        author=row["author"],
        note=row["note"],
        created_at=row["created_at"],
        document=document,
    )
