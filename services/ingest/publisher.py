"""Publishing accepted calls to `events.raw` (and CRM feedback to `crm.feedback`), and knowing
whether the broker is there.

The producer is librdkafka's (confluent-kafka): records are queued and sent by its C threads,
and their delivery reports are served by one poll thread of ours, which hands each request's
outcome to the event loop (`call_soon_threadsafe`). aiokafka spent more Python time per record
than ingest's own work (profiled: 9,000 events/s at most through `/v1/batch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from services.ingest.wire import EncodedEvent
from shared.kafka import create_confluent_producer
from shared.settings import KafkaSettings
from shared.telemetry import MESSAGES_OUT
from shared.topics import CRM_FEEDBACK, EVENTS_RAW, Topic

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.1  # how long the poll thread blocks waiting for reports (and stop)
FLUSH_ON_STOP_S = 10.0  # at shutdown, how long records still queued may take to be acked
QUEUE_FULL_WAIT_S = 0.005  # librdkafka's local queue is full: let it drain this long, retry
QUEUE_MAX_RECORDS = 100_000  # librdkafka's local queue (queue.buffering.max.messages)
TOPICS = (EVENTS_RAW, CRM_FEEDBACK)  # what ingest writes (deploy: its KafkaUser's ACLs)


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time; the client must retry (same messageIds)."""


class DeliveryFailed(Exception):
    """The broker refused a record, or it was not acknowledged within the delivery timeout."""


