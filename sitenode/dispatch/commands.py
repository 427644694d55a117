"""Device commands and their lifecycle.

    PENDING -> DISPATCHED -> COMPLETED | FAILED | TIMED_OUT
       ^           |
       +-- retry --+            (and SUPERSEDED: a newer setpoint for the same asset won)

A command's id is its idempotency id, derived from what it says (asset, type, due time,
value) and not from which plan said it: a re-plan that keeps a setpoint keeps its
command, and a device or journal that has seen an id knows it is a repeat.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class CommandType(StrEnum):
    SET_CHARGE_RATE = "SET_CHARGE_RATE"
    SET_DISCHARGE_RATE = "SET_DISCHARGE_RATE"
    START_CHARGING = "START_CHARGING"
    STOP_CHARGING = "STOP_CHARGING"
    CHANGE_AVAILABILITY = "CHANGE_AVAILABILITY"


class CommandState(StrEnum):
    PENDING = "PENDING"
    DISPATCHED = "DISPATCHED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    SUPERSEDED = "SUPERSEDED"


TERMINAL = frozenset({CommandState.COMPLETED, CommandState.FAILED, CommandState.TIMED_OUT, CommandState.SUPERSEDED})
SETPOINTS = frozenset({CommandType.SET_CHARGE_RATE, CommandType.SET_DISCHARGE_RATE})


def idempotency_id(asset_id: str, kind: CommandType, due_at: datetime, value: float | None) -> str:
    text = f"{asset_id}|{kind}|{due_at.isoformat()}|{'' if value is None else f'{value:.3f}'}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Command:
    id: str
    asset_id: str
    type: CommandType
    value_kw: float | None  # kW for setpoints; 1/0 for CHANGE_AVAILABILITY (operative or not)
    due_at: datetime
    source: str  # schedule version, or "manual"
    state: CommandState = CommandState.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str = ""
    expires_at: datetime | None = None

    @classmethod
    def new(
        cls,
        source: str,
        asset_id: str,
        kind: CommandType,
        value: float | None,
        due_at: datetime,
        expires_at: datetime | None = None,
    ) -> Command:
        value = None if value is None else round(float(value), 3)
        return cls(
            idempotency_id(asset_id, kind, due_at, value), asset_id, kind, value, due_at, source, expires_at=expires_at
        )

    def evolve(self, **changes: object) -> Command:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True)
class AssetRating:
    """What an asset can take; every setpoint is clamped to it before it leaves the node."""

    asset_id: str
    kind: str  # "charger" or "battery"
    max_charge_kw: float
    max_discharge_kw: float = 0.0


def clamp(command: Command, rating: AssetRating | None) -> Command:
    """The setpoint within the asset's ratings; an unknown asset's setpoints go to zero."""
    if command.type not in SETPOINTS or command.value_kw is None:
        return command
    top = 0.0
    if rating is not None:
        top = rating.max_charge_kw if command.type is CommandType.SET_CHARGE_RATE else rating.max_discharge_kw
    value = min(max(command.value_kw, 0.0), top)
    return command if value == command.value_kw else command.evolve(value_kw=value)
