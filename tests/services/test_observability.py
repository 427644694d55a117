"""What an on-call person sees: the node's and the portfolio's own state on /metrics (scraped over
loopback), JSON log lines with the site, schedule version and command id, and polls that stay
out of the INFO log."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import yaml
from portfolio_rig import make_node as make_rig_node
from portfolio_rig import make_rig_portfolio, until
from prometheus_client.parser import text_string_to_metric_families

from services.logging_setup import JsonFormatter
from services.metrics_node import install_node_metrics
from services.metrics_portfolio import install_portfolio_metrics
from services.node_main import device_registry, make_node
from services.observability import Metrics, is_read
from services.server import start, stop
from services.stubs.gridmesh.v1 import sitenode_pb2, sitenode_pb2_grpc
from sitenode import logfields
from sitenode.clock import SimulatedClock
from sitenode.devices.battery_monitor import BatteryMonitor
from sitenode.dispatch import AdapterError, AdapterRegistry, CommandType, RetryPolicy
from sitenode.node_config import NodeConfig, SunSpecDevice, TokenConfig, load_node_config
from sitenode.runtime import Mode
from sitenode.simulators.sunspec_battery import BatterySpec, SunSpecBatterySim

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 1, 15, 22, 0, tzinfo=UTC)
VIEWER = [("authorization", "Bearer view-token")]
OPERATOR = [("authorization", "Bearer op-token")]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_sync(port: int) -> Samples:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


async def scrape(port: int) -> Samples:
    """GET /metrics from another thread (the collectors read the state on this loop)."""
    return await asyncio.to_thread(scrape_sync, port)


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"no series {name}{labels}"
    return samples[key]


def absent(samples: Samples, name: str, **labels: str) -> bool:
    return (name, tuple(sorted(labels.items()))) not in samples


async def eventually(port: int, check: Callable[[Samples], bool], timeout: float = 20) -> Samples:
    """Scrape until `check` holds."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(port)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError("the metrics did not get there in time")
        await asyncio.sleep(0.1)


class NoOp:
    async def execute(self, command: object) -> None:
        return None


class Refuses:
    async def execute(self, command: object) -> None:
        raise AdapterError("the charger said no")


class Hangs:
    async def execute(self, command: object) -> None:
        await asyncio.sleep(3600)


def depot(tmp_path: Path, **node: object) -> tuple[NodeConfig, Path]:
    config, base = load_node_config(ROOT / "examples" / "nodes" / "depot.yaml")
    tokens = [TokenConfig(token="op-token", role="operator"), TokenConfig(token="view-token", role="viewer")]
    update = {"journal": str(tmp_path / "journal.db"), "tokens": tokens, "tick_seconds": 0.05, **node}
    return config.model_copy(update={"node": config.node.model_copy(update=update)}), base


# ---- the node's metrics, from a real runtime over a real HTTP endpoint


