"""The portfolio's own state as Prometheus metrics, read from the hub when scraped.

Everything is read at scrape time on the portfolio's event loop (`LoopCollector`): the hub's
streams, each site's latest telemetry and snapshot, and the solves the hub has run (it counts
them by status and keeps the latest report). Ages are on the portfolio's clock (a simulated
one in the demo), like `solve_period_seconds`.

    gridmesh_portfolio_nodes_connected                 site nodes with a stream up
    gridmesh_portfolio_site_connected{site}            1 while the site's stream is up (every known site)
    gridmesh_portfolio_site_mode{site,mode}            1 for the mode a connected site's latest telemetry shows
    gridmesh_portfolio_site_telemetry_age_seconds{site} age of the site's newest stored telemetry point
    gridmesh_portfolio_site_import_kw{site}            a connected site's import, from its latest telemetry
    gridmesh_portfolio_site_import_limit_kw{site}      the site's import limit (its connection, from its snapshot)
    gridmesh_portfolio_asset_state{site,asset,state}   1 for each asset's state in a connected site's snapshot
    gridmesh_portfolio_solves_total{status}            coupled solves by status (failed: the solve raised)
    gridmesh_portfolio_last_solve_seconds              the last coupled solve's solver time
    gridmesh_portfolio_last_solve_status{status}       1 for its status, else 0
    gridmesh_portfolio_last_solve_gap_ratio            its relative gap (decomposition: the certified gap)
    gridmesh_portfolio_last_solve_age_seconds          since it started
    gridmesh_portfolio_last_solve_caps_held            1 when every feeder cap and flex event held in its plan
    gridmesh_portfolio_last_planned_solve_age_seconds  since the last solve that made a plan (or the start)
    gridmesh_portfolio_solve_period_seconds            the configured solve period
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from portfolio.report import SolveReport
from services import portfolio_convert as pc
from services.observability import COLLECT_TIMEOUT_SECONDS, LoopCollector, Metrics
from services.portfolio_hub import PLANNED, PortfolioHub
from services.stubs.gridmesh.v1 import portfolio_pb2
from sitenode.optimizer.result import SolverStatus

MODES = ("PORTFOLIO", "LOCAL", "FAILSAFE")
STATUSES = (*(str(s) for s in SolverStatus), "no_sites")

FAMILIES: dict[str, tuple[str, str, list[str]]] = {
    # name (counters without _total): kind, help, labels
    "gridmesh_portfolio_nodes_connected": ("gauge", "site nodes with a stream up", []),
    "gridmesh_portfolio_site_connected": ("gauge", "1 while the site's stream is up", ["site"]),
    "gridmesh_portfolio_site_mode": (
        "gauge",
        "1 for the mode a connected site's latest telemetry shows, else 0",
        ["site", "mode"],
    ),
    "gridmesh_portfolio_site_telemetry_age_seconds": (
        "gauge",
        "age of the site's newest stored telemetry point",
        ["site"],
    ),
    "gridmesh_portfolio_site_import_kw": ("gauge", "a connected site's grid import, latest telemetry, kW", ["site"]),
    "gridmesh_portfolio_site_import_limit_kw": ("gauge", "the site's import limit (its connection), kW", ["site"]),
    "gridmesh_portfolio_asset_state": (
        "gauge",
        "1 for each asset's state in a connected site's latest snapshot",
        ["site", "asset", "state"],
    ),
    "gridmesh_portfolio_solves": ("counter", "coupled solves by status (failed: the solve raised)", ["status"]),
    "gridmesh_portfolio_last_solve_seconds": ("gauge", "the last coupled solve's solver time", []),
    "gridmesh_portfolio_last_solve_status": ("gauge", "1 for the last coupled solve's status, else 0", ["status"]),
    "gridmesh_portfolio_last_solve_gap_ratio": ("gauge", "the last coupled solve's relative gap", []),
    "gridmesh_portfolio_last_solve_age_seconds": ("gauge", "seconds since the last coupled solve started", []),
    "gridmesh_portfolio_last_solve_caps_held": (
        "gauge",
        "1 when every feeder cap and flex event held in the last coupled solve's plan",
        [],
    ),
    "gridmesh_portfolio_last_planned_solve_age_seconds": (
        "gauge",
        "seconds since the last coupled solve that made a plan started (or since the portfolio started)",
        [],
    ),
    "gridmesh_portfolio_solve_period_seconds": ("gauge", "the configured period of the coupled solve", []),
}


def _family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    kind, doc, labels = FAMILIES[name]
    return (
        CounterMetricFamily(name, doc, labels=labels)
        if kind == "counter"
        else GaugeMetricFamily(name, doc, labels=labels)
    )


class PortfolioCollector(LoopCollector):
    name = "portfolio"

    def __init__(
        self, hub: PortfolioHub, loop: asyncio.AbstractEventLoop | None = None, timeout: float = COLLECT_TIMEOUT_SECONDS
    ) -> None:
        super().__init__(loop, timeout)
        self.hub = hub
        self._stored: SolveReport | None = None  # the latest report in the store at the first scrape (a restart)
        self._looked = False

    def families(self) -> list[Metric]:
        return [_family(name) for name in FAMILIES]

    def _latest(self) -> tuple[SolveReport | None, datetime | None]:
        """The latest solve's report, and when the latest that made a plan started."""
        hub = self.hub
        if not self._looked:  # once: a restarted portfolio reports its last solve before it solves again
            self._looked = True
            record = hub.store.latest_report()
            self._stored = SolveReport.from_json(record.payload) if record is not None else None
        stored = self._stored
        latest = hub.last_report or stored
        planned = hub.last_planned or (stored if stored is not None and stored.status in PLANNED else None)
        return latest, planned.at if planned is not None else None

    def read(self) -> list[Metric]:
        hub = self.hub
        now = hub.clock.now()
        out = {name: _family(name) for name in FAMILIES}
        connected = hub.connections
        out["gridmesh_portfolio_nodes_connected"].add_metric([], len(connected))
        for site_id in sorted(set(hub.sites) | set(connected)):
            up = site_id in connected
            out["gridmesh_portfolio_site_connected"].add_metric([site_id], 1.0 if up else 0.0)
            stored_at = hub.stored_at.get(site_id)
            if stored_at is not None:
                age = (now - pc.from_ts(stored_at)).total_seconds()
                out["gridmesh_portfolio_site_telemetry_age_seconds"].add_metric([site_id], age)
            live = hub.sites.get(site_id)
            if live is None:
                continue
            if live.snapshot is not None and live.snapshot.site.grid.import_limit_kw:
                out["gridmesh_portfolio_site_import_limit_kw"].add_metric(
                    [site_id], live.snapshot.site.grid.import_limit_kw
                )
            if not up:
                continue  # what a site said before its stream went down is no longer its state
            if live.latest is not None:
                mode = portfolio_pb2.NodeLinkMode.Name(live.latest.mode).removeprefix("NODE_LINK_MODE_")
                for m in MODES:
                    out["gridmesh_portfolio_site_mode"].add_metric([site_id, m], 1.0 if m == mode else 0.0)
                out["gridmesh_portfolio_site_import_kw"].add_metric([site_id], live.latest.grid_import_kw)
            if live.snapshot_msg is not None:
                for asset in live.snapshot_msg.assets:
                    if asset.state:
                        out["gridmesh_portfolio_asset_state"].add_metric([site_id, asset.asset_id, asset.state], 1.0)

        for status in sorted({*STATUSES, "failed", *hub.solves}):
            out["gridmesh_portfolio_solves"].add_metric([status], hub.solves.get(status, 0))
        latest, planned_at = self._latest()
        if latest is not None:
            out["gridmesh_portfolio_last_solve_seconds"].add_metric([], latest.seconds)
            for status in sorted({*STATUSES, latest.status}):
                out["gridmesh_portfolio_last_solve_status"].add_metric(
                    [status], 1.0 if status == latest.status else 0.0
                )
            if math.isfinite(latest.gap):
                out["gridmesh_portfolio_last_solve_gap_ratio"].add_metric([], latest.gap)
            out["gridmesh_portfolio_last_solve_age_seconds"].add_metric([], (now - latest.at).total_seconds())
            out["gridmesh_portfolio_last_solve_caps_held"].add_metric([], 1.0 if latest.all_hold else 0.0)
        since = planned_at if planned_at is not None else hub.started_at
        out["gridmesh_portfolio_last_planned_solve_age_seconds"].add_metric([], (now - since).total_seconds())
        out["gridmesh_portfolio_solve_period_seconds"].add_metric([], hub.settings.solve_period_seconds)
        return list(out.values())


def install_portfolio_metrics(metrics: Metrics, hub: PortfolioHub) -> PortfolioCollector:
    """The portfolio's state on `metrics`' registry, read on the running event loop when scraped."""
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    collector = PortfolioCollector(hub, loop)
    metrics.add(collector)
    return collector
