"""Versioned configuration (`shared.config_versions`) on the real PostgreSQL: saving checks and
numbers versions (and stamps them), publishing switches what every replica's `live` returns at
its next batch, rolling back is publishing an earlier version, concurrent savers and publishers
queue, a publish over a stale live version is refused, and a file's document is adopted once per
content.

Each test creates a scratch schema with `config_versions_ddl` and `config_imports_ddl` in its own
database; a "replica" is a `VersionedConfig` object of its own (its own cache), and a batch is
one transaction."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import asyncpg
import pytest
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import shared.config_versions
from shared.config_versions import (
    Adoption,
    LiveChanged,
    VersionedConfig,
    config_imports_ddl,
    config_versions_ddl,
)
from shared.db import unit_of_work

T = TypeVar("T")

SCHEMA = "config_test"
KIND = "scoring_model"


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: dict[str, float]


class CountingParse:
    """`Model.model_validate`, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, document: dict[str, Any]) -> Model:
        self.calls += 1
        return Model.model_validate(document)


def replica(kind: str = KIND, parse: CountingParse | None = None) -> VersionedConfig[Model]:
    """One process's view of a kind: an object with a cache of its own."""
    return VersionedConfig(schema=SCHEMA, kind=kind, parse=parse or CountingParse())


def doc(fit: float) -> dict[str, Any]:
    return {"weights": {"fit": fit}}