async def test_node_metrics_follow_the_node(tmp_path: Path) -> None:
    config, base = depot(tmp_path)
    registry = AdapterRegistry()
    for c in config.site.chargers:
        registry.register(c.id, NoOp())
    registry.register("ac-01", Refuses())
    registry.register("ac-02", Hangs())
    runtime, built = make_node(
        config, base, "127.0.0.1:0", insecure_loopback=True, clock=SimulatedClock(NOW, 1.0), registry=registry
    )
    runtime.engine.policy = RetryPolicy(max_attempts=2, backoff_seconds=0.01, timeout_seconds=0.2)
    collector = install_node_metrics(built.metrics, runtime)
    await start(built)
    port = built.metrics.serve("127.0.0.1:0")
    stop_event = asyncio.Event()
    try:
        before = await scrape(port)
        site = {"site": "depot-north"}
        # no schedule yet: the failsafe, no solve, nothing failed
        assert value(before, "gridmesh_node_mode", mode="FAILSAFE", **site) == 1.0
        assert value(before, "gridmesh_node_mode", mode="LOCAL", **site) == 0.0
        assert value(before, "gridmesh_node_commands_failed_total", asset="ac-01", **site) == 0.0
        assert value(before, "gridmesh_node_commands_timed_out_total", asset="ac-02", **site) == 0.0
        assert absent(before, "gridmesh_node_last_solve_seconds", **site)
        assert value(before, "gridmesh_node_import_limit_kw", **site) == 260.0
        assert value(before, "gridmesh_node_asset_state", asset="ac-03", state="AVAILABLE", **site) == 1.0
        assert absent(before, "gridmesh_node_link_connected", **site)  # no portfolio configured

        loop = asyncio.create_task(runtime.run(stop_event))
        await until(lambda: runtime.mode(runtime.clock.now()) is Mode.LOCAL, 30)
        runtime.send_command("ac-01", CommandType.SET_CHARGE_RATE, 7.0, 600)
        runtime.send_command("ac-02", CommandType.SET_CHARGE_RATE, 7.0, 600)
        runtime.fire("ac-03", "fault")
        after = await eventually(
            port,
            lambda s: (
                value(s, "gridmesh_node_commands_failed_total", asset="ac-01", **site) >= 1
                and value(s, "gridmesh_node_commands_timed_out_total", asset="ac-02", **site) >= 1
            ),
        )
        assert value(after, "gridmesh_node_mode", mode="LOCAL", **site) == 1.0
        assert value(after, "gridmesh_node_mode", mode="FAILSAFE", **site) == 0.0
        assert value(after, "gridmesh_node_last_solve_status", status="optimal", **site) == 1.0
        assert 0 < value(after, "gridmesh_node_last_solve_seconds", **site) < 30
        assert value(after, "gridmesh_node_last_solve_gap_ratio", **site) == pytest.approx(0, abs=1e-3)
        assert 0 <= value(after, "gridmesh_node_last_solve_age_seconds", **site) < 60
        assert 0 <= value(after, "gridmesh_node_schedule_age_seconds", source="local", **site) < 60
        assert value(after, "gridmesh_node_schedule_expires_in_seconds", **site) > 0
        # the refusing charger's commands failed, the hanging one's timed out; the others' did not
        assert value(after, "gridmesh_node_commands_failed_total", asset="ac-01", **site) >= 1
        assert value(after, "gridmesh_node_commands_timed_out_total", asset="ac-02", **site) >= 1
        assert value(after, "gridmesh_node_commands_failed_total", asset="ac-04", **site) == 0.0
        assert value(after, "gridmesh_node_commands_failed_total", asset="ac-02", **site) == 0.0
        assert value(after, "gridmesh_node_asset_state", asset="ac-03", state="FAULTED", **site) == 1.0
        assert value(after, "gridmesh_node_asset_state", asset="ac-03", state="AVAILABLE", **site) == 0.0
        assert 0 <= value(after, "gridmesh_node_import_kw", **site) <= 260 * 1.2
        assert value(after, "gridmesh_node_plans_abandoned_total", **site) == 0.0
        assert value(after, "gridmesh_metrics_collect_timeouts_total", collector="node") == 0.0
        # a counter only grows: one more refusal, one more count
        failed = value(after, "gridmesh_node_commands_failed_total", asset="ac-01", **site)
        runtime.send_command("ac-01", CommandType.SET_CHARGE_RATE, 8.0, 600)
        await eventually(
            port, lambda s: value(s, "gridmesh_node_commands_failed_total", asset="ac-01", **site) > failed
        )
        stop_event.set()
        await loop
    finally:
        stop_event.set()
        collector.close()
        built.metrics.close()
        await stop(built, 0.1)
        runtime.close()


async def test_a_plan_abandoned_on_the_bus_is_counted(tmp_path: Path) -> None:
    from sitenode.events import EventType, PlanAbandonedEvent

    config, base = depot(tmp_path)
    runtime, built = make_node(config, base, "127.0.0.1:0", insecure_loopback=True, clock=SimulatedClock(NOW))
    metrics = Metrics()
    install_node_metrics(metrics, runtime)
    port = metrics.serve("127.0.0.1:0")
    try:
        runtime.bus.publish(EventType.PLAN_ABANDONED, PlanAbandonedEvent("period", 31.0), runtime.clock.now())
        runtime.bus.publish(EventType.PLAN_ABANDONED, PlanAbandonedEvent("session", 30.5), runtime.clock.now())
        samples = await scrape(port)
        assert value(samples, "gridmesh_node_plans_abandoned_total", site="depot-north") == 2.0
    finally:
        metrics.close()
        runtime.close()


