"""The node's typed event bus: Layer 4's eight event types, each with its own payload.

`publish` never waits: every subscriber reads from its own bounded queue, and a
subscriber that falls behind loses its oldest events (counted in `dropped`) rather
than slowing the dispatch engine or a device adapter down. Subscribers are async
iterators, so a gRPC `WatchEvents` stream is a loop over one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    COMMAND_CREATED = "COMMAND_CREATED"
    COMMAND_DISPATCHED = "COMMAND_DISPATCHED"
    COMMAND_ACKNOWLEDGED = "COMMAND_ACKNOWLEDGED"
    COMMAND_COMPLETED = "COMMAND_COMPLETED"
    COMMAND_FAILED = "COMMAND_FAILED"
    COMMAND_TIMED_OUT = "COMMAND_TIMED_OUT"
    STATE_CHANGED = "STATE_CHANGED"
    SCHEDULE_RECEIVED = "SCHEDULE_RECEIVED"
    PLAN_ABANDONED = "PLAN_ABANDONED"
    SESSION_CLOSED = "SESSION_CLOSED"


@dataclass(frozen=True)
class CommandEvent:
    command_id: str
    asset_id: str
    command_type: str
    value_kw: float | None
    attempts: int = 0
    reason: str = ""


@dataclass(frozen=True)
class StateChanged:
    asset_id: str
    machine: str
    trigger: str
    from_state: str
    to_state: str


@dataclass(frozen=True)
class ScheduleReceived:
    version: str
    source: str  # "local" optimization, "portfolio", or "manual"
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True)
class PlanAbandonedEvent:
    """A plan given up at its deadline (nothing of it applied); `reason` says what asked for it."""

    reason: str
    seconds: float


@dataclass(frozen=True)
class SessionClosed:
    """An EV session past its departure: what it needed and what was measured delivered (kWh);
    `reason` names a shortfall, so it reaches the WatchEvents stream."""

    session_id: str
    need_kwh: float
    delivered_kwh: float
    reason: str


Payload = CommandEvent | StateChanged | ScheduleReceived | PlanAbandonedEvent | SessionClosed

_PAYLOAD_OF = {
    **{t: CommandEvent for t in EventType if t.name.startswith("COMMAND_")},
    EventType.STATE_CHANGED: StateChanged,
    EventType.SCHEDULE_RECEIVED: ScheduleReceived,
    EventType.PLAN_ABANDONED: PlanAbandonedEvent,
    EventType.SESSION_CLOSED: SessionClosed,
}


@dataclass(frozen=True)
class Event:
    type: EventType
    payload: Payload
    at: datetime
    seq: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.payload, _PAYLOAD_OF[self.type]):
            raise TypeError(f"{self.type} carries {_PAYLOAD_OF[self.type].__name__}, got {type(self.payload).__name__}")


@dataclass(eq=False)
class Subscription:
    types: frozenset[EventType] | None
    queue: asyncio.Queue[Event]
    dropped: int = 0
    closed: bool = False
    _bus: EventBus | None = field(default=None, repr=False)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while not self.closed:
            yield await self.queue.get()

    def close(self) -> None:
        self.closed = True
        if self._bus is not None:
            self._bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._seq = 0

    def subscribe(self, types: Iterable[EventType] | None = None, maxsize: int = 1000) -> Subscription:
        sub = Subscription(frozenset(types) if types is not None else None, asyncio.Queue(maxsize), _bus=self)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, type_: EventType, payload: Payload, at: datetime) -> Event:
        self._seq += 1
        event = Event(type_, payload, at, self._seq)
        for sub in list(self._subs):
            if sub.types is not None and type_ not in sub.types:
                continue
            if sub.queue.full():
                sub.queue.get_nowait()  # the slow reader loses its oldest event, not the publisher its time
                sub.dropped += 1
            sub.queue.put_nowait(event)
        return event

    @property
    def subscribers(self) -> int:
        return len(self._subs)


def describe(event: Event) -> dict[str, Any]:
    """A flat, JSON-able view (logs, the gRPC stream's details)."""
    from dataclasses import asdict

    return {"type": str(event.type), "seq": event.seq, "at": event.at.isoformat(), **asdict(event.payload)}
