"""Schedule -> timed setpoint commands, emitted only where a setpoint changes.

Battery: `battery_charge_kw` and `battery_discharge_kw` become SET_CHARGE_RATE and
SET_DISCHARGE_RATE on the battery. Chargers: the EV columns of the sessions on one
charger add up to that charger's SET_CHARGE_RATE (0 pauses it). Starting, stopping and
availability are operators' and protocol adapters' business, not the schedule's.
Pure: the caller passes the setpoints last sent, so a re-plan repeats nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sitenode.dispatch.commands import AssetRating, Command, CommandType, clamp
from sitenode.schedule import CHARGE, DISCHARGE, ev_column

TOLERANCE_KW = 0.01  # below this a change is noise, not a new setpoint


@dataclass(frozen=True)
class AssetMap:
    battery_id: str | None = None
    charger_of_session: dict[str, str] = field(default_factory=dict)


def setpoint_series(schedule: pd.DataFrame, assets: AssetMap) -> dict[tuple[str, CommandType], np.ndarray]:
    out: dict[tuple[str, CommandType], np.ndarray] = {}
    if assets.battery_id is not None:
        out[(assets.battery_id, CommandType.SET_CHARGE_RATE)] = schedule[CHARGE].to_numpy()
        out[(assets.battery_id, CommandType.SET_DISCHARGE_RATE)] = schedule[DISCHARGE].to_numpy()
    per_charger: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(schedule)))
    for session_id, charger_id in assets.charger_of_session.items():
        column = ev_column(session_id)
        if column in schedule.columns:
            per_charger[charger_id] = per_charger[charger_id] + schedule[column].to_numpy()
    for charger_id, values in per_charger.items():
        out[(charger_id, CommandType.SET_CHARGE_RATE)] = values
    return out


def commands_from_schedule(
    schedule: pd.DataFrame,
    source: str,
    assets: AssetMap,
    ratings: dict[str, AssetRating],
    last_sent: dict[tuple[str, CommandType], float] | None = None,
) -> list[Command]:
    """Commands in due order; `last_sent` maps (asset, type) to the value the device holds."""
    held = dict(last_sent or {})
    commands: list[Command] = []
    times = schedule.index.to_pydatetime()
    for key, raw in setpoint_series(schedule, assets).items():
        asset_id, kind = key
        last = held.get(key)
        for i, value in enumerate(np.round(np.asarray(raw, dtype=float), 3).tolist()):
            if last is not None and abs(last - value) < TOLERANCE_KW:
                continue
            last = value
            commands.append(clamp(Command.new(source, asset_id, kind, value, times[i]), ratings.get(asset_id)))
        if last is not None:
            held[key] = last
    commands.sort(key=lambda c: (c.due_at, c.asset_id, c.type))
    return commands
