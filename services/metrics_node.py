"""A site node's own state as Prometheus metrics, read from the runtime when scraped.

Gauges come from the runtime, its journal and its devices at scrape time (on the node's event
loop, `LoopCollector`), so none goes stale; the counters (commands failed or timed out by asset,
plans abandoned) count the dispatch engine's events on the node's bus. Every series carries
the `site` label. Ages are on the node's clock (a simulated one in the demo).

    gridmesh_node_mode{mode}                       1 for the mode the node is in (PORTFOLIO, LOCAL, FAILSAFE), else 0
    gridmesh_node_link_connected                   1 while the portfolio stream is up (nodes with a portfolio)
    gridmesh_node_schedule_age_seconds{source}     since the schedule in force was received or made
    gridmesh_node_schedule_expires_in_seconds      until it stops being valid (negative: expired)
    gridmesh_node_last_solve_seconds               the node's last own solve: build + solve + extract
    gridmesh_node_last_solve_status{status}        1 for its solver status, else 0
    gridmesh_node_last_solve_gap_ratio             its relative optimality gap
    gridmesh_node_last_solve_age_seconds           since the node last planned on its own
    gridmesh_node_plans_abandoned_total            plans given up (past their deadline)
    gridmesh_node_commands_failed_total{asset}     commands that ended FAILED
    gridmesh_node_commands_timed_out_total{asset}  commands that ended TIMED_OUT
    gridmesh_node_commands_open                    commands pending or on the wire
    gridmesh_node_telemetry_unacked_points         telemetry points the portfolio has not acked yet
    gridmesh_node_telemetry_lag_seconds            age of the oldest of them (0: none waiting)
    gridmesh_node_device_connected{asset,protocol} 1 while the device's link is up (ocpp, modbus)
    gridmesh_node_ocpp_chargers_connected          charge points connected to the node's central system
    gridmesh_node_modbus_devices_connected         SunSpec devices the node is connected to
    gridmesh_node_asset_state{asset,state}         1 for the asset's state machine state, else 0
    gridmesh_node_import_kw                        what the site imports now
    gridmesh_node_import_limit_kw                  the limit it must keep now (its connection, or the
                                                   portfolio's share when lower)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

import pandas as pd
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from services.observability import COLLECT_TIMEOUT_SECONDS, LoopCollector, Metrics
from sitenode.events import CommandEvent, EventType
from sitenode.optimizer.result import SolverStatus
from sitenode.runtime import Mode, NodeRuntime

log = logging.getLogger("gridmesh.metrics")
EVENT_BACKLOG = 10_000  # events between two scrapes; beyond, the oldest are dropped (and counted)


class OcppDevices(Protocol):
    """What the metrics read of the OCPP central system (sitenode.devices.ocpp_central.CentralSystem)."""

    @property
    def passwords(self) -> Mapping[str, str]: ...  # the charge points expected to connect

    @property
    def links(self) -> Mapping[str, object]: ...  # those connected


class ModbusDevice(Protocol):
    """What the metrics read of a SunSpec device (sitenode.devices.modbus_battery.SunSpecBattery)."""

    @property
    def models(self) -> Mapping[int, int]: ...  # scanned once connected

    @property
    def client(self) -> object: ...


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["site", *labels])


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=["site", *labels])


FAMILIES: dict[str, tuple[str, str, list[str]]] = {
    # name (counters without _total): kind, help, labels besides site
    "gridmesh_node_mode": ("gauge", "1 for the mode the node is in, else 0", ["mode"]),
    "gridmesh_node_link_connected": ("gauge", "1 while the portfolio stream is up", []),
    "gridmesh_node_schedule_age_seconds": (
        "gauge",
        "seconds since the schedule in force was received or made",
        ["source"],
    ),
    "gridmesh_node_schedule_expires_in_seconds": (
        "gauge",
        "seconds until the schedule in force stops being valid (negative: expired)",
        [],
    ),
    "gridmesh_node_last_solve_seconds": ("gauge", "the node's last own solve: build, solve and extract", []),
    "gridmesh_node_last_solve_status": ("gauge", "1 for the last own solve's solver status, else 0", ["status"]),
    "gridmesh_node_last_solve_gap_ratio": ("gauge", "the last own solve's relative optimality gap", []),
    "gridmesh_node_last_solve_age_seconds": ("gauge", "seconds since the node last planned on its own", []),
    "gridmesh_node_plans_abandoned": ("counter", "plans given up past their deadline", []),
    "gridmesh_node_commands_failed": ("counter", "device commands that ended FAILED", ["asset"]),
    "gridmesh_node_commands_timed_out": ("counter", "device commands that ended TIMED_OUT", ["asset"]),
    "gridmesh_node_commands_open": ("gauge", "device commands pending or on the wire", []),
    "gridmesh_node_metric_events_dropped": (
        "counter",
        "dispatch events the metrics lost (more than the backlog between two scrapes)",
        [],
    ),
    "gridmesh_node_telemetry_unacked_points": ("gauge", "telemetry points the portfolio has not acked yet", []),
    "gridmesh_node_telemetry_lag_seconds": (
        "gauge",
        "age of the oldest telemetry point the portfolio has not acked (0: none)",
        [],
    ),
    "gridmesh_node_device_connected": ("gauge", "1 while the device's link is up", ["asset", "protocol"]),
    "gridmesh_node_ocpp_chargers_connected": ("gauge", "charge points connected to the node", []),
    "gridmesh_node_modbus_devices_connected": ("gauge", "SunSpec Modbus devices the node is connected to", []),
    "gridmesh_node_asset_state": ("gauge", "1 for the asset's state machine state, else 0", ["asset", "state"]),
    "gridmesh_node_import_kw": ("gauge", "what the site imports from the grid now, kW", []),
    "gridmesh_node_import_limit_kw": (
        "gauge",
        "the import limit the site must keep now (its connection, or the portfolio's share when lower), kW",
        [],
    ),
}


def _family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    kind, doc, labels = FAMILIES[name]
    return _counter(name, doc, labels) if kind == "counter" else _gauge(name, doc, labels)


class NodeCollector(LoopCollector):
    name = "node"

    def __init__(
        self,
        runtime: NodeRuntime,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout: float = COLLECT_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(loop, timeout)
        self.runtime = runtime
        self.site = runtime.config.site.site_id
        self._events = runtime.bus.subscribe(
            (EventType.COMMAND_FAILED, EventType.COMMAND_TIMED_OUT, EventType.PLAN_ABANDONED), maxsize=EVENT_BACKLOG
        )
        # every asset that takes commands starts at 0, so rate() and increase() see the first failure
        self.failed: dict[str, int] = dict.fromkeys(runtime.ratings, 0)
        self.timed_out: dict[str, int] = dict.fromkeys(runtime.ratings, 0)
        self.abandoned = 0
        self.ocpp: OcppDevices | None = None
        self.modbus: dict[str, ModbusDevice] = {}

    def watch_devices(self, ocpp: OcppDevices | None = None, modbus: dict[str, ModbusDevice] | None = None) -> None:
        """The node's device links: its OCPP central system, its SunSpec devices by asset id."""
        self.ocpp = ocpp
        self.modbus = dict(modbus or {})

    def close(self) -> None:
        self._events.close()

    # -- reading ----------------------------------------------------------------------------
    def _drain(self) -> None:
        queue = self._events.queue
        while not queue.empty():
            event = queue.get_nowait()
            payload = event.payload
            if event.type is EventType.COMMAND_FAILED and isinstance(payload, CommandEvent):
                self.failed[payload.asset_id] = self.failed.get(payload.asset_id, 0) + 1
            elif event.type is EventType.COMMAND_TIMED_OUT and isinstance(payload, CommandEvent):
                self.timed_out[payload.asset_id] = self.timed_out.get(payload.asset_id, 0) + 1
            elif event.type is EventType.PLAN_ABANDONED:
                self.abandoned += 1

    def families(self) -> list[Metric]:
        return [_family(name) for name in FAMILIES]

    def read(self) -> list[Metric]:
        self._drain()
        rt, site = self.runtime, self.site
        now = rt.clock.now()
        out = {name: _family(name) for name in FAMILIES}

        mode = rt.mode(now)
        for m in Mode:
            out["gridmesh_node_mode"].add_metric([site, str(m)], 1.0 if m is mode else 0.0)
        if rt.config.portfolio is not None:
            out["gridmesh_node_link_connected"].add_metric([site], 1.0 if rt.link.connected else 0.0)
            count, oldest = rt.journal.telemetry_backlog()
            out["gridmesh_node_telemetry_unacked_points"].add_metric([site], count)
            lag = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
            out["gridmesh_node_telemetry_lag_seconds"].add_metric([site], lag)

        current = rt.schedule()
        if current is not None:
            out["gridmesh_node_schedule_age_seconds"].add_metric(
                [site, current.source], (now - current.received_at).total_seconds()
            )
            out["gridmesh_node_schedule_expires_in_seconds"].add_metric(
                [site], (current.valid_until - now).total_seconds()
            )

        plan = rt.last_plan
        if plan is not None:
            result = plan.result
            out["gridmesh_node_last_solve_seconds"].add_metric([site], result.total_seconds)
            for status in SolverStatus:
                out["gridmesh_node_last_solve_status"].add_metric(
                    [site, str(status)], 1.0 if status == result.status else 0.0
                )
            out["gridmesh_node_last_solve_gap_ratio"].add_metric([site], float(result.gap))
        if rt.last_optimized_at is not None:
            out["gridmesh_node_last_solve_age_seconds"].add_metric([site], (now - rt.last_optimized_at).total_seconds())

        out["gridmesh_node_plans_abandoned"].add_metric([site], self.abandoned)
        for asset, n in sorted(self.failed.items()):
            out["gridmesh_node_commands_failed"].add_metric([site, asset], n)
        for asset, n in sorted(self.timed_out.items()):
            out["gridmesh_node_commands_timed_out"].add_metric([site, asset], n)
        out["gridmesh_node_commands_open"].add_metric([site], len(rt.engine.open))
        out["gridmesh_node_metric_events_dropped"].add_metric([site], self._events.dropped)

        self._devices(out)
        for asset, machine in sorted(rt.machines.items()):
            for state in machine.spec.states:
                out["gridmesh_node_asset_state"].add_metric(
                    [site, asset, state], 1.0 if state == machine.state else 0.0
                )

        out["gridmesh_node_import_kw"].add_metric([site], rt.flows(now).grid_import_kw)
        limit = self._import_limit(now)
        if limit is not None:
            out["gridmesh_node_import_limit_kw"].add_metric([site], limit)
        return list(out.values())

    def _devices(self, out: dict[str, GaugeMetricFamily | CounterMetricFamily]) -> None:
        site = self.site
        if self.ocpp is not None:
            links = set(self.ocpp.links)
            for charger in sorted(self.ocpp.passwords):
                out["gridmesh_node_device_connected"].add_metric(
                    [site, charger, "ocpp"], 1.0 if charger in links else 0.0
                )
            out["gridmesh_node_ocpp_chargers_connected"].add_metric([site], len(links))
        if self.modbus:
            up = 0
            for asset, device in sorted(self.modbus.items()):
                connected = bool(getattr(device.client, "connected", False)) and bool(device.models)
                up += connected
                out["gridmesh_node_device_connected"].add_metric([site, asset, "modbus"], 1.0 if connected else 0.0)
            out["gridmesh_node_modbus_devices_connected"].add_metric([site], up)

    def _import_limit(self, now: datetime) -> float | None:
        rt = self.runtime
        limits = [rt.config.site.grid.import_limit_kw] if rt.config.site.grid.import_limit_kw else []
        if rt.import_limit is not None:
            at = pd.DatetimeIndex([pd.Timestamp(now)])
            limits.append(float(rt.import_limit.over(at)[0]))
        return min(limits) if limits else None


def install_node_metrics(metrics: Metrics, runtime: NodeRuntime) -> NodeCollector:
    """The node's state on `metrics`' registry, read on the running event loop when scraped."""
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    collector = NodeCollector(runtime, loop)
    metrics.add(collector)
    return collector