@pytest.fixture
async def sessions(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> async_sessionmaker[AsyncSession]:
    """The test database's sessions, with the scratch schema created as a migration would."""
    await db.execute(f"CREATE SCHEMA {SCHEMA}")
    for statement in config_versions_ddl(SCHEMA) + config_imports_ddl(SCHEMA):
        await db.execute(statement)
    return sessions


async def save(
    sessions: async_sessionmaker[AsyncSession],
    config: VersionedConfig[Model],
    fit: float,
    parent: str | None = None,
) -> str:
    async with unit_of_work(sessions) as session:
        saved = await config.save(
            session, document=doc(fit), author="ada", note=f"fit {fit}", parent=parent
        )
    return saved.version


async def publish(
    sessions: async_sessionmaker[AsyncSession], config: VersionedConfig[Model], version: str
) -> None:
    async with unit_of_work(sessions) as session:
        await config.publish(session, version, by="grace", note=f"go {version}")


async def batch_sees(
    sessions: async_sessionmaker[AsyncSession], config: VersionedConfig[T]
) -> tuple[str, T] | None:
    """What a consumer batch (one transaction) starts with."""
    async with unit_of_work(sessions) as session:
        return await config.live(session)


# ---- saving ------------------------------------------------------------------------------------


async def test_a_document_that_parse_refuses_is_not_stored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = replica()
    async with unit_of_work(sessions) as session:
        with pytest.raises(ValidationError):
            await config.save(session, document={"weights": "heavy"}, author="ada", note="bad")
        with pytest.raises(ValueError, match="JSON object"):
            await config.save(session, document=[1, 2], author="ada", note="bad")  # type: ignore[arg-type]
        assert await config.versions(session) == []
        # The refusal took no number: the first document stored is "1".
        assert (await config.save(session, document=doc(1), author="ada", note="ok")).version == "1"


async def test_versions_are_numbered_one_two_three_per_kind_and_kinds_are_independent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    models, rules = replica(), replica("scoring_rules")
    assert [await save(sessions, models, f) for f in (1, 2, 3)] == ["1", "2", "3"]
    assert [await save(sessions, rules, f) for f in (1, 2)] == ["1", "2"]
    assert [await save(sessions, models, f) for f in range(4, 11)] == [str(n) for n in range(4, 11)]
    async with unit_of_work(sessions) as session:
        listed = await models.versions(session)
        # newest first: "10" before "9"
        assert [v.version for v in listed] == [str(n) for n in range(10, 0, -1)]
        assert all(v.document is None and v.kind == KIND for v in listed)
        assert [v.version for v in await models.versions(session, limit=2)] == ["10", "9"]
        assert [v.version for v in await rules.versions(session)] == ["2", "1"]
        second = await models.get(session, "2")
        assert second is not None
        assert (second.document, second.author, second.note) == (doc(2), "ada", "fit 2")
        assert (await rules.get(session, "2") or second).document == doc(2)
        assert await models.get(session, "11") is None


async def test_saves_of_one_kind_from_concurrent_sessions_get_distinct_consecutive_numbers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = replica()
    # The first saver holds the kind's counter until it commits; the second waits for it.
    async with unit_of_work(sessions) as first:
        assert (await config.save(first, document=doc(1), author="a", note="")).version == "1"
        second = asyncio.create_task(save(sessions, config, 2))
        await asyncio.sleep(0.5)
        assert not second.done(), "the second save did not wait for the first"
    assert await second == "2"
    # Many at once: every number once, none skipped.
    numbers = await asyncio.gather(*(save(sessions, config, f) for f in range(8)))
    assert sorted(numbers, key=int) == [str(n) for n in range(3, 11)]


async def test_a_rolled_back_save_gives_its_number_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = replica()
    async with sessions() as session:
        await config.save(session, document=doc(1), author="a", note="")
        await session.rollback()
    assert await save(sessions, config, 1) == "1"


async def test_a_parent_that_does_not_exist_is_refused_and_nothing_is_stored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config, other_kind = replica(), replica("routing")
    await save(sessions, other_kind, 1)  # "1" exists, but of another kind
    async with unit_of_work(sessions) as session:
        for parent in ("1", "7"):
            with pytest.raises(ValueError, match="parent"):
                await config.save(session, document=doc(1), author="a", note="", parent=parent)
        assert await config.versions(session) == []
        first = await config.save(session, document=doc(1), author="a", note="")
        child = await config.save(
            session, document=doc(2), author="a", note="", parent=first.version
        )
        assert (child.version, child.parent) == ("2", "1")
        assert [v.parent for v in await config.versions(session)] == ["1", None]


# ---- publishing and following ------------------------------------------------------------------


async def test_nothing_is_live_before_the_first_publication(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = replica()
    await save(sessions, config, 1)
    assert await batch_sees(sessions, config) is None


async def test_a_publication_reaches_another_replica_at_its_next_batch(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    publisher, consumer = replica(), replica()
    one, two = await save(sessions, publisher, 1), await save(sessions, publisher, 2)
    await publish(sessions, publisher, one)
    assert await batch_sees(sessions, consumer) == (one, Model.model_validate(doc(1)))

    # A batch in flight keeps what it started with; the publication is not visible until its
    # transaction commits; the consumer's next batch after the commit uses it.
    async with unit_of_work(sessions) as batch:
        started_with = await consumer.live(batch)
        async with unit_of_work(sessions) as publishing:
            await publisher.publish(publishing, two, by="grace")
            assert await batch_sees(sessions, consumer) == started_with
    assert started_with is not None
    assert started_with[0] == one
    assert await batch_sees(sessions, consumer) == (two, Model.model_validate(doc(2)))


async def test_live_reads_and_parses_a_versions_document_once_per_process(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    parse = CountingParse()
    publisher, consumer = replica(), replica(parse=parse)
    one, two = await save(sessions, publisher, 1), await save(sessions, publisher, 2)
    await publish(sessions, publisher, one)
    for _ in range(3):
        assert (await batch_sees(sessions, consumer) or ("", None))[0] == one
    assert parse.calls == 1
    await publish(sessions, publisher, two)
    for _ in range(3):
        assert (await batch_sees(sessions, consumer) or ("", None))[0] == two
    assert parse.calls == 2
    await publish(sessions, publisher, one)  # back to a version this process has seen
    assert (await batch_sees(sessions, consumer) or ("", None))[0] == one
    assert parse.calls == 2


async def test_live_sends_one_statement_per_call_once_the_version_is_known(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = replica()
    await publish(sessions, config, await save(sessions, config, 1))
    await batch_sees(sessions, config)  # first sight: the pointer, then the document
    sent: list[str] = []
    for name in ("fetch", "fetchrow", "fetchval"):
        real = getattr(shared.config_versions, name)

        async def counted(session: AsyncSession, sql: str, *args: Any, _real: Any = real) -> Any:
            sent.append(sql)
            return await _real(session, sql, *args)

        monkeypatch.setattr(shared.config_versions, name, counted)
    await batch_sees(sessions, config)
    assert len(sent) == 1
    assert "config_live WHERE kind = $1" in sent[0]


async def test_a_rollback_is_publishing_an_earlier_version_and_the_history_lists_each_with_its_previous(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config, consumer = replica(), replica()
    one = await save(sessions, config, 1)
    two = await save(sessions, config, 2, parent=one)
    await publish(sessions, config, one)
    await publish(sessions, config, two)
    assert (await batch_sees(sessions, consumer) or ("", None))[0] == two
    async with unit_of_work(sessions) as session:
        rolled_back = await config.publish(session, one, by="grace", note="2 misroutes")
    assert (rolled_back.version, rolled_back.previous) == (one, two)
    assert (await batch_sees(sessions, consumer) or ("", None))[0] == one
    async with unit_of_work(sessions) as session:
        history = await config.publications(session)
        assert [(p.version, p.previous, p.note) for p in history] == [
            (one, two, "2 misroutes"),
            (two, one, "go 2"),
            (one, None, "go 1"),
        ]
        assert all(p.published_by == "grace" and p.kind == KIND for p in history)
        assert len(await config.publications(session, limit=1)) == 1


async def test_publishing_the_live_version_again_is_recorded_and_changes_nothing_else(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = replica()
    one = await save(sessions, config, 1)
    await publish(sessions, config, one)
    async with unit_of_work(sessions) as session:
        again = await config.publish(session, one, by="grace", note="again")
        assert (again.version, again.previous) == (one, one)
        assert [p.previous for p in await config.publications(session)] == [one, None]
    assert (await batch_sees(sessions, replica()) or ("", None))[0] == one


async def test_publishing_an_unknown_version_raises_and_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config, other_kind = replica(), replica("routing")
    one = await save(sessions, config, 1)
    await save(sessions, other_kind, 1)
    await save(sessions, other_kind, 2)
    await publish(sessions, config, one)
    async with unit_of_work(sessions) as session:
        for unknown in ("2", "one", ""):  # "2" exists, but of another kind
            with pytest.raises(LookupError, match="no version"):
                await config.publish(session, unknown, by="grace")
        # The transaction is still usable, and nothing changed.
        assert [p.version for p in await config.publications(session)] == [one]
    assert (await batch_sees(sessions, replica()) or ("", None))[0] == one


async def test_concurrent_publishes_of_a_kind_queue_and_each_records_the_version_it_replaced(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = replica()
    one, two, three = [await save(sessions, config, f) for f in (1, 2, 3)]
    await publish(sessions, config, one)
    async with unit_of_work(sessions) as first:
        await config.publish(first, two, by="a")
        second = asyncio.create_task(publish(sessions, config, three))
        await asyncio.sleep(0.5)
        assert not second.done(), "the second publish did not wait for the first"
    await second
    async with unit_of_work(sessions) as session:
        history = [(p.version, p.previous) for p in await config.publications(session)]
    assert history == [(three, two), (two, one), (one, None)]
    assert (await batch_sees(sessions, replica()) or ("", None))[0] == three


async def test_a_version_seen_in_a_rolled_back_transaction_never_stands_in_for_the_one_that_takes_its_number(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = replica()
    async with sessions() as session:
        saved = await config.save(session, document=doc(1), author="a", note="")
        await config.publish(session, saved.version, by="a")
        assert (await config.live(session) or ("", None))[1] == Model.model_validate(doc(1))
        await session.rollback()
    again = await save(sessions, config, 2)
    assert again == saved.version == "1"
    await publish(sessions, config, again)
    assert await batch_sees(sessions, config) == ("1", Model.model_validate(doc(2)))


# ---- stamping ----------------------------------------------------------------------------------


class Stamped(BaseModel):
    """A document that knows its version (as a rule set records it with every score)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    weights: dict[str, float]


def stamped_replica(kind: str = "scoring_rules") -> VersionedConfig[Stamped]:
    return VersionedConfig(schema=SCHEMA, kind=kind, parse=Stamped.model_validate, stamp="version")


@pytest.mark.parametrize(
    "written",
    [
        {"version": "2026.12-1", "weights": {"fit": 1.0}},  # a label of the author's: replaced
        {"version": "7", "weights": {"fit": 1.0}},  # another version's id: replaced too
        {"weights": {"fit": 1.0}},  # none: added (parse saw a placeholder, so it validated)
    ],
)
async def test_a_stamped_save_stores_the_version_id_in_the_stamped_field_whatever_the_caller_put_there(
    sessions: async_sessionmaker[AsyncSession], written: dict[str, Any]
) -> None:
    config, consumer = stamped_replica(), stamped_replica()
    sent = dict(written)
    async with unit_of_work(sessions) as session:
        first = await config.save(session, document=sent, author="ada", note="")
        second = await config.save(session, document=sent, author="ada", note="")
    assert sent == written, "the caller's document was changed"
    assert (first.version, second.version) == ("1", "2")
    assert first.document == {"version": "1", "weights": {"fit": 1.0}}
    assert second.document == {"version": "2", "weights": {"fit": 1.0}}
    async with unit_of_work(sessions) as session:
        stored = await config.get(session, "1")
        assert stored is not None
        assert stored.document == first.document
        await config.publish(session, "2", by="grace")
    assert await batch_sees(sessions, consumer) == (
        "2",
        Stamped(version="2", weights={"fit": 1.0}),
    )


async def test_an_unstamped_config_stores_the_document_as_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = VersionedConfig(schema=SCHEMA, kind="plain", parse=Stamped.model_validate)
    async with unit_of_work(sessions) as session:
        saved = await config.save(
            session, document={"version": "label", "weights": {}}, author="a", note=""
        )
        assert saved.document == {"version": "label", "weights": {}}
        assert (await config.get(session, saved.version) or saved).document == saved.document
        # Without a stamp, parse sees the document as it is: no placeholder makes it valid.
        with pytest.raises(ValidationError, match="version"):
            await config.save(session, document={"weights": {}}, author="a", note="")


# ---- publishing over the expected live version -------------------------------------------------


async def test_a_publish_over_a_stale_live_version_is_refused_and_publishes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = replica()
    one, two, three = [await save(sessions, config, f) for f in (1, 2, 3)]
    await publish(sessions, config, one)
    async with unit_of_work(sessions) as session:
        for expected in (None, two, "99"):  # nothing live / another version / no such version
            with pytest.raises(LiveChanged) as refused:
                await config.publish(session, three, by="ada", expected_live=expected)
            assert (refused.value.kind, refused.value.expected, refused.value.live) == (
                KIND,
                expected,
                one,
            )
            assert f"version {one} was published" in str(refused.value)
        # The transaction is still usable, and nothing was published.
        assert [p.version for p in await config.publications(session)] == [one]
        assert await config.live_version(session) == one
        published = await config.publish(session, three, by="ada", expected_live=one)
        assert (published.version, published.previous) == (three, one)
    assert (await batch_sees(sessions, replica()) or ("", None))[0] == three


async def test_the_first_publication_expects_nothing_live(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = replica()
    one = await save(sessions, config, 1)
    async with unit_of_work(sessions) as session:
        with pytest.raises(LiveChanged) as refused:
            await config.publish(session, one, by="ada", expected_live=one)
        assert (refused.value.expected, refused.value.live) == (one, None)
        assert "version none was published" in str(refused.value)
        assert await config.publications(session) == []
        first = await config.publish(session, one, by="ada", expected_live=None)
        assert (first.version, first.previous) == (one, None)


async def test_an_expected_live_publish_of_a_kind_without_versions_raises_lookup_error(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await save(sessions, replica(), 1)  # another kind's "1"
    async with unit_of_work(sessions) as session:
        with pytest.raises(LookupError, match="no version"):
            await replica("routing").publish(session, "1", by="ada", expected_live=None)


async def test_two_concurrent_publishes_from_the_same_live_version_one_wins_the_other_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Two editors started from version 1; both publish at once, each in its own transaction.
    The second is checked only after the first commits, against what the first published."""
    config = replica()
    one, two, three = [await save(sessions, config, f) for f in (1, 2, 3)]
    await publish(sessions, config, one)

    async def publish_from_one(version: str) -> str:
        async with unit_of_work(sessions) as session:
            await config.publish(session, version, by=f"editor of {version}", expected_live=one)
        return version

    async with unit_of_work(sessions) as first:
        await config.publish(first, two, by="editor of 2", expected_live=one)
        second = asyncio.create_task(publish_from_one(three))
        await asyncio.sleep(0.5)
        assert not second.done(), "the second publish did not wait for the first"
    with pytest.raises(LiveChanged) as refused:
        await second
    assert (refused.value.expected, refused.value.live) == (one, two)
    async with unit_of_work(sessions) as session:
        assert [(p.version, p.previous) for p in await config.publications(session)] == [
            (two, one),
            (one, None),
        ]
    assert (await batch_sees(sessions, replica()) or ("", None))[0] == two


async def test_many_concurrent_publishes_from_the_same_live_version_exactly_one_wins(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = replica()
    one, *drafts = [await save(sessions, config, f) for f in range(6)]
    await publish(sessions, config, one)

    async def publish_from_one(version: str) -> str | None:
        try:
            async with unit_of_work(sessions) as session:
                await config.publish(session, version, by="editor", expected_live=one)
        except LiveChanged:
            return None
        return version

    outcomes = await asyncio.gather(*(publish_from_one(v) for v in drafts))
    winners = [v for v in outcomes if v is not None]
    assert len(winners) == 1, outcomes
    async with unit_of_work(sessions) as session:
        assert [p.version for p in await config.publications(session)] == [winners[0], one]
        assert await config.live_version(session) == winners[0]


async def test_live_version_names_the_live_version_without_reading_its_document(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    parse = CountingParse()
    config = replica(parse=parse)
    async with unit_of_work(sessions) as session:
        assert await config.live_version(session) is None
    one = await save(sessions, config, 1)
    parse.calls = 0
    async with unit_of_work(sessions) as session:
        assert await config.live_version(session) is None  # saved is not published
    await publish(sessions, config, one)
    async with unit_of_work(sessions) as session:
        assert await config.live_version(session) == one
    assert parse.calls == 0


# ---- adopting a file's document ----------------------------------------------------------------

SOURCE = "rules/default.yaml"


async def adopt(
    sessions: async_sessionmaker[AsyncSession],
    config: VersionedConfig[Any],
    document: dict[str, Any],
    *,
    by: str = "score 1.4.0",
) -> Adoption:
    """One replica's start: adopt its file in a transaction of its own."""
    async with unit_of_work(sessions) as session:
        return await config.adopt(session, document=document, source=SOURCE, by=by)


async def imports(db: asyncpg.Connection) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        f"SELECT kind, version, source FROM {SCHEMA}.config_imports ORDER BY imported_at, version"
    )
    return [(row["kind"], row["version"], row["source"]) for row in rows]


async def test_a_file_content_never_adopted_is_saved_published_and_remembered(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    config = replica()
    adopted = await adopt(sessions, config, doc(1))
    assert adopted == Adoption(imported=True, version="1", live="1")
    async with unit_of_work(sessions) as session:
        version = await config.get(session, "1")
        assert version is not None
        assert (version.document, version.author, version.parent) == (doc(1), "score 1.4.0", None)
        assert version.note.startswith(f"imported from {SOURCE} (sha256 ")
        [publication] = await config.publications(session)
        assert (publication.version, publication.previous) == ("1", None)
        assert (publication.published_by, publication.note) == ("score 1.4.0", f"{SOURCE} changed")
    assert await imports(db) == [(KIND, "1", SOURCE)]
    assert await batch_sees(sessions, replica()) == ("1", Model.model_validate(doc(1)))


async def test_the_same_content_again_changes_nothing_even_after_another_version_was_published(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    config = replica()
    assert (await adopt(sessions, config, doc(1))).version == "1"
    assert await adopt(sessions, replica(), doc(1)) == Adoption(
        imported=False, version="1", live="1"
    )
    # People publish version 2 through the API; a replica restarts with the same file.
    two = await save(sessions, config, 2, parent="1")
    await publish(sessions, config, two)
    assert await adopt(sessions, replica(), doc(1)) == Adoption(
        imported=False, version="1", live=two
    )
    async with unit_of_work(sessions) as session:
        assert [v.version for v in await config.versions(session)] == [two, "1"]
        assert [p.version for p in await config.publications(session)] == [two, "1"]
    assert await imports(db) == [(KIND, "1", SOURCE)]
    assert (await batch_sees(sessions, replica()) or ("", None))[0] == two


async def test_a_changed_file_content_wins_over_what_was_published_since(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    config = replica()
    await adopt(sessions, config, doc(1))
    two = await save(sessions, config, 2, parent="1")
    await publish(sessions, config, two)
    changed = await adopt(sessions, replica(), doc(3), by="score 1.5.0")
    assert changed == Adoption(imported=True, version="3", live="3")
    async with unit_of_work(sessions) as session:
        version = await config.get(session, "3")
        assert version is not None
        assert (version.document, version.parent, version.author) == (doc(3), two, "score 1.5.0")
        assert [(p.version, p.previous) for p in await config.publications(session)] == [
            ("3", two),
            (two, "1"),
            ("1", None),
        ]
    assert await imports(db) == [(KIND, "1", SOURCE), (KIND, "3", SOURCE)]
    # An older release's replica restarting during the rollout does not bring its file back.
    assert await adopt(sessions, replica(), doc(1), by="score 1.4.0") == Adoption(
        imported=False, version="1", live="3"
    )
    assert (await batch_sees(sessions, replica()) or ("", None))[0] == "3"


async def test_replicas_adopting_the_same_content_at_once_import_it_once(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    adoptions = await asyncio.gather(*(adopt(sessions, replica(), doc(1)) for _ in range(5)))
    assert sorted(a.imported for a in adoptions) == [False, False, False, False, True]
    assert {(a.version, a.live) for a in adoptions} == {("1", "1")}
    async with unit_of_work(sessions) as session:
        assert [v.version for v in await replica().versions(session)] == ["1"]
        assert len(await replica().publications(session)) == 1
    assert await imports(db) == [(KIND, "1", SOURCE)]


async def test_a_file_document_that_parse_refuses_raises_and_stores_nothing(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    config = replica()
    with pytest.raises(ValidationError):
        await adopt(sessions, config, {"weights": "heavy"})
    async with unit_of_work(sessions) as session:
        assert await config.versions(session) == []
        assert await config.live_version(session) is None
    assert await imports(db) == []
    # Once fixed, the file is adopted as the first version.
    assert (await adopt(sessions, config, doc(1))).version == "1"


async def test_a_stamped_kind_adopts_a_file_once_although_the_stored_document_carries_its_id(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    written = {"version": "2026.12-1", "weights": {"fit": 1.0}}
    first = await adopt(sessions, stamped_replica(), written)
    again = await adopt(sessions, stamped_replica(), written)
    assert (first.imported, again.imported) == (True, False)
    assert await batch_sees(sessions, stamped_replica()) == (
        "1",
        Stamped(version="1", weights={"fit": 1.0}),
    )