async def test_modbus_battery_connected_and_gone(tmp_path: Path) -> None:
    sim = SunSpecBatterySim(BatterySpec(capacity_kwh=200, max_kw=100, soc_pct=50), step_seconds=0.05)
    sim_port = await sim.start()
    config, base = load_node_config(ROOT / "examples" / "nodes" / "office.yaml")
    config = config.model_copy(
        update={
            "node": config.node.model_copy(update={"journal": str(tmp_path / "j.db")}),
            "devices": config.devices.model_copy(
                update={"battery": SunSpecDevice(host="127.0.0.1", port=sim_port, revert_seconds=600)}
            ),
        }
    )
    registry, battery = device_registry(config, base)
    assert battery is not None
    runtime, _ = make_node(
        config, base, "127.0.0.1:0", insecure_loopback=True, clock=SimulatedClock(NOW), registry=registry
    )
    metrics = Metrics()
    collector = install_node_metrics(metrics, runtime)
    collector.watch_devices(modbus={"battery": battery})
    port = metrics.serve("127.0.0.1:0")
    site = {"site": runtime.config.site.site_id}
    try:
        samples = await scrape(port)
        assert value(samples, "gridmesh_node_device_connected", asset="battery", protocol="modbus", **site) == 0.0
        await BatteryMonitor(battery, runtime, runtime.clock, stale_after=timedelta(seconds=30)).poll()
        samples = await scrape(port)
        assert value(samples, "gridmesh_node_device_connected", asset="battery", protocol="modbus", **site) == 1.0
        assert value(samples, "gridmesh_node_modbus_devices_connected", **site) == 1.0
        await battery.close()
        samples = await scrape(port)
        assert value(samples, "gridmesh_node_device_connected", asset="battery", protocol="modbus", **site) == 0.0
        assert value(samples, "gridmesh_node_modbus_devices_connected", **site) == 0.0
    finally:
        metrics.close()
        await battery.close()
        runtime.close()
        await sim.stop()


async def test_a_scrape_while_the_loop_is_held_leaves_the_state_out(tmp_path: Path) -> None:
    config, base = depot(tmp_path)
    runtime, _ = make_node(config, base, "127.0.0.1:0", insecure_loopback=True, clock=SimulatedClock(NOW))
    metrics = Metrics()
    collector = install_node_metrics(metrics, runtime)
    collector.timeout = 0.2
    port = metrics.serve("127.0.0.1:0")
    try:
        got: list[Samples] = []
        scraper = threading.Thread(target=lambda: got.append(scrape_sync(port)))
        scraper.start()
        scraper.join(5)  # meanwhile the event loop is held (this test holds it): the state cannot be read
        (samples,) = got
        assert absent(samples, "gridmesh_node_mode", mode="FAILSAFE", site="depot-north")
        assert value(samples, "gridmesh_metrics_collect_timeouts_total", collector="node") == 1.0
        samples = await scrape(port)  # the loop is free again
        assert value(samples, "gridmesh_node_mode", mode="FAILSAFE", site="depot-north") == 1.0
    finally:
        metrics.close()
        runtime.close()


# ---- the link and the portfolio, in one loop on loopback


