"""`shared.config_versions` without a database: the schema name is formatted into SQL, so only a
plain lower-case identifier is accepted, by the DDL and by the interface alike."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config_versions import VersionedConfig, config_versions_ddl

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
