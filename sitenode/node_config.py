"""`node.yaml`: the site config of shared/BUNDLE.md, how the node plans, and how it serves.

```yaml
site: {site_id: depot-north, ...}        # exactly site_config.yaml's schema
plan:                                     # run_config.yaml's tariff/objective, rolling
  step_minutes: 15
  horizon_steps: 96
  reoptimize_minutes: 15
  tariff: {...}
  objective: {cost: 1, carbon: 0, peak: 0}
  priorities: {fleet: 1, ...}
  forecast: seasonal_naive
node:
  listen: 127.0.0.1:50051
  journal: runs/nodes/depot/journal.db    # relative to this file
  history: ../../examples/bundles/depot/timeseries.csv   # optional: seeds the forecasts
  clock_speed: 1.0                        # > 1 runs a simulated clock that much faster
  tokens: [{token: "...", role: operator}, {token_env: VIEWER_TOKEN, role: viewer}]
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from sitenode.errors import InvalidInput
from sitenode.model.run import Objective, Priorities, SolverConfig, Tariff
from sitenode.model.site import SiteConfig, Strict
from sitenode.model.validation import load_yaml_config


class WalkInSession(Strict):
    """What the node assumes of an EV that starts charging without a known session."""

    stay_hours: Annotated[float, Field(gt=0, le=72)] = 8.0
    energy_kwh: Annotated[float, Field(gt=0)] = 30.0
    priority: Annotated[int, Field(ge=1)] = 2


class PlanConfig(Strict):
    step_minutes: int = 15
    horizon_steps: Annotated[int, Field(gt=0, le=2880)] = 96
    reoptimize_minutes: Annotated[float, Field(gt=0)] = 15.0
    tariff: Tariff = Tariff()
    objective: Objective = Objective()
    priorities: Priorities = Priorities()
    solver: SolverConfig = SolverConfig()
    forecast: Literal["persistence", "seasonal_naive"] = "seasonal_naive"
    walk_in: WalkInSession = WalkInSession()
    # a plan (real seconds, whatever the clock's speed) still running past this is abandoned and
    # reported; the schedule in force stays. The MIP's own time limit is held within it.
    deadline_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0


class TokenConfig(Strict):
    token: str | None = None
    token_env: str | None = None
    role: Literal["viewer", "operator"]

    @model_validator(mode="after")
    def _one_source(self) -> TokenConfig:
        if (self.token is None) == (self.token_env is None):
            raise ValueError("give exactly one of token or token_env")
        return self

    def value(self) -> str | None:
        return self.token if self.token is not None else os.environ.get(self.token_env or "")


class ServeConfig(Strict):
    listen: str = "127.0.0.1:50051"
    metrics_listen: str | None = None  # HOST:PORT for Prometheus' /metrics; off when absent
    journal: str = "journal.db"
    history: str | None = None
    clock_speed: Annotated[float, Field(gt=0)] = 1.0
    clock_start: AwareDatetime | None = None  # simulated time at clock_origin_unix (shared by the demo's processes)
    clock_origin_unix: float | None = None
    tick_seconds: Annotated[float, Field(gt=0)] = 1.0
    failsafe_charger_kw: Annotated[float, Field(ge=0)] = 6.0
    tokens: list[TokenConfig] = []


class SunSpecDevice(Strict):
    """A battery inverter speaking SunSpec over Modbus TCP."""

    protocol: Literal["sunspec"] = "sunspec"
    host: str
    port: Annotated[int, Field(gt=0, lt=65536)] = 502
    device_id: Annotated[int, Field(ge=0, le=247)] = 1
    base: int = 40000
    poll_seconds: Annotated[float, Field(gt=0)] = 5.0
    stale_seconds: Annotated[float, Field(gt=0)] = 30.0
    revert_seconds: Annotated[int, Field(gt=0, le=65535)] = 120
    ramp_kw_per_second: Annotated[float, Field(gt=0)] | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 1.0


class OcppCentralSystem(Strict):
    """The node as its chargers' OCPP central system (security profile 1)."""

    listen: str = "127.0.0.1:9000"
    passwords: dict[str, str] = {}  # charge point id -> password; ids must be site chargers
    password_env: str | None = None  # or one password for all, from this variable
    amps_only: list[str] = []  # charge point ids that take limits only in A
    volts: Annotated[float, Field(gt=0)] = 230.0
    phases: Annotated[int, Field(ge=1, le=3)] = 3
    tls_cert: str | None = None  # with tls_key: wss:// (security profile 2); paths relative to node.yaml
    tls_key: str | None = None
    response_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0

    def password(self, charger_id: str) -> str | None:
        if charger_id in self.passwords:
            return self.passwords[charger_id]
        return os.environ.get(self.password_env) if self.password_env else None


class DevicesConfig(Strict):
    """Which protocol adapter reaches each asset; assets not named here run dry."""

    battery: SunSpecDevice | None = None
    ocpp: OcppCentralSystem | None = None


class PortfolioLinkConfig(Strict):
    """The node's stream to the portfolio (mTLS with its site certificate).

    The node follows the portfolio's schedule while it is valid and the link has not been
    down longer than `grace_seconds`; then it optimizes locally within the last import
    limit the portfolio gave it; failing that, it holds the failsafe. Times of the site
    (grace, telemetry, snapshots) run on the node's clock; the ping timeout is network
    time, real seconds.
    """

    address: str  # HOST:PORT
    ca: str | None = None  # the portfolio's CA; with cert/key: mTLS (paths relative to node.yaml)
    cert: str | None = None
    key: str | None = None
    insecure_loopback: bool = False
    grace_seconds: Annotated[float, Field(ge=0)] = 300.0
    telemetry_seconds: Annotated[float, Field(gt=0)] = 60.0
    snapshot_seconds: Annotated[float, Field(gt=0)] = 300.0
    ping_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    ping_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 3.0
    backoff_initial_seconds: Annotated[float, Field(gt=0)] = 0.2
    backoff_max_seconds: Annotated[float, Field(gt=0)] = 10.0

    @model_validator(mode="after")
    def _security(self) -> PortfolioLinkConfig:
        if not self.insecure_loopback and not (self.ca and self.cert and self.key):
            raise InvalidInput.one(
                "portfolio.ca", "give ca, cert and key (mTLS), or insecure_loopback: true for a loopback address"
            )
        if self.ping_timeout_seconds <= self.ping_interval_seconds:
            raise InvalidInput.one(
                "portfolio.ping_timeout_seconds", f"must exceed ping_interval_seconds ({self.ping_interval_seconds:g})"
            )
        return self


class NodeConfig(Strict):
    site: SiteConfig
    plan: PlanConfig = PlanConfig()
    node: ServeConfig = ServeConfig()
    devices: DevicesConfig = DevicesConfig()
    portfolio: PortfolioLinkConfig | None = None

    @model_validator(mode="after")
    def _devices_exist(self) -> NodeConfig:
        if self.devices.battery is not None and self.site.battery is None:
            raise InvalidInput.one("devices.battery", "the site has no battery to connect it to")
        if self.devices.ocpp is not None:
            known = {c.id for c in self.site.chargers}
            for charger_id in self.devices.ocpp.passwords:
                if charger_id not in known:
                    raise InvalidInput.one(f"devices.ocpp.passwords.{charger_id}", "is not a charger of the site")
        return self


def load_node_config(path: str | Path) -> tuple[NodeConfig, Path]:
    """The config and the folder its relative paths are resolved from."""
    return load_yaml_config(NodeConfig, path)
