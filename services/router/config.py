"""router settings (LEADFLOW_ROUTER_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.router.routing_config import DEFAULT_ROUTING_FILE
from shared.settings import ConsumingServiceSettings


class RouterSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_ROUTER_", frozen=True, extra="ignore")

    health_port: int = 8083
    routing_file: Path = DEFAULT_ROUTING_FILE
    # The SLA timer: how often at most it looks for decisions past their sla_due_at (it looks
    # less often while nothing can be due: see sla_timers; a due SLA is claimed at most one
    # interval late), how many it claims per round, and when a claimed check that changed
    # nothing (a lead waiting in the queue for a rep to start their day) is looked at again.
    # Short rounds of few checks: the consumer handles a round's checks in the batches it shares
    # with fresh MQLs, so a round is a pause in speed-to-lead. `make bench`, 1,000 events/s with
    # ~36 SLAs falling due per second (the bench has no CRM to accept): rounds of up to 500 every
    # 15 s (and a round trip per check) gave speed-to-lead p95 573 / p99 876 ms; rounds of up to
    # 200 every second (checks set-based) 173 / 188 ms.
    sla_check_interval_s: float = Field(default=1.0, gt=0)
    sla_check_batch: int = Field(default=200, ge=1)
    sla_recheck_s: float = Field(default=300.0, gt=0)
