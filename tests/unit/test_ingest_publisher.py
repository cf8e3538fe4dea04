"""The bridge from librdkafka's delivery reports (on the poll thread) to the request waiting for
them (on the event loop): success only when every record was acknowledged; the first failure
fails the request; reports that come after the request stopped waiting change nothing."""

from __future__ import annotations

import asyncio
import threading

import pytest
from confluent_kafka import KafkaError

from services.ingest.publisher import DeliveryFailed, _RequestAcks

pytestmark = pytest.mark.unit

ACKED = None
TIMED_OUT = KafkaError(KafkaError._MSG_TIMED_OUT)


def report_from_another_thread(acks: _RequestAcks, errors: list[KafkaError | None]) -> None:
    """Deliver reports as librdkafka's poll thread does: off the event loop, one by one."""

    def deliver() -> None:
        for error in errors:
            acks.delivered(error, None)  # type: ignore[arg-type]

    thread = threading.Thread(target=deliver)
    thread.start()
    thread.join()


async def test_every_record_acknowledged_is_success() -> None:
    acks = _RequestAcks(asyncio.get_running_loop(), count=3)

    report_from_another_thread(acks, [ACKED, ACKED, ACKED])

    await asyncio.wait_for(acks.all_delivered, 1)

    assert acks.all_delivered.exception() is None


async def test_not_every_record_acknowledged_is_no_answer_yet() -> None:
    acks = _RequestAcks(asyncio.get_running_loop(), count=3)

    report_from_another_thread(acks, [ACKED, ACKED])
    await asyncio.sleep(0.05)

    assert not acks.all_delivered.done()


async def test_one_failed_record_fails_the_request_even_when_the_rest_are_acknowledged() -> None:
    acks = _RequestAcks(asyncio.get_running_loop(), count=3)

    report_from_another_thread(acks, [ACKED, TIMED_OUT, ACKED])

    with pytest.raises(DeliveryFailed, match="timed out"):
        await asyncio.wait_for(acks.all_delivered, 1)


async def test_the_first_failure_answers_without_waiting_for_the_other_records() -> None:
    acks = _RequestAcks(asyncio.get_running_loop(), count=100)

    report_from_another_thread(acks, [TIMED_OUT])

    with pytest.raises(DeliveryFailed):
        await asyncio.wait_for(acks.all_delivered, 1)


async def test_reports_after_the_request_gave_up_change_nothing() -> None:
    acks = _RequestAcks(asyncio.get_running_loop(), count=2)
    acks.abandon()  # the request timed out

    report_from_another_thread(acks, [ACKED, TIMED_OUT])
    await asyncio.sleep(0.05)

    assert acks.all_delivered.cancelled()