async def test_link_down_past_grace_flips_the_mode_and_the_portfolio_sees_its_sites(tmp_path: Path) -> None:
    pf = make_rig_portfolio(tmp_path)
    await pf.begin()
    install_portfolio_metrics(pf.built.metrics, pf.hub)
    pf_port = pf.built.metrics.serve("127.0.0.1:0")
    node = make_rig_node("office", tmp_path, pf.address, grace_seconds=1.0)
    node_metrics = Metrics()
    install_node_metrics(node_metrics, node.runtime)
    node_port = node_metrics.serve("127.0.0.1:0")
    rt = node.runtime
    site = {"site": "office-east"}
    pf_up = True
    try:
        samples = await scrape(pf_port)
        assert value(samples, "gridmesh_portfolio_nodes_connected") == 0.0
        assert value(samples, "gridmesh_portfolio_solve_period_seconds") == 3600.0
        assert absent(samples, "gridmesh_portfolio_last_solve_seconds")
        node.start()
        await until(lambda: rt.mode(rt.clock.now()) is Mode.PORTFOLIO, 60)
        await until(
            lambda: pf.hub.sites["office-east"].latest is not None and pf.hub.sites["office-east"].latest.mode == 1
        )
        await until(lambda: "office-east" in pf.hub.stored_at)

        samples = await scrape(node_port)
        assert value(samples, "gridmesh_node_mode", mode="PORTFOLIO", **site) == 1.0
        assert value(samples, "gridmesh_node_link_connected", **site) == 1.0
        assert value(samples, "gridmesh_node_schedule_age_seconds", source="portfolio", **site) >= 0
        assert value(samples, "gridmesh_node_telemetry_unacked_points", **site) >= 0
        assert value(samples, "gridmesh_node_telemetry_lag_seconds", **site) < 10

        samples = await scrape(pf_port)
        assert value(samples, "gridmesh_portfolio_nodes_connected") == 1.0
        assert value(samples, "gridmesh_portfolio_site_connected", **site) == 1.0
        assert value(samples, "gridmesh_portfolio_site_mode", mode="PORTFOLIO", **site) == 1.0
        assert value(samples, "gridmesh_portfolio_site_mode", mode="FAILSAFE", **site) == 0.0
        assert 0 <= value(samples, "gridmesh_portfolio_site_telemetry_age_seconds", **site) < 10
        assert value(samples, "gridmesh_portfolio_site_import_kw", **site) >= 0
        limit = rt.config.site.grid.import_limit_kw
        assert value(samples, "gridmesh_portfolio_site_import_limit_kw", **site) == limit
        assert value(samples, "gridmesh_portfolio_solves_total", status="optimal") >= 1
        assert value(samples, "gridmesh_portfolio_solves_total", status="failed") == 0.0
        assert value(samples, "gridmesh_portfolio_last_solve_status", status="optimal") == 1.0
        assert value(samples, "gridmesh_portfolio_last_solve_status", status="error") == 0.0
        assert 0 < value(samples, "gridmesh_portfolio_last_solve_seconds") < 60
        assert value(samples, "gridmesh_portfolio_last_solve_gap_ratio") < 0.01
        assert 0 <= value(samples, "gridmesh_portfolio_last_solve_age_seconds") < 60
        assert 0 <= value(samples, "gridmesh_portfolio_last_planned_solve_age_seconds") < 60
        assert value(samples, "gridmesh_portfolio_last_solve_caps_held") == 1.0
        assert value(samples, "gridmesh_portfolio_asset_state", asset="battery", state="IDLE", **site) == 1.0

        # the portfolio goes away: within the grace the node follows its schedule, then plans alone
        pf.built.metrics.close()
        await pf.end()
        pf_up = False
        await until(lambda: not rt.link.connected, 10)
        await until(lambda: rt.mode(rt.clock.now()) is Mode.LOCAL, 30)
        await until(lambda: rt.journal.telemetry_backlog()[0] >= 2, 10)
        samples = await scrape(node_port)
        assert value(samples, "gridmesh_node_mode", mode="LOCAL", **site) == 1.0
        assert value(samples, "gridmesh_node_mode", mode="PORTFOLIO", **site) == 0.0
        assert value(samples, "gridmesh_node_link_connected", **site) == 0.0
        assert value(samples, "gridmesh_node_telemetry_unacked_points", **site) >= 2
        assert value(samples, "gridmesh_node_telemetry_lag_seconds", **site) > 0
        assert value(samples, "gridmesh_node_last_solve_status", status="optimal", **site) == 1.0
    finally:
        await node.halt()
        node_metrics.close()
        rt.close()
        if pf_up:
            pf.built.metrics.close()
            await pf.end()


