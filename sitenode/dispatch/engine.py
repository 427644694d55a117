"""The dispatch engine: due commands to device adapters, with lifecycle, retries and holds.

Each `tick(now)` takes the commands that are due, keeps only the newest setpoint per
asset and command type (older ones are SUPERSEDED: a device should get where the plan
is now, not replay where it was), holds those whose asset is FAULTED or UNAVAILABLE
(they stay PENDING and go once it recovers), clamps every setpoint to the asset's
ratings once more, and sends the rest concurrently. A failed or unanswered send is
retried with exponential backoff up to `max_attempts`, then FAILED or TIMED_OUT.
State changes are written to the store a batch at a time, before the send (DISPATCHED)
and after it, so a restart knows what may have reached a device.

Time comes in as `now`; only the per-send timeout runs on the event loop's clock,
because it bounds real I/O.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sitenode import logfields
from sitenode.dispatch.commands import AssetRating, Command, CommandState, CommandType, clamp
from sitenode.errors import GridmeshError, NotFound
from sitenode.events import CommandEvent, EventBus, EventType
from sitenode.state import HOLD_STATES

log = logging.getLogger(__name__)


class AdapterError(GridmeshError):
    """A device refused or could not carry out a command."""

    code = "UNAVAILABLE"


class Adapter(Protocol):
    async def execute(self, command: Command) -> float | None:
        """Carry the command out; raise AdapterError when the device refuses. A setpoint
        adapter that reads the device back returns the kW the device took (a ramp step, a
        device's own clamp): the command completes with that value, so the journal's
        `last_setpoints` holds it and the next plan sends the asked value again."""
        ...


class CommandStore(Protocol):
    def save_commands(self, commands: Iterable[Command]) -> None: ...
    def open_commands(self) -> list[Command]: ...
    def holding(self) -> dict[tuple[str, CommandType], tuple[str, datetime]]: ...


class AdapterRegistry:
    def __init__(self) -> None:
        self._adapters: dict[str, Adapter] = {}

    def register(self, asset_id: str, adapter: Adapter) -> None:
        self._adapters[asset_id] = adapter

    def get(self, asset_id: str) -> Adapter:
        try:
            return self._adapters[asset_id]
        except KeyError:
            raise NotFound(f"no adapter for asset {asset_id!r}") from None

    def __contains__(self, asset_id: str) -> bool:
        return asset_id in self._adapters


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_seconds: float = 1.0
    backoff_factor: float = 2.0
    timeout_seconds: float = 5.0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=self.backoff_seconds * self.backoff_factor ** max(0, attempts - 1))


_EVENT = {
    CommandState.DISPATCHED: EventType.COMMAND_DISPATCHED,
    CommandState.COMPLETED: EventType.COMMAND_COMPLETED,
    CommandState.FAILED: EventType.COMMAND_FAILED,
    CommandState.TIMED_OUT: EventType.COMMAND_TIMED_OUT,
}


def _ready_at(c: Command) -> datetime:
    return c.due_at if c.next_attempt_at is None else max(c.due_at, c.next_attempt_at)


def _events_for(c: Command) -> tuple[EventType, ...]:
    if c.state is CommandState.PENDING:
        return (EventType.COMMAND_CREATED,) if c.attempts == 0 else ()  # a retry is not a new command
    if c.state is CommandState.COMPLETED:
        return (EventType.COMMAND_ACKNOWLEDGED, EventType.COMMAND_COMPLETED)
    return tuple(k for k in (_EVENT.get(c.state),) if k is not None)


class DispatchEngine:
    def __init__(
        self,
        registry: AdapterRegistry,
        bus: EventBus,
        store: CommandStore,
        ratings: dict[str, AssetRating],
        state_of: Callable[[str], str | None],
        policy: RetryPolicy | None = None,
    ) -> None:
        self.registry, self.bus, self.store, self.ratings = registry, bus, store, ratings
        self.state_of = state_of
        self.policy = policy or RetryPolicy()
        # Only open commands live in memory; finished ones are the store's. Pending ids
        # wait in a heap by the time they may go, so a tick costs what is due, not what
        # is queued.
        self.open: dict[str, Command] = {}
        self._ready: list[tuple[datetime, str]] = []
        self._held: set[str] = set()
        # resume: whatever the journal says is still open (PENDING, or DISPATCHED when the
        # process died mid-send) goes again, under the same idempotency id
        for c in store.open_commands():
            self._track(c.evolve(state=CommandState.PENDING) if c.state is CommandState.DISPATCHED else c)
        # per (asset, type), the command the device holds (the last to complete): id and due time
        self.holding: dict[tuple[str, CommandType], tuple[str, datetime]] = store.holding()

    def _track(self, c: Command) -> None:
        if c.state is CommandState.COMPLETED:
            self.holding[(c.asset_id, c.type)] = (c.id, c.due_at)
        if c.done:
            self.open.pop(c.id, None)
            return
        self.open[c.id] = c
        if c.state is CommandState.PENDING:
            heapq.heappush(self._ready, (_ready_at(c), c.id))

    def _record(self, changed: list[Command], now: datetime) -> None:
        self.store.save_commands(changed)
        for c in changed:
            self._track(c)
            for kind in _events_for(c):
                self.bus.publish(
                    kind, CommandEvent(c.id, c.asset_id, str(c.type), c.value_kw, c.attempts, c.last_error), now
                )

    def submit(self, commands: Iterable[Command], now: datetime, replace_from: datetime | None = None) -> int:
        """Queue new commands (a repeated id is ignored); with `replace_from`, pending
        commands due from then on that the new batch does not repeat are superseded
        (a new schedule replaces the old one's future).

        An id is ignored while it is open, and when it is the command its device holds (it
        completed last for that asset, before a restart too), or is older than that one: a
        plan submitted again after a restart sends nothing twice. A finished id due no
        earlier than the held one goes again, as a new plan asks: one superseded before it
        ran, or one overwritten since by a plan that came and went within the same step."""
        commands = list(commands)
        fresh = [c for c in commands if c.id not in self.open and not self._settled(c)]
        changed: list[Command] = []
        if replace_from is not None:
            kept = {c.id for c in commands}
            changed += [
                c.evolve(state=CommandState.SUPERSEDED)
                for c in self.open.values()
                if c.state is CommandState.PENDING and c.id not in kept and c.due_at >= replace_from
            ]
        self._record(changed + fresh, now)
        return len(fresh)

    def _settled(self, c: Command) -> bool:
        held = self.holding.get((c.asset_id, c.type))
        if held is None:
            return False
        held_id, held_due = held
        return c.id == held_id or c.due_at < held_due

    def pending(self) -> list[Command]:
        return [c for c in self.open.values() if c.state is CommandState.PENDING]

    def _due(self, now: datetime) -> list[Command]:
        ids, self._held = self._held, set()
        while self._ready and self._ready[0][0] <= now:
            ids.add(heapq.heappop(self._ready)[1])
        # the heap may hold stale entries (a command retried or superseded since): check
        return [
            c
            for i in ids
            if (c := self.open.get(i)) is not None and c.state is CommandState.PENDING and _ready_at(c) <= now
        ]

    async def tick(self, now: datetime) -> list[Command]:
        """Send what is due; return the commands that reached a final state in this tick."""
        due = self._due(now)
        newest: dict[tuple[str, str], Command] = {}
        superseded: list[Command] = []
        for c in sorted(due, key=lambda c: (c.due_at, c.attempts == 0)):
            key = (c.asset_id, str(c.type))
            if key in newest:
                superseded.append(newest[key].evolve(state=CommandState.SUPERSEDED))
            newest[key] = c
        expired = [
            c.evolve(state=CommandState.SUPERSEDED, last_error="expired")
            for c in newest.values()
            if c.expires_at and c.expires_at <= now
        ]
        live = [c for c in newest.values() if not (c.expires_at and c.expires_at <= now)]
        sendable = [c for c in live if self.state_of(c.asset_id) not in HOLD_STATES]
        self._held |= {c.id for c in live if self.state_of(c.asset_id) in HOLD_STATES}
        dispatched = [
            clamp(c, self.ratings.get(c.asset_id)).evolve(state=CommandState.DISPATCHED, attempts=c.attempts + 1)
            for c in sendable
        ]
        self._record(superseded + expired + dispatched, now)
        results = await asyncio.gather(*(self._send(c) for c in dispatched))
        finished = [
            self._settle(c, error, now, achieved) for c, (error, achieved) in zip(dispatched, results, strict=True)
        ]
        self._record(finished, now)
        for c in finished:
            if c.state in (CommandState.FAILED, CommandState.TIMED_OUT):
                log.warning(
                    "command %s to %s (%s %s kW) %s after %d attempts: %s",
                    c.id,
                    c.asset_id,
                    c.type,
                    c.value_kw,
                    c.state,
                    c.attempts,
                    c.last_error,
                    extra={**logfields.fields(command_id=c.id, schedule_version=c.source), "asset": c.asset_id},
                )
        return [c for c in finished + superseded + expired if c.done]

    async def _send(self, command: Command) -> tuple[str | None, float | None]:
        """(None, kW the device took or None) when the device carried the command out,
        else (what went wrong, None)."""
        try:
            adapter = self.registry.get(command.asset_id)
            achieved = await asyncio.wait_for(adapter.execute(command), self.policy.timeout_seconds)
        except TimeoutError:
            return "timeout", None
        except NotFound as exc:
            return str(exc), None
        except Exception as exc:  # noqa: BLE001 - a misbehaving adapter must not take the engine down
            return f"{type(exc).__name__}: {exc}", None
        return None, float(achieved) if isinstance(achieved, int | float) and not isinstance(achieved, bool) else None

    def _settle(self, command: Command, error: str | None, now: datetime, achieved: float | None = None) -> Command:
        if error is None:
            value = command.value_kw if achieved is None or command.value_kw is None else round(achieved, 3)
            return command.evolve(state=CommandState.COMPLETED, last_error="", value_kw=value)
        if command.attempts < self.policy.max_attempts:
            return command.evolve(
                state=CommandState.PENDING, next_attempt_at=now + self.policy.delay(command.attempts), last_error=error
            )
        final = CommandState.TIMED_OUT if error == "timeout" else CommandState.FAILED
        return command.evolve(state=final, last_error=error)
