"""The scoring rules as versioned configuration (`shared.config_versions`, kind `rules` in
score's schema): one live version, read by every batch, published without a restart.

Where a version comes from:
- **the rules file** (`LEADFLOW_SCORE_RULES_FILE`, the `scoring-rules` ConfigMap), adopted at
  start (`adopt_rules_file`): a content never adopted before is saved and published (the file
  changed, so it wins at this deploy); a content adopted before changes nothing, so what people
  published since through the API stays live;
- **people**, through score's API (`/v1/rules`, `shared.config_api`; the console's rules
  editor): drafts validated by the same `RuleSet`, saved with a parent, published over the
  version they started from.

A version's `version` field is stamped with its id ("1", "2", ...): `RuleSet.version` is what
every score (`leads.scored.rule_version`), stage change and ledger records, and what the rescore
sweep brings every stored lead onto after a publication. The label written in a file is kept
in the version's note.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score.engine.ruleset import RuleSet, RulesFileError
from shared.config_files import parse_yaml_document
from shared.config_versions import Adoption, Pinned, VersionedConfig
from shared.db import unit_of_work

log = logging.getLogger(__name__)

RULES: VersionedConfig[RuleSet] = VersionedConfig(
    schema="score", kind="rules", parse=RuleSet.model_validate, stamp="version"
)
FILE_AUTHOR = "rules file"


def read_rules_file(path: Path) -> dict[str, object]:
    """The file's document as written, validated (`RulesFileError` names the file, line and
    field: a bad file stops the start, as before rules were versioned)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesFileError(f"{path}: {exc}") from None
    document, _ = parse_yaml_document(text, RuleSet, source=str(path), error=RulesFileError)
    return document


async def adopt_rules_file(sessions: async_sessionmaker[AsyncSession], path: Path) -> Adoption:
    """Adopt the rules file at start (see the module doc), in a transaction of its own; logs
    what it did. Replicas starting together import a new content once."""
    document = read_rules_file(path)
    label = document.get("version")
    async with unit_of_work(sessions) as session:
        adoption = await RULES.adopt(
            session,
            document=document,
            source=f"{path.name}" + (f" (version label {label})" if label else ""),
            by=FILE_AUTHOR,
        )
    if adoption.imported:
        log.info("rules file %s is new: published as rules version %s", path, adoption.version)
    else:
        log.info(
            "rules file %s unchanged (version %s); live rules: version %s",
            path,
            adoption.version,
            adoption.live,
        )
    return adoption


async def live_rules(session: AsyncSession) -> RuleSet:
    """The live rule set (an API request's or a command's, read once per use)."""
    live = await RULES.live(session)
    if live is None:
        raise LookupError("no scoring rules are published yet (the service publishes its file)")
    return live[1]


def pinned(rules: RuleSet) -> Pinned[RuleSet]:
    """`rules` as a handler's source that never changes (tests, benchmarks, replays): every
    batch gets them, under their own version."""
    return Pinned(version=rules.version, value=rules)