# ---- logs


def test_reads_are_told_from_changes() -> None:
    for method in (
        "/gridmesh.v1.SiteNode/GetStatus",
        "/gridmesh.v1.SiteNode/ListAssets",
        "/gridmesh.v1.SiteNode/GetSchedule",
        "/gridmesh.v1.SiteNode/WatchEvents",
        "/gridmesh.v1.Portfolio/GetPortfolioState",
        "/gridmesh.v1.Portfolio/ListSites",
        "/gridmesh.v1.Portfolio/WhoAmI",
        "/grpc.health.v1.Health/Check",
    ):
        assert is_read(method), method
    for method in (
        "/gridmesh.v1.SiteNode/Optimize",
        "/gridmesh.v1.SiteNode/SendCommand",
        "/gridmesh.v1.Portfolio/SetFeeder",
        "/gridmesh.v1.Portfolio/Solve",
        "/gridmesh.v1.Portfolio/CancelFlexEvent",
    ):
        assert not is_read(method), method


def test_json_lines_carry_the_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gridmesh.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.info("plain %s", "line")
        logger.warning(
            "command %s failed",
            "c-1",
            extra={
                **logfields.fields(site="depot-north", schedule_version="local-1", command_id="c-1"),
                "asset": "ac-01",
            },
        )
        tokens = logfields.bind(site="office-east", schedule_version="pf-7")
        try:
            logger.info("bound")
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("it broke")
        finally:
            logfields.unbind(tokens)
        logger.info("unbound")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 5
    plain, failed, bound, broke, unbound = lines
    assert plain["message"] == "plain line" and plain["level"] == "INFO" and plain["logger"] == "gridmesh.test.json"
    assert datetime.fromisoformat(plain["time"]).tzinfo is not None
    assert "site" not in plain and "command_id" not in plain
    assert failed["level"] == "WARNING" and failed["message"] == "command c-1 failed"
    assert (failed["site"], failed["schedule_version"], failed["command_id"], failed["asset"]) == (
        "depot-north",
        "local-1",
        "c-1",
        "ac-01",
    )
    assert (bound["site"], bound["schedule_version"]) == ("office-east", "pf-7")
    assert broke["level"] == "ERROR" and "ValueError: boom" in broke["exception"] and broke["site"] == "office-east"
    assert "site" not in unbound
    with pytest.raises(ValueError, match="not a log field"):
        logfields.fields(sight="x")


async def test_a_status_poll_logs_nothing_at_info_and_a_change_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, base = depot(tmp_path)
    runtime, built = make_node(config, base, "127.0.0.1:0", insecure_loopback=True, clock=SimulatedClock(NOW))
    await start(built)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
    stub = sitenode_pb2_grpc.SiteNodeStub(channel)
    try:
        caplog.set_level(logging.DEBUG, logger="gridmesh.rpc")
        caplog.clear()
        for _ in range(3):
            await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=VIEWER)
        await stub.ListAssets(sitenode_pb2.ListAssetsRequest(), metadata=VIEWER)
        rpc = [r for r in caplog.records if r.name == "gridmesh.rpc"]
        assert [r for r in rpc if r.levelno >= logging.INFO] == []
        assert sum("GetStatus" in r.getMessage() for r in rpc if r.levelno == logging.DEBUG) == 3
        caplog.clear()
        await stub.Optimize(sitenode_pb2.OptimizeRequest(), metadata=OPERATOR)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=[("authorization", "Bearer wrong")])
        infos = [r.getMessage() for r in caplog.records if r.name == "gridmesh.rpc" and r.levelno == logging.INFO]
        assert any("Optimize OK" in m for m in infos), infos
        assert any("GetStatus UNAUTHENTICATED" in m for m in infos), infos  # a failed poll is worth a line
    finally:
        await channel.close()
        await stop(built, 0.1)
        runtime.close()


