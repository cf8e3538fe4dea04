"""The routing configuration as versioned configuration (`shared.config_versions`, kind
`routing` in the router's schema): one version live, followed by every replica at its next
batch, published without a restart.

Where a version comes from:
- **the routing file** (`LEADFLOW_ROUTER_ROUTING_FILE`, the `routing-rules` ConfigMap), adopted
  at start (`adopt_routing_file`): a content never adopted before is saved and published (the
  file changed, so it wins at this deploy); a content adopted before changes nothing, so what
  people published since through the API stays live. To bring back an earlier content, change
  the file (its `version` label: comments are not part of the document).
- **people**, through the router's API (`/v1/routing`, `shared.config_api`, and a rep's
  availability, `/v1/routing/reps/{rep_id}`): validated by the same `RoutingConfig`, saved with a
  parent, published only over the version they started from.
- **an operator's rollback**: `python -m services.router publish <version>`.

A version's `version` field is stamped with its id ("1", "2", ...): the `RoutingConfig.version`
of a stored version is its id, and every decision records it (`RoutingDecision.routing_version`,
`router.decisions.routing_version`). The label written in the file is kept in the version's note.

How the router follows publications: the handler asks `live_routing` once at the start of each
batch, in the batch's transaction, and uses the answer for the whole batch (the SLA timer once
per round), so a publication reaches every replica at its next batch and a batch never mixes two
versions.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router.repository import SCHEMA
from services.router.routing_config import RoutingConfig, read_routing_file
from shared.config_versions import Adoption, LiveSource, Pinned, VersionedConfig
from shared.consumer.failures import NotReady
from shared.db import unit_of_work

log = logging.getLogger(__name__)

KIND = "routing"
FILE_AUTHOR = "routing file"


def routing_versions() -> VersionedConfig[RoutingConfig]:
    """A store of the routing versions with a cache of its own. A process keeps one (`ROUTING`);
    a test that uses several databases builds one per database, since a cached document is
    known by its version's `seq`, which each database numbers from 1."""
    return VersionedConfig(
        schema=SCHEMA, kind=KIND, parse=RoutingConfig.model_validate, stamp="version"
    )


ROUTING: VersionedConfig[RoutingConfig] = routing_versions()
"""The router process's routing versions (start-up, handler, SLA timer, API, commands)."""


def pinned(config: RoutingConfig) -> Pinned[RoutingConfig]:
    """`config` as the routing of every batch, under its own `version` label: a handler where
    no database decides (a test, a benchmark's replay)."""
    return Pinned(version=config.version, value=config)


class NoLiveRouting(NotReady):
    """No usable routing version is live: nothing is published (the router publishes its
    routing file at start, so the schema was emptied under a running router, or a test forgot
    to publish), or the live document no longer passes validation (a stricter router after an
    upgrade). A batch refuses to route with nothing.

    `NotReady`: the consumer runner counts it transient, retries the batch with backoff, never
    commits past it, and ends the process if it lasts (publishing a usable version ends it)."""


async def live_routing(
    source: LiveSource[RoutingConfig], session: AsyncSession
) -> tuple[str, RoutingConfig]:
    """The live routing version and its configuration, read once for a batch or a request
    (`LiveSource.live`: one primary-key read; the document parsed once per process), or
    `NoLiveRouting`."""
    try:
        live = await source.live(session)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise NoLiveRouting(
            f"the live routing version does not pass validation ({exc.error_count()} problems, "
            f"the first: {where}: {first['msg']}); publish one that does: "
            "python -m services.router publish <version>"
        ) from exc
    if live is None:
        raise NoLiveRouting(
            "no routing version is published: the router publishes its routing file at start; "
            "publish a version with: python -m services.router publish <version>"
        )
    return live


async def adopt_routing_file(
    sessions: async_sessionmaker[AsyncSession],
    path: Path,
    *,
    routing: VersionedConfig[RoutingConfig] = ROUTING,
) -> Adoption:
    """Adopt the routing file at start (see the module doc), in a transaction of its own, and
    log what happened. The file is read and validated before the database is asked anything:
    a bad file raises `RoutingFileError` (file, line and field). Replicas starting together
    import a new content once (`VersionedConfig.adopt` serialises them)."""
    document = read_routing_file(path)
    label = document.get("version")
    async with unit_of_work(sessions) as session:
        adoption = await routing.adopt(
            session,
            document=document,
            source=path.name + (f" (version label {label})" if label else ""),
            by=FILE_AUTHOR,
        )
    if adoption.imported:
        log.info("routing file %s is new: imported and published as version %s", path,
                 adoption.version)  # fmt: skip
    else:
        log.info(
            "routing file %s unchanged (imported before as version %s); live routing: version %s",
            path,
            adoption.version,
            adoption.live,
        )
    return adoption
