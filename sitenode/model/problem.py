"""A site's problem over one horizon: everything the optimizer and baselines need, as arrays.

Building it is the one place where tariffs are resolved to UTC steps, series are cut to
the horizon, and EV sessions are turned into step windows. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from sitenode.errors import InvalidInput
from sitenode.model.run import Objective, Priorities, RunConfig, SolverConfig
from sitenode.model.sessions import EVSession, check_sessions
from sitenode.model.site import SiteConfig
from sitenode.model.tariff import energy_rate_series, window_mask

# when a charger nobody has used became free
EVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SessionWindow:
    """A session seen from the horizon: it may charge in steps [first, stop).

    `need_kwh` must be delivered (shortfall is measured against it); up to `cap_kwh`
    may be. They differ only when the vehicle leaves after the horizon ends: then the
    horizon must deliver what could not be delivered afterwards at `max_kw`.
    """

    session: EVSession
    first: int
    stop: int
    need_kwh: float
    cap_kwh: float
    max_kw: float

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def column(self) -> str:
        return f"ev_{self.session.session_id}_kw"


@dataclass(frozen=True, eq=False)
class DemandWindow:
    name: str
    rate_per_kw: float
    mask: np.ndarray
    floor_kw: float = 0.0  # the peak already set earlier in the billing period


@dataclass(frozen=True, eq=False)
class SiteProblem:
    """One site over one horizon. Arrays have one entry per step; `inf` means no limit."""

    site: SiteConfig
    index: pd.DatetimeIndex
    step_minutes: int
    load_kw: np.ndarray
    pv_kw: np.ndarray
    import_price: np.ndarray
    export_price: np.ndarray
    carbon_kg_per_kwh: np.ndarray
    import_limit_kw: np.ndarray
    export_limit_kw: float
    sessions: tuple[SessionWindow, ...]
    demand_windows: tuple[DemandWindow, ...]
    objective: Objective = field(default_factory=Objective)
    priorities: Priorities = field(default_factory=Priorities)
    solver: SolverConfig = field(default_factory=SolverConfig)
    soc_initial_kwh: float = 0.0
    soc_final_min_kwh: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.index)

    @property
    def dt_h(self) -> float:
        return self.step_minutes / 60.0

    @property
    def start(self) -> datetime:
        return self.index[0].to_pydatetime()


NEGLIGIBLE_KWH = 1e-9


def build_problem(
    site: SiteConfig,
    run: RunConfig,
    series: pd.DataFrame,
    sessions: list[EVSession] | tuple[EVSession, ...] = (),
    *,
    start: datetime | None = None,
    steps: int | None = None,
    soc_initial_kwh: float | None = None,
    delivered_kwh: dict[str, float] | None = None,
    demand_floor_kw: dict[str, float] | None = None,
    reachable_final_soc: bool = False,
) -> SiteProblem:
    """Cut `series` (checked by `check_series`) to the horizon and resolve everything.

    `start`/`steps` override the run's horizon (rolling windows of a backtest), and
    `soc_initial_kwh`, `delivered_kwh` (per session) and `demand_floor_kw` (per demand
    window name) carry state from earlier windows. With `reachable_final_soc` a final
    SOC the battery cannot reach in a short window is lowered to what it can reach;
    otherwise that is an input error.
    """
    check_sessions(site, list(sessions))
    h = run.horizon
    begin = pd.Timestamp(start if start is not None else h.start)
    count = steps if steps is not None else h.steps
    index = pd.date_range(begin, periods=count, freq=f"{h.step_minutes}min", name="timestamp")
    missing = index.difference(series.index)
    if len(missing):
        raise InvalidInput.one(
            "timeseries.timestamp",
            f"the series lacks {len(missing)} step(s) of the horizon, first {missing[0].isoformat()}",
        )
    cut = series.loc[index]
    tz = site.timezone
    tariff = run.tariff

    def column(name: str, fallback: np.ndarray) -> np.ndarray:
        return cut[name].to_numpy(dtype=float) if name in cut.columns else fallback

    zeros = np.zeros(count)
    import_price = column("import_price_per_kwh", zeros)
    if "import_price_per_kwh" not in cut.columns:
        import_price = energy_rate_series(index, tz, tariff.energy_rates)
    export_price = column("export_price_per_kwh", np.full(count, tariff.export_rate or 0.0))
    site_limit = site.grid.import_limit_kw if site.grid.import_limit_kw is not None else math.inf
    import_limit = np.minimum(column("import_limit_kw", np.full(count, math.inf)), site_limit)

    windows = tuple(
        DemandWindow(
            name=dc.name or f"window{i}",
            rate_per_kw=dc.rate_per_kw,
            mask=window_mask(index, tz, dc.schedule),
            floor_kw=(demand_floor_kw or {}).get(dc.name or f"window{i}", 0.0),
        )
        for i, dc in enumerate(tariff.demand_charges)
    )
    dt = h.step_minutes / 60.0
    step_ns = h.step_minutes * 60 * 10**9
    session_windows = tuple(
        w
        for s in sessions
        if (w := _session_window(site, s, index[0], count, step_ns, dt, (delivered_kwh or {}).get(s.session_id, 0.0)))
        is not None
    )
    soc0, soc_final = 0.0, 0.0
    if site.battery is not None:
        b = site.battery
        soc0 = b.soc_initial_kwh if soc_initial_kwh is None else soc_initial_kwh
        soc_final = b.soc_final_min
        rate = b.max_charge_kw if b.max_charge_kw is not None else math.inf
        reachable = min(b.soc_max, soc0 + rate * b.charge_efficiency * dt * count)
        if soc_final > reachable + 1e-9:
            if not reachable_final_soc:
                raise InvalidInput.one(
                    "site_config.battery.soc_final_min_kwh",
                    f"cannot be reached in {count} steps from {soc0:g} kWh at {rate:g} kW (at most {reachable:g}), "
                    f"got {soc_final:g}",
                )
            soc_final = reachable
    return SiteProblem(
        site=site,
        index=index,
        step_minutes=h.step_minutes,
        load_kw=cut["load_kw"].to_numpy(dtype=float),
        pv_kw=cut["pv_kw"].to_numpy(dtype=float),
        import_price=import_price,
        export_price=export_price,
        carbon_kg_per_kwh=column("carbon_kg_per_kwh", zeros),
        import_limit_kw=import_limit,
        export_limit_kw=site.grid.export_limit_kw if site.grid.export_limit_kw is not None else math.inf,
        sessions=session_windows,
        demand_windows=windows,
        objective=run.objective,
        priorities=run.priorities,
        solver=run.solver,
        soc_initial_kwh=soc0,
        soc_final_min_kwh=soc_final,
    )


def _owed(kwh: float) -> float:
    # below a microwatt-hour nothing is owed: a need of 1e-33 kWh would still ask the
    # charger-assignment MIP for a charger, and the engines drop such coefficients differently
    return kwh if kwh >= NEGLIGIBLE_KWH else 0.0


def _session_window(
    site: SiteConfig, s: EVSession, start: pd.Timestamp, count: int, step_ns: int, dt: float, delivered: float
) -> SessionWindow | None:
    """Steps lying wholly between arrival and departure, and what the horizon must deliver."""
    arrive = (pd.Timestamp(s.arrival) - start).value
    leave = (pd.Timestamp(s.departure) - start).value
    first = max(0, -(-arrive // step_ns))
    stop_unclipped = leave // step_ns
    stop = min(count, stop_unclipped)
    if stop_unclipped <= 0 or first >= count:
        return None
    rate = s.max_kw
    if s.charger_id is not None:
        charger = site.charger(s.charger_id)
        assert charger is not None  # check_sessions ran
        rate = min(rate, charger.max_kw)
    elif site.chargers:
        # whichever charger it gets, none draws more than the fastest: the energy left for
        # after the horizon must not be counted at a rate no charger gives
        rate = min(rate, max(c.max_kw for c in site.chargers))
    remaining = _owed(s.energy_kwh - delivered)
    later_kwh = max(0, stop_unclipped - count) * dt * rate
    return SessionWindow(
        session=s,
        first=int(first),
        stop=int(max(first, stop)),
        need_kwh=_owed(remaining - later_kwh),
        cap_kwh=remaining,
        max_kw=rate,
    )