# ---- a served node as a process: JSON logs, metrics on its port, its devices


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_served_node_logs_json_and_exports_its_devices(tmp_path: Path) -> None:
    grpc_port, ocpp_port, metrics_port = free_port(), free_port(), free_port()
    doc = yaml.safe_load((ROOT / "examples" / "nodes" / "depot.yaml").read_text())
    doc["node"].update(
        journal=str(tmp_path / "j.db"),
        tokens=[{"token": "v", "role": "viewer"}],
        tick_seconds=0.1,
        history=str(ROOT / "examples" / "bundles" / "depot" / "timeseries.csv"),
        metrics_listen=f"127.0.0.1:{metrics_port}",
    )
    doc["devices"] = {"ocpp": {"listen": f"127.0.0.1:{ocpp_port}", "password_env": "CP_PASSWORD"}}
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "CP_PASSWORD": "s3cret", "GRIDMESH_LOG_FORMAT": "json", "GRIDMESH_LOG_LEVEL": "INFO"}
    stderr = (tmp_path / "node.err").open("w")
    node = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "sitenode", "serve", "--config", str(tmp_path / "node.yaml")]
        + ["--listen", f"127.0.0.1:{grpc_port}", "--insecure-loopback"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    sims = None
    site = {"site": "depot-north"}
    assert node.stdout is not None
    try:
        assert "OCPP central system" in node.stdout.readline()
        assert "serving on port" in node.stdout.readline()
        samples = scrape_sync(metrics_port)
        assert value(samples, "gridmesh_node_ocpp_chargers_connected", **site) == 0.0
        assert value(samples, "gridmesh_node_device_connected", asset="ac-01", protocol="ocpp", **site) == 0.0
        sims = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "sim", "chargers", "--central-system"]
            + [f"ws://127.0.0.1:{ocpp_port}/ocpp", "--ids", "ac-01,dc-01", "--password", "s3cret"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert sims.stdout is not None and "2 charge points connected" in sims.stdout.readline()
        samples = scrape_sync(metrics_port)
        assert value(samples, "gridmesh_node_ocpp_chargers_connected", **site) == 2.0
        assert value(samples, "gridmesh_node_device_connected", asset="ac-01", protocol="ocpp", **site) == 1.0
        assert value(samples, "gridmesh_node_device_connected", asset="ac-02", protocol="ocpp", **site) == 0.0
        # polls, as a dashboard makes them
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = sitenode_pb2_grpc.SiteNodeStub(channel)
            for _ in range(5):
                stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=[("authorization", "Bearer v")])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            samples = scrape_sync(metrics_port)
            if value(samples, "gridmesh_node_mode", mode="LOCAL", **site) == 1.0:
                break
            time.sleep(0.2)
        assert value(samples, "gridmesh_node_mode", mode="LOCAL", **site) == 1.0
        sims.send_signal(signal.SIGINT)
        sims.wait(20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            samples = scrape_sync(metrics_port)
            if value(samples, "gridmesh_node_ocpp_chargers_connected", **site) == 0.0:
                break
            time.sleep(0.2)
        assert value(samples, "gridmesh_node_device_connected", asset="ac-01", protocol="ocpp", **site) == 0.0
    finally:
        for proc in (sims, node):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
        stderr.close()
    lines = [line for line in (tmp_path / "node.err").read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records, "the node logged nothing"
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    ours = [r for r in records if r["logger"].startswith(("gridmesh", "sitenode", "services"))]
    assert ours and all(r.get("site") == "depot-north" for r in ours)
    mode = [r for r in records if r["message"].startswith("mode ") and "LOCAL" in r["message"]]
    assert mode and mode[0]["schedule_version"].startswith("local-")
    assert not [r for r in records if "GetStatus" in r["message"]]  # polls are at DEBUG


def test_a_bad_log_format_is_refused_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "GRIDMESH_LOG_FORMAT": "yaml"}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "portfolio", "serve", "--config", str(tmp_path / "portfolio.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2 and "GRIDMESH_LOG_FORMAT:" in done.stderr and "yaml" in done.stderr
    assert "Traceback" not in done.stderr
