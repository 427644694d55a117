"""`portfolio.yaml`: where the portfolio listens, its store, identities, horizon and cadence.

```yaml
portfolio:
  listen: 127.0.0.1:50070
  store: portfolio.db                  # relative to this file
  tls: {cert: certs/servers/portfolio.pem, key: certs/servers/portfolio.key, client_ca: certs/ca.pem}
  tokens: [{token_env: GRIDMESH_OPERATOR_TOKEN, role: operator}]
  step_minutes: 15
  horizon_steps: 96
  solve_period_seconds: 900            # on the portfolio's clock
  schedule_valid_minutes: 60           # a pushed schedule is followed at most this long
  coincident_peak_price_per_kw: 0      # per kW of the portfolio's peak net import, per horizon
feeders: [{feeder_id: north, site_ids: [depot, office], cap_kw: 400}]   # seeded once into the store
solver: {method: auto, ray_address: null}   # RAY_ADDRESS also joins a cluster; see portfolio.solvers
```

`coincident_peak_price_per_kw` prices the portfolio's coincident peak: the largest Σ over all
sites of net import (import − export) at any step of the solve's horizon, charged once per
horizon (currency per kW; 0, the default, leaves it out of the problem). The coupled solve
(`portfolio.coupled`, `portfolio.decomposition`) trades it against the sites' own costs, as a
site trades its demand charge. It is portfolio-wide on purpose, with no window and no per-feeder
variant: what a feeder can carry is already a hard cap (`feeders`), and a charge on one
feeder's peak, or on a window of hours, would bill a contract the portfolio does not have
(the sites' own windowed demand charges stay in their tariffs). Each solve bills the peak of
its own horizon (with a day-long horizon, a day's peak): for a monthly tariff the operator
sets what one horizon's peak is worth, at most the monthly rate per kW.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AwareDatetime, Field

from portfolio.model import Feeder
from portfolio.solvers import SolverConfig
from sitenode.model.site import Strict
from sitenode.model.validation import load_yaml_config
from sitenode.node_config import TokenConfig


class TlsConfig(Strict):
    cert: str
    key: str
    client_ca: str  # nodes must present a certificate signed by this CA


class PortfolioSettings(Strict):
    listen: str = "127.0.0.1:50070"
    store: str = "portfolio.db"
    tls: TlsConfig | None = None
    tokens: list[TokenConfig] = []
    step_minutes: Annotated[int, Field(gt=0, le=60)] = 15
    horizon_steps: Annotated[int, Field(gt=0, le=2880)] = 96
    solve_period_seconds: Annotated[float, Field(gt=0)] = 900.0
    schedule_valid_minutes: Annotated[float, Field(gt=0)] = 60.0
    # currency per kW of the portfolio's peak net import over a solve's horizon (module doc)
    coincident_peak_price_per_kw: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    plan_lead_seconds: Annotated[float, Field(ge=0)] = 60.0  # a plan starts at a step boundary at least this far ahead
    ping_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    ping_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 3.0
    # a site's stored telemetry is acked at most this often (0: after every write); under a
    # flood of telemetry every write would otherwise send every site an ack
    telemetry_ack_seconds: Annotated[float, Field(ge=0, le=60)] = 0.5
    snapshot_seconds: Annotated[int, Field(gt=0)] = 300
    clock_speed: Annotated[float, Field(gt=0)] = 1.0
    clock_start: AwareDatetime | None = None  # as the node's: simulated time at clock_origin_unix
    clock_origin_unix: float | None = None
    metrics_listen: str | None = None


class PortfolioConfig(Strict):
    portfolio: PortfolioSettings = PortfolioSettings()
    feeders: list[Feeder] = []
    solver: SolverConfig = SolverConfig()  # monolithic, decomposition on Ray, or auto (see portfolio.solvers)


def load_portfolio_config(path: str | Path) -> tuple[PortfolioConfig, Path]:
    """The config and the folder its relative paths (store, TLS files) are resolved from."""
    return load_yaml_config(PortfolioConfig, path)
