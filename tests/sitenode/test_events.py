import asyncio
from datetime import UTC, datetime

import pytest

from sitenode.events import CommandEvent, EventBus, EventType, ScheduleReceived, StateChanged

NOW = datetime(2025, 1, 15, tzinfo=UTC)


def test_payload_must_match_its_type():
    bus = EventBus()
    with pytest.raises(TypeError):
        bus.publish(EventType.STATE_CHANGED, CommandEvent("c", "a", "SET_CHARGE_RATE", 5.0), NOW)


def test_every_event_type_has_its_payload_and_a_wire_name():
    from sitenode.events import _PAYLOAD_OF

    assert set(_PAYLOAD_OF) == set(EventType) and len(EventType) == 10
    assert all(str(t) == t.name for t in EventType)  # WatchEvents carries the name as is


async def test_subscribers_get_their_types_in_order():
    bus = EventBus()
    states = bus.subscribe({EventType.STATE_CHANGED})
    everything = bus.subscribe()
    bus.publish(EventType.COMMAND_CREATED, CommandEvent("c1", "cp-1", "SET_CHARGE_RATE", 11.0), NOW)
    bus.publish(EventType.STATE_CHANGED, StateChanged("cp-1", "charger", "plug_in", "AVAILABLE", "PREPARING"), NOW)
    bus.publish(EventType.SCHEDULE_RECEIVED, ScheduleReceived("v1", "local", NOW, NOW), NOW)
    got = await asyncio.wait_for(anext(aiter(states)), 1)
    assert got.type is EventType.STATE_CHANGED and got.payload.to_state == "PREPARING"
    assert states.queue.empty()
    seqs = [everything.queue.get_nowait().seq for _ in range(3)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


async def test_a_stalled_subscriber_cannot_stall_the_publisher():
    bus = EventBus()
    slow = bus.subscribe(maxsize=10)  # never read
    fast = bus.subscribe(maxsize=10_000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(5000):
        bus.publish(EventType.COMMAND_CREATED, CommandEvent(f"c{i}", "a", "SET_CHARGE_RATE", float(i)), NOW)
    assert loop.time() - started < 1.0
    assert slow.dropped == 4990 and slow.queue.qsize() == 10
    # the slow reader kept the newest events
    assert slow.queue.get_nowait().payload.command_id == "c4990"
    assert fast.queue.qsize() == 5000 and fast.dropped == 0


async def test_closed_subscriptions_leave_the_bus():
    bus = EventBus()
    sub = bus.subscribe()
    sub.close()
    bus.publish(EventType.COMMAND_CREATED, CommandEvent("c", "a", "X", None), NOW)
    assert bus.subscribers == 0 and sub.queue.empty()
