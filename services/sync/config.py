"""sync settings (LEADFLOW_SYNC_*). The destinations themselves are in the destinations file
(`destinations`); these say how sync runs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.sync.destinations import DEFAULT_DESTINATIONS_FILE
from shared.privacy import TOPICS_KEEP_AT_MOST_DAYS
from shared.settings import SERVICE_SOURCES, ConsumingServiceSettings


class SyncSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_SYNC_", **SERVICE_SOURCES)

    health_port: int = 8085
    destinations_file: Path = DEFAULT_DESTINATIONS_FILE
    # A lane with nothing to send is woken by the notification of the statement that queues its
    # rows (delivery module doc), and also looks again this often: how late an event can be
    # when a notification was missed (the listening connection being opened again).
    idle_poll_s: float = Field(default=1.0, gt=0, le=10)
    # One replica delivers to a destination at a time: it holds the destination's lease
    # (`sync.destinations`) this long and renews it every third of it; when the holder stops
    # (its lease released) or dies (its lease runs out), another replica takes over.
    lease_s: float = Field(default=15.0, ge=1)
    # A lead's routing event that arrives before the one it follows waits at most this long
    # for it (`ordering`); 0: never held.
    reorder_wait_s: float = Field(default=2.0, ge=0, le=300)
    # A `Retry-After` is honoured up to this (a destination asking for a day is asked again
    # sooner).
    retry_after_cap_s: float = Field(default=600.0, gt=0)
    # Housekeeping (every `housekeeping_interval_s`): an erased lead is remembered
    # (`sync.erased_leads`) this long, longer than any topic keeps a message, so a late
    # message about it is dropped; a lead's routing order (`sync.lead_order`) is forgotten after
    # `lead_order_idle_days` without a routing event (a later one is then held at most
    # `reorder_wait_s` once); a dead letter (the event as it was, with the lead's email and
    # name) is deleted `dead_letter_retention_days` after it died: replay it before then.
    erased_leads_retention_days: float = Field(default=45, ge=TOPICS_KEEP_AT_MOST_DAYS)
    lead_order_idle_days: float = Field(default=7, gt=0)
    dead_letter_retention_days: float = Field(default=30, gt=0)
    housekeeping_interval_s: float = Field(default=3600, gt=0)
