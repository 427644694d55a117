"""What a node measured at one moment, numbered so the portfolio's history has no gap.

The journal gives every point the next sequence number when it is recorded, keeps it
while the link is down, and forgets it once the portfolio has stored it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TelemetryPoint:
    at: datetime
    grid_import_kw: float
    grid_export_kw: float
    load_kw: float
    pv_kw: float
    battery_charge_kw: float
    battery_discharge_kw: float
    soc_kwh: float
    ev_kw: float
    flex_kw: float
    mode: str  # PORTFOLIO, LOCAL or FAILSAFE
    seq: int = 0  # 0 until the journal numbers it
    ev_energy_kwh: float = 0.0  # cumulative measured EV energy (a register: it only grows)
