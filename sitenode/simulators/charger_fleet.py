"""A fleet of simulated charge points run together: connect, boot, then either plug an
EV into each at once or play EV sessions on a clock, reporting meter values as they go."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pandas as pd

from sitenode.clock import Clock
from sitenode.simulators.ocpp_charger import connect_charge_point, disconnect
from sitenode.simulators.session_player import PlannedSession, SessionPlayer

log = logging.getLogger(__name__)


def read_planned_sessions(path: Path) -> list[PlannedSession]:
    """sessions.csv of shared/BUNDLE.md (only the columns a charge point cares about); UTC."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    when = lambda text: pd.to_datetime(text, utc=True).to_pydatetime()  # noqa: E731 - naive times are UTC per the contract
    return [
        PlannedSession(
            r["session_id"],
            when(r["arrival"]),
            when(r["departure"]),
            float(r["max_kw"]),
            r.get("charger_id") or None,
            float(r["energy_kwh"]) if r.get("energy_kwh") else None,
        )
        for r in frame.to_dict("records")
    ]


async def run_fleet(
    url: str,
    ids: list[str],
    password: str,
    *,
    max_kw: float,
    version: str,
    clock: Clock,
    stop: asyncio.Event,
    sessions: list[PlannedSession] | None = None,
    plug_in_all: bool = False,
    ev_kw: float = 11.0,
    meter_seconds: float = 10.0,
    tick_seconds: float = 0.2,
    ready: asyncio.Event | None = None,
) -> None:
    points = {cid: await connect_charge_point(url, cid, password, max_kw, version=version) for cid in ids}
    try:
        for cp, _ in points.values():
            await cp.boot()
            if plug_in_all:
                await cp.plug_in(ev_kw=ev_kw)
        if ready is not None:
            ready.set()
        player = SessionPlayer(sessions or [], ids)
        next_meter = clock.now()
        # each plugged car's battery: what it still takes, in kWh (None: no limit)
        room: dict[str, float | None] = {}
        last = clock.now()
        while not stop.is_set():
            now = clock.now()
            hours = max((now - last).total_seconds(), 0.0) / 3600
            last = now
            for cid, (cp, _) in points.items():
                drawn = cp.power_kw() * hours
                cp.energy_wh += drawn * 1000  # the charger's own meter register
                left = room.get(cid)
                if left is not None:
                    room[cid] = left - drawn
                    if left - drawn <= 0 and cp.ev_kw > 0:
                        cp.ev_kw = 0.0  # full: the car stops drawing, whatever the profile allows
                        await cp.report_power()
            arrivals, departures = player.step(now)
            for cid in departures:
                room.pop(cid, None)
                await points[cid][0].unplug()
            for cid, session in arrivals:
                room[cid] = session.energy_kwh
                await points[cid][0].plug_in(ev_kw=session.max_kw)
            if now >= next_meter:
                for cp, _ in points.values():
                    await cp.report_power()
                next_meter = now + pd.Timedelta(seconds=meter_seconds).to_pytimedelta()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_seconds)
    finally:
        for cp, task in points.values():
            await disconnect(cp, task)
