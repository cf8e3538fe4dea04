"""How a batch gets its routing (services/router/routing_versions.py): the live version, or a
refusal the consumer runner retries, never a batch routed with nothing or dead-lettered."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.routing_config import RoutingConfig
from services.router.routing_versions import NoLiveRouting, live_routing, pinned
from shared.consumer.failures import is_transient
from tests.unit.builders import routing_config

pytestmark = pytest.mark.unit

SESSION: Any = None  # no source below reads it


class Nothing:
    """A store with nothing published."""

    async def live(self, session: AsyncSession) -> tuple[str, RoutingConfig] | None:
        return None


class Unreadable:
    """A store whose live document a stricter router no longer accepts."""

    async def live(self, session: AsyncSession) -> tuple[str, RoutingConfig] | None:
        RoutingConfig.model_validate({"version": "4", "teams": []})
        raise AssertionError("unreachable")


async def test_a_pinned_routing_is_live_under_its_own_version_label() -> None:
    config = routing_config()

    assert await live_routing(pinned(config), SESSION) == ("test-1", config)


async def test_nothing_published_is_refused_with_how_to_publish() -> None:
    with pytest.raises(NoLiveRouting, match=r"python -m services\.router publish <version>"):
        await live_routing(Nothing(), SESSION)


async def test_a_live_document_that_no_longer_validates_is_refused_naming_the_field() -> None:
    with pytest.raises(
        NoLiveRouting, match=r"does not pass validation \(\d+ problems, the first: "
    ) as refused:
        await live_routing(Unreadable(), SESSION)
    assert isinstance(refused.value.__cause__, ValidationError)


@pytest.mark.parametrize("source", [Nothing(), Unreadable()], ids=["nothing", "unreadable"])
async def test_a_batch_without_a_usable_routing_is_retried_by_the_runner_not_dead_lettered(
    source: Any,
) -> None:
    with pytest.raises(NoLiveRouting) as refused:
        await live_routing(source, SESSION)

    assert is_transient(refused.value)
