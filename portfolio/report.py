"""What one coupled solve did: kept per solve in the store, returned to operators."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class SiteCost:
    site_id: str
    alone_cost: float
    coupled_cost: float


@dataclass(frozen=True)
class FeederResult:
    feeder_id: str
    holds: bool
    max_excess_kw: float  # worst net import of the sites in the solve above cap − reserved_kw
    binding_steps: int
    # the most kept out of the cap at one step for members absent from the solve (the shares
    # their nodes last acked); reports stored before this key read as 0
    reserved_kw: float = 0.0


@dataclass(frozen=True)
class EventResult:
    event_id: str
    holds: bool
    worst_shortfall_kw: float


@dataclass(frozen=True)
class SolveReport:
    solve_id: str
    at: datetime
    trigger: str
    status: str
    method: str
    objective: float
    alone_objective: float
    coupling_cost: float
    bound: float
    gap: float
    iterations: int
    seconds: float
    horizon_start: datetime | None
    step_minutes: int
    steps: int
    sites: tuple[SiteCost, ...] = ()
    feeders: tuple[FeederResult, ...] = ()
    events: tuple[EventResult, ...] = ()
    relaxed: tuple[str, ...] = ()
    all_hold: bool = True
    schedules: dict[str, str] = field(default_factory=dict)  # site id -> version pushed
    # the plan's coincident peak (max over steps of Σ net import, PortfolioPlan.peak_kw) and
    # its charge, which `objective` includes; reports stored before these keys read as 0
    peak_kw: float = 0.0
    peak_charge: float = 0.0
    solved_at: datetime | None = None  # when the solver returned (reports stored before this key: None)

    def to_json(self) -> str:
        body = asdict(self)
        body["at"] = self.at.isoformat()
        body["horizon_start"] = self.horizon_start.isoformat() if self.horizon_start else None
        body["solved_at"] = self.solved_at.isoformat() if self.solved_at else None
        # JSON has no NaN: an unknown bound is null
        for key in ("bound", "gap", "peak_kw", "peak_charge"):
            if not math.isfinite(body[key]):
                body[key] = None
        return json.dumps(body)

    @classmethod
    def from_json(cls, text: str) -> SolveReport:
        body = json.loads(text)
        body["at"] = datetime.fromisoformat(body["at"])
        body["horizon_start"] = datetime.fromisoformat(body["horizon_start"]) if body["horizon_start"] else None
        body["solved_at"] = datetime.fromisoformat(body["solved_at"]) if body.get("solved_at") else None
        body["bound"] = math.nan if body["bound"] is None else body["bound"]
        body["gap"] = math.nan if body["gap"] is None else body["gap"]
        for key in ("peak_kw", "peak_charge"):
            if key in body and body[key] is None:
                body[key] = math.nan
        body["sites"] = tuple(SiteCost(**s) for s in body["sites"])
        body["feeders"] = tuple(FeederResult(**f) for f in body["feeders"])
        body["events"] = tuple(EventResult(**e) for e in body["events"])
        body["relaxed"] = tuple(body["relaxed"])
        return cls(**body)