class EventPublisher:
    """Owns the producer. `publish` returns only when the broker acknowledged every event
    (acks=all) and raises `BrokerUnavailable` otherwise (no answer within `timeout_s`, a
    delivery reported failed, not connected yet), so the API never says yes too early. A
    request that failed may still have some of its events delivered: the client resends them
    with the same messageIds and enrich drops the repeats.

    `start` returns at once: the broker is probed in the background until it answers, so
    ingest comes up (and answers 503) while the broker is away, and recovers by itself.
    `ready` says whether the broker answered and has not been reported down since.

    Records go to `events.raw` unless `publish` is told another of the topics ingest writes
    (`TOPICS`: `crm.feedback`, for `POST /v1/crm/feedback`).
    """

    def __init__(self, settings: KafkaSettings, *, timeout_s: float) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._topic = EVENTS_RAW.full_name(settings.topic_prefix)
        self._topics = {topic: topic.full_name(settings.topic_prefix) for topic in TOPICS}
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        self._prober: asyncio.Task[None] | None = None
        self._connected_once = False
        self._brokers_down = False

    @property
    def ready(self) -> bool:
        return self._connected_once and not self._brokers_down

    async def start(self) -> None:
        self._producer = create_confluent_producer(
            self._settings,
            client_id="leadflow-ingest",
            delivery_timeout_ms=int(self._timeout_s * 1000),
            error_cb=self._on_client_error,
            overrides={"queue.buffering.max.messages": QUEUE_MAX_RECORDS},
        )
        self._poller = threading.Thread(
            target=self._serve_delivery_reports,
            args=(self._producer,),
            name="ingest-delivery-reports",
            daemon=True,
        )
        self._poller.start()
        self._prober = asyncio.create_task(self._probe_broker(self._producer), name="probe")

    async def stop(self) -> None:
        """Stop probing, deliver what is still queued (up to `FLUSH_ON_STOP_S`), close."""
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        self._stopping.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)

    async def publish(self, events: Sequence[EncodedEvent], *, topic: Topic = EVENTS_RAW) -> None:
        producer = self._producer
        if producer is None or not self._connected_once:
            raise BrokerUnavailable("not connected to the broker yet")
        if not events:
            return
        topic_name = self._topics[topic]
        loop = asyncio.get_running_loop()
        acks = _RequestAcks(loop, count=len(events))
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._enqueue(producer, topic_name, events, on_delivery=acks.delivered)
                # Sent by librdkafka's threads, acknowledged through the poll thread: all of a
                # request's events share the round trips to the broker.
                await acks.all_delivered
        except (KafkaException, DeliveryFailed, TimeoutError) as exc:
            reason = str(exc) or "no acknowledgement in time"
            log.warning("broker did not acknowledge %d events: %s", len(events), reason)
            raise BrokerUnavailable(reason) from exc
        finally:
            acks.abandon()
        self._brokers_down = False
        MESSAGES_OUT.labels("ingest", topic_name).inc(len(events))

    async def _enqueue(
        self,
        producer: Producer,
        topic_name: str,
        events: Sequence[EncodedEvent],
        *,
        on_delivery: Callable[[KafkaError | None, Message], None],
    ) -> None:
        """Queue every event, in order, in librdkafka's local queue (one call for the lot: a
        Python call per record cost a microsecond more each). When the queue is full (the
        broker slow or away), wait for room; any other refusal raises `DeliveryFailed`."""
        pending: list[dict[str, Any]] = [{"value": e.value, "key": e.key} for e in events]
        while True:
            # Only this coroutine adds records until its next await, so room seen here is room
            # for the whole request: the queue does not refuse records halfway through it.
            if len(producer) + len(pending) <= QUEUE_MAX_RECORDS:
                queued = producer.produce_batch(topic_name, pending, on_delivery=on_delivery)
                if queued == len(pending):
                    return
                refused = [record for record in pending if "_error" in record]
                first = pending.index(refused[0])
                codes = {record["_error"].code() for record in refused}
                if codes != {KafkaError._QUEUE_FULL} or len(refused) != len(pending) - first:
                    raise DeliveryFailed(f"not queued: {refused[0]['_error'].str()}")
                # Only the tail was refused (the order still holds): queue it when there is room.
                pending = [{"value": record["value"], "key": record["key"]} for record in refused]
            await asyncio.sleep(QUEUE_FULL_WAIT_S)

    # -- the poll thread and the probe -------------------------------------------------------

    def _serve_delivery_reports(self, producer: Producer) -> None:
        """The only thread that polls: delivery callbacks run here, one at a time. At stop it
        flushes (waits for every queued record's outcome) before the producer is dropped."""
        while not self._stopping.is_set():
            producer.poll(POLL_INTERVAL_S)
        waiting = producer.flush(FLUSH_ON_STOP_S)
        if waiting:
            log.warning("stopped with %d records not acknowledged by the broker", waiting)

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka's client-wide errors (poll thread). Connection losses are retried by
        librdkafka itself; only "every broker is down" changes readiness."""
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            if not self._brokers_down:
                log.warning("broker unreachable: %s", error.str())
            self._brokers_down = True
        else:
            log.info("kafka client: %s", error.str())

    async def _probe_broker(self, producer: Producer) -> None:
        """Until stopped: whenever the broker is not known to be there, ask it for the topic's
        metadata (which also creates the topic where the broker auto-creates)."""
        backoff = 0.2
        while True:
            if self.ready:
                backoff = 0.2
                await asyncio.sleep(1.0)
                continue
            try:
                await asyncio.to_thread(producer.list_topics, self._topic, timeout=2.0)
            except KafkaException as exc:
                log.warning("broker unreachable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self._connected_once:
                log.info("connected to the broker at %s", self._settings.bootstrap_servers)
            self._connected_once = True
            self._brokers_down = False


class _RequestAcks:
    """The delivery reports of one request's records, as one awaitable.

    `delivered` runs on the poll thread (the only one that touches the count); the outcome is
    handed to the event loop once: at the first failure or at the last acknowledgement.
    """

    __slots__ = ("_failure", "_loop", "_settled", "_waiting", "all_delivered")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, count: int) -> None:
        self._loop = loop
        self._waiting = count
        self._failure: KafkaError | None = None
        self._settled = False
        self.all_delivered: asyncio.Future[None] = loop.create_future()

    def delivered(self, error: KafkaError | None, _message: Message) -> None:
        if self._settled:
            return
        if error is not None:
            self._failure = error
        else:
            self._waiting -= 1
            if self._waiting:
                return
        self._settled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        if self.all_delivered.done():  # the request timed out or was cancelled meanwhile
            return
        if self._failure is not None:
            self.all_delivered.set_exception(DeliveryFailed(self._failure.str()))
        else:
            self.all_delivered.set_result(None)

    def abandon(self) -> None:
        """The request stopped waiting: an exception set later must not go unretrieved."""
        if not self.all_delivered.done():
            self.all_delivered.cancel()
        elif not self.all_delivered.cancelled():
            self.all_delivered.exception()
