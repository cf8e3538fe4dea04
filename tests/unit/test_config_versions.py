"""`shared.config_versions` without a database: the schema name is formatted into SQL, so only a
plain lower-case identifier is accepted, by the DDL and by the interface alike; a stamped field
is a plain top-level name; `Pinned` answers its value; `LiveChanged` says what to do."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config_versions import (
    LiveChanged,
    Pinned,
    VersionedConfig,
    config_imports_ddl,
    config_versions_ddl,
)

BAD_SCHEMAS = [
    "",
    "Score",
    "1score",
    "score-x",
    'score"; DROP SCHEMA score CASCADE; --',
    "score.config",
    "scöre",
    "score ",
    "s" * 64,
]


def _parse(document: dict[str, Any]) -> dict[str, Any]:
    return document


@pytest.mark.parametrize("schema", BAD_SCHEMAS)
def test_config_versions_ddl_refuses_a_schema_name_that_is_not_a_plain_identifier(
    schema: str,
) -> None:
    with pytest.raises(ValueError, match="schema"):
        config_versions_ddl(schema)


@pytest.mark.parametrize("schema", BAD_SCHEMAS)
def test_config_imports_ddl_refuses_a_schema_name_that_is_not_a_plain_identifier(
    schema: str,
) -> None:
    with pytest.raises(ValueError, match="schema"):
        config_imports_ddl(schema)


@pytest.mark.parametrize("schema", BAD_SCHEMAS)
def test_versioned_config_refuses_a_schema_name_that_is_not_a_plain_identifier(
    schema: str,
) -> None:
    with pytest.raises(ValueError, match="schema"):
        VersionedConfig(schema=schema, kind="scoring_model", parse=_parse)


@pytest.mark.parametrize("kind", ["", "Scoring", "scoring model", "x" * 64])
def test_versioned_config_refuses_a_kind_that_is_not_a_plain_name(kind: str) -> None:
    with pytest.raises(ValueError, match="kind"):
        VersionedConfig(schema="score", kind=kind, parse=_parse)


def test_config_versions_ddl_creates_the_four_tables_in_the_schema_given() -> None:
    statements = config_versions_ddl("score")
    created = [s.split("(")[0].split()[-1] for s in statements if "CREATE TABLE" in s]
    assert created == [
        '"score".config_versions',
        '"score".config_kinds',
        '"score".config_live',
        '"score".config_publications',
    ]
    assert all('"score".' in s for s in statements)


def test_config_imports_ddl_creates_the_imports_table_in_the_schema_given() -> None:
    statements = config_imports_ddl("router")
    created = [s.split("(")[0].split()[-1] for s in statements if "CREATE TABLE" in s]
    assert created == ['"router".config_imports']
    assert all('"router".' in s for s in statements)
    # An import names a version of the same schema's versions table.
    assert 'REFERENCES "router".config_versions (kind, version)' in statements[0]


@pytest.mark.parametrize(
    "stamp",
    [
        "",  # empty
        "Version",  # upper case
        "1version",  # starts with a digit
        "meta.version",  # a path, not a top-level key
        "version-id",  # a hyphen
        "version ",  # trailing space
        "{version}",  # SQL/JSON path syntax
        "v" * 64,  # longer than an identifier
    ],
)
def test_versioned_config_refuses_a_stamp_that_is_not_a_plain_top_level_name(stamp: str) -> None:
    with pytest.raises(ValueError, match="stamp"):
        VersionedConfig(schema="score", kind="scoring_rules", parse=_parse, stamp=stamp)


@pytest.mark.parametrize("stamp", ["version", "_version", "rules_version_2", "v" * 63, None])
def test_versioned_config_accepts_a_plain_stamp_or_none(stamp: str | None) -> None:
    config = VersionedConfig(schema="score", kind="scoring_rules", parse=_parse, stamp=stamp)
    assert (config.schema, config.kind) == ("score", "scoring_rules")


async def test_pinned_always_answers_its_version_and_value() -> None:
    value = {"weights": {"fit": 1.0}}
    pinned = Pinned("3", value)
    session: Any = None  # a pinned source reads no database
    assert await pinned.live(session) == ("3", value)
    assert await pinned.live(session) == ("3", value)
    assert (await pinned.live(session) or ("", None))[1] is value


@pytest.mark.parametrize(
    ("expected", "live", "says"),
    [
        ("3", "4", "version 4 was published since this draft started from version 3"),
        (None, "1", "version 1 was published since this draft started from version none"),
        ("2", None, "version none was published since this draft started from version 2"),
    ],
)
def test_live_changed_names_both_versions_and_says_nothing_was_published(
    expected: str | None, live: str | None, says: str
) -> None:
    refused = LiveChanged(kind="routing", expected=expected, live=live)
    assert str(refused).startswith(f"routing: {says}; nothing was published")
    assert (refused.kind, refused.expected, refused.live) == ("routing", expected, live)
