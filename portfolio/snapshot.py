"""A site as the portfolio knows it from its node's last snapshot, and its problem over a
common horizon.

The node sends what it plans from (site config, run config, forecasts, open sessions,
SOC); the portfolio rebuilds the same `SiteProblem` the node would solve, cut to the
portfolio's horizon, so the coupled model holds each site exactly as the site sees itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from sitenode.errors import InvalidInput
from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.run import RunConfig
from sitenode.model.sessions import EVSession
from sitenode.model.site import SiteConfig


@dataclass(frozen=True, eq=False)
class SiteSnapshot:
    site_id: str
    taken_at: datetime
    site: SiteConfig
    run: RunConfig
    forecast: pd.DataFrame  # indexed by UTC step over the node's horizon
    sessions: tuple[EVSession, ...]
    soc_kwh: float

    @property
    def start(self) -> datetime:
        return self.run.horizon.start

    @property
    def end(self) -> datetime:
        return self.run.horizon.end

    def problem(self, start: datetime, steps: int) -> SiteProblem:
        return build_problem(
            self.site,
            self.run,
            self.forecast,
            list(self.sessions),
            start=start,
            steps=steps,
            soc_initial_kwh=self.soc_kwh,
            reachable_final_soc=True,
        )


@dataclass(frozen=True)
class CommonHorizon:
    start: datetime
    step_minutes: int
    steps: int

    @property
    def end(self) -> datetime:
        return self.start + pd.Timedelta(minutes=self.step_minutes * self.steps).to_pytimedelta()


def common_horizon(
    snapshots: Mapping[str, SiteSnapshot], now: datetime, step_minutes: int, max_steps: int
) -> CommonHorizon | None:
    """The steps every snapshot covers, from the next step on; None when they share none.

    A plan starts at the next step boundary, not in the step under way: every site then
    switches to it at the same instant, and no step is executed half under one plan and
    half under another (each plan keeps a feeder's cap; a mix of two need not).
    A site whose snapshot steps differ from the portfolio's is refused at the snapshot
    (see `check_snapshot`), so here they all agree on the step.
    """
    if not snapshots:
        return None
    step = pd.Timedelta(minutes=step_minutes)
    start = max([pd.Timestamp(now).floor(step) + step] + [pd.Timestamp(s.start) for s in snapshots.values()])
    end = min(pd.Timestamp(s.end) for s in snapshots.values())
    steps = min(max_steps, int((end - start) / step))
    return CommonHorizon(start.to_pydatetime(), step_minutes, steps) if steps > 0 else None


def check_snapshot(snapshot: SiteSnapshot, site_id: str, step_minutes: int) -> None:
    """What the portfolio refuses in a snapshot: another site's, another step, a horizon without forecasts."""
    if snapshot.site.site_id != site_id:
        raise InvalidInput.one(
            "snapshot.site_config_json.site_id",
            f"must be the connected site {site_id!r}, got {snapshot.site.site_id!r}",
        )
    if snapshot.run.horizon.step_minutes != step_minutes:
        raise InvalidInput.one(
            "snapshot.run_config_json.horizon.step_minutes",
            f"must be the portfolio's {step_minutes}, got {snapshot.run.horizon.step_minutes}",
        )
    # build once over the node's own horizon: every input error surfaces here, at receipt
    snapshot.problem(snapshot.start, snapshot.run.horizon.steps)
