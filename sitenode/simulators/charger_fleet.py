"""A fleet of simulated charge points run together: connect, boot, then either plug an
EV into each at once or play EV sessions on a clock, reporting meter values as they go."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pandas as pd
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from sitenode.clock import Clock
from sitenode.errors import GridmeshError, InvalidInput
from sitenode.simulators import device_log
from sitenode.simulators.ocpp_charger import (
    RESPONSE_TIMEOUT_SECONDS,
    SimulatedChargePoint,
    connect_charge_point,
    disconnect,
)
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


class CentralSystemUnavailable(GridmeshError):
    """The central system could not be reached, refused a charge point, went away or stopped
    answering: one line that names it, not a traceback."""

    code = "UNAVAILABLE"


async def _connect(
    url: str, cid: str, password: str, max_kw: float, version: str
) -> tuple[SimulatedChargePoint, asyncio.Task]:
    try:
        return await connect_charge_point(url, cid, password, max_kw, version=version)
    except InvalidURI as exc:
        raise InvalidInput.one("central_system", f"not a ws:// or wss:// URL: {exc.uri!r}") from None
    except InvalidStatus as exc:
        raise CentralSystemUnavailable(
            f"the central system at {url} refused charge point {cid}: HTTP {exc.response.status_code}"
        ) from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        why = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc) or type(exc).__name__
        raise CentralSystemUnavailable(f"cannot reach the central system at {url}: {why}") from None


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
    """Connect every charge point, boot it and play until `stop`; then close their sockets and
    return, within seconds whatever the central system does (a request it leaves unanswered is
    abandoned). A central system that cannot be reached, or that goes away or stops answering,
    raises `CentralSystemUnavailable`: the fleet does not reconnect."""
    points: dict[str, tuple[SimulatedChargePoint, asyncio.Task]] = {}

    async def play() -> None:
        for cid in ids:
            points[cid] = await _connect(url, cid, password, max_kw, version)
        for cp, _ in points.values():
            await cp.boot()
            if plug_in_all:
                await cp.plug_in(ev_kw=ev_kw)
        if ready is not None:
            ready.set()
        await _play(points, clock, stop, sessions or [], ids, meter_seconds, tick_seconds)

    body = asyncio.create_task(play())
    halt = asyncio.create_task(stop.wait())
    try:
        while not body.done() and not stop.is_set():
            # a listener ends when its socket closes: the central system went away
            listeners = [task for _, task in points.values()]
            await asyncio.wait([body, halt, *listeners], return_when=asyncio.FIRST_COMPLETED)
            lost = next(((cid, task) for cid, (_, task) in points.items() if task.done()), None)
            if lost is not None and not stop.is_set():
                cid, task = lost
                error = None if task.cancelled() else task.exception()
                raise CentralSystemUnavailable(
                    f"lost the central system at {url} (charge point {cid}): {error or 'connection closed'}"
                )
        if body.done() and not stop.is_set():
            try:
                body.result()
            except TimeoutError:
                raise CentralSystemUnavailable(
                    f"the central system at {url} stopped answering (no reply within {RESPONSE_TIMEOUT_SECONDS:g} s)"
                ) from None
            except ConnectionClosed as exc:
                raise CentralSystemUnavailable(f"lost the central system at {url}: {exc}") from None
    finally:
        halt.cancel()
        body.cancel()  # a request the central system leaves unanswered is not waited for
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await body
        await asyncio.gather(*(disconnect(cp, task) for cp, task in points.values()))


async def _play(
    points: dict[str, tuple[SimulatedChargePoint, asyncio.Task]],
    clock: Clock,
    stop: asyncio.Event,
    sessions: list[PlannedSession],
    ids: list[str],
    meter_seconds: float,
    tick_seconds: float,
) -> None:
    player = SessionPlayer(sessions, ids)
    next_meter = clock.now()
    # each plugged car's battery: what it still takes, in kWh (None: no limit)
    room: dict[str, float | None] = {}
    # with a device log (`device_log`): a restarted fleet keeps its meter registers and what
    # each car has taken, as chargers and cars do across a charger's reboot
    log = device_log.shared()
    taken: dict[str, float] = {}  # session -> kWh drawn so far
    for line in log.read():
        if line.get("kind") == "meter" and line.get("dev") in points:
            points[line["dev"]][0].energy_wh = float(line.get("reg", 0.0))
            if line.get("session"):
                taken[line["session"]] = taken.get(line["session"], 0.0) + float(line.get("wh", 0.0)) / 1000
    for cid in points:
        log.write(cid, "boot", reg=points[cid][0].energy_wh)
    last = clock.now()
    while not stop.is_set():
        now = clock.now()
        hours = max((now - last).total_seconds(), 0.0) / 3600
        last = now
        for cid, (cp, _) in points.items():
            drawn = cp.power_kw() * hours
            cp.energy_wh += drawn * 1000  # the charger's own meter register
            if log.enabled and cp.transaction_id is not None:
                session_id = player.plugged.get(cid)
                if session_id:
                    taken[session_id] = taken.get(session_id, 0.0) + drawn
                log.write(
                    cid,
                    "meter",
                    t=now.isoformat(),
                    dt=round(hours * 3600, 3),  # the energy below was drawn over (t - dt, t]
                    kw=round(cp.power_kw(), 4),
                    wh=round(drawn * 1000, 3),
                    reg=round(cp.energy_wh, 3),
                    session=session_id,
                )
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
            room[cid] = None if session.energy_kwh is None else session.energy_kwh - taken.get(session.session_id, 0.0)
            await points[cid][0].plug_in(ev_kw=session.max_kw)
        if now >= next_meter:
            for cp, _ in points.values():
                await cp.report_power()
            next_meter = now + pd.Timedelta(seconds=meter_seconds).to_pytimedelta()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick_seconds)
