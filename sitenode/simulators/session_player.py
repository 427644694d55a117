"""Plays EV sessions onto simulated charge points: who plugs in where, and when they leave.

Pure: given the time, it says which sessions arrive (and on which free charger: the one
the session names, else the first free one) and which depart. The simulator process
applies the actions on its clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PlannedSession:
    session_id: str
    arrival: datetime
    departure: datetime
    max_kw: float
    charger_id: str | None = None
    energy_kwh: float | None = None  # the car is full after this much; None: it takes what it is given


@dataclass
class SessionPlayer:
    sessions: list[PlannedSession]
    chargers: list[str]
    plugged: dict[str, str] = field(default_factory=dict)  # charger -> session
    done: set[str] = field(default_factory=set)

    def step(self, now: datetime) -> tuple[list[tuple[str, PlannedSession]], list[str]]:
        """(arrivals as (charger, session), departures as chargers) due at `now`."""
        departures = [cid for cid, sid in self.plugged.items() if self._by_id(sid).departure <= now]
        for cid in departures:
            self.done.add(self.plugged.pop(cid))
        arrivals = []
        waiting = sorted(
            (
                s
                for s in self.sessions
                if s.session_id not in self.done
                and s.session_id not in self.plugged.values()
                and s.arrival <= now < s.departure
            ),
            key=lambda s: s.arrival,
        )
        for s in waiting:
            free = [c for c in self.chargers if c not in self.plugged]
            slot = s.charger_id if s.charger_id in free else (free[0] if free and s.charger_id is None else None)
            if slot is None:
                continue  # its charger is busy (or unknown here): it waits, as at a real depot
            self.plugged[slot] = s.session_id
            arrivals.append((slot, s))
        return arrivals, departures

    def _by_id(self, session_id: str) -> PlannedSession:
        return next(s for s in self.sessions if s.session_id == session_id)
