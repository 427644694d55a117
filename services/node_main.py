"""`gridmesh sitenode serve`: a site node's runtime behind its gRPC server, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc

from services.auth import Role
from services.lifecycle import finish
from services.loop_lag import LoopLag
from services.metrics_node import install_node_metrics
from services.server import Built, ServerOptions, build_server, start, stop, stop_on_signals
from services.sitenode_service import OPERATOR_METHODS, SiteNodeServicer
from services.stubs.gridmesh.v1 import sitenode_pb2_grpc
from sitenode import logfields
from sitenode.clock import Clock, clock_for
from sitenode.devices.battery_monitor import BatteryMonitor
from sitenode.devices.modbus_battery import SunSpecBattery
from sitenode.devices.ocpp_central import CentralSystem, ChargerNode
from sitenode.dispatch import AdapterRegistry, AssetRating
from sitenode.dryrun import DryRunDevice
from sitenode.node_config import NodeConfig, load_node_config
from sitenode.runtime import BATTERY_ID, NodeRuntime

log = logging.getLogger("gridmesh.sitenode")


@dataclass(frozen=True)
class ServeArgs:
    config: Path
    listen: str | None = None
    insecure_loopback: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None


def tokens_of(config: NodeConfig) -> dict[str, Role]:
    return {value: Role(t.role) for t in config.node.tokens if (value := t.value())}


def make_node(
    config: NodeConfig,
    base: Path,
    listen: str,
    *,
    insecure_loopback: bool,
    clock: Clock | None = None,
    registry: AdapterRegistry | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> tuple[NodeRuntime, Built]:
    n = config.node
    clock = clock or clock_for(n.clock_speed, n.clock_start, n.clock_origin_unix)
    runtime = NodeRuntime(config, base, clock, registry)

    def register(server: grpc.aio.Server) -> list[str]:
        sitenode_pb2_grpc.add_SiteNodeServicer_to_server(SiteNodeServicer(runtime), server)
        return ["gridmesh.v1.SiteNode"]

    options = ServerOptions(
        listen=listen,
        insecure_loopback=insecure_loopback,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tokens=tokens_of(config),
        operator_methods=OPERATOR_METHODS,
    )
    return runtime, build_server(options, register)


def default_profile_w(config: NodeConfig) -> dict[str, float]:
    """Each charger's persistent limit: its share of the site's import limit, at most its
    rating, so chargers that lose the node cannot together exceed the connection."""
    chargers = config.site.chargers
    limit = config.site.grid.import_limit_kw
    share = limit / len(chargers) if limit and chargers else None
    return {c.id: 1000 * (min(c.max_kw, share) if share else c.max_kw) for c in chargers}


def central_system(config: NodeConfig, node: ChargerNode) -> CentralSystem | None:
    spec = config.devices.ocpp
    if spec is None:
        return None
    passwords = {c.id: pw for c in config.site.chargers if (pw := spec.password(c.id))}
    amps = {cid: spec.volts * spec.phases for cid in spec.amps_only}
    return CentralSystem(node, passwords, default_profile_w(config), spec.response_timeout_seconds, amps)


def device_registry(
    config: NodeConfig, base: Path, central: CentralSystem | None = None
) -> tuple[AdapterRegistry, SunSpecBattery | None]:
    """Adapters from the config's `devices`; assets without one log their commands, dry,
    next to the journal."""
    dry = DryRunDevice((base / config.node.journal).parent / "dry_run_commands.jsonl")
    registry = AdapterRegistry()
    for charger in config.site.chargers:
        registry.register(
            charger.id, central.adapter(charger.id) if central and charger.id in central.passwords else dry
        )
    battery = None
    if config.site.battery is not None:
        spec = config.devices.battery
        if spec is None:
            registry.register(BATTERY_ID, dry)
        else:
            b = config.site.battery
            rating = AssetRating(
                BATTERY_ID, "battery", b.max_charge_kw or b.capacity_kwh, b.max_discharge_kw or b.capacity_kwh
            )
            battery = SunSpecBattery(
                spec.host,
                spec.port,
                rating,
                base=spec.base,
                device_id=spec.device_id,
                timeout_seconds=spec.timeout_seconds,
                revert_seconds=spec.revert_seconds,
                ramp_kw_per_second=spec.ramp_kw_per_second,
            )
            registry.register(BATTERY_ID, battery)
    return registry, battery


async def poll_battery(monitor: BatteryMonitor, every_seconds: float, clock: Clock, stop_event: asyncio.Event) -> None:
    while not stop_event.is_set():
        try:
            await monitor.poll()
        except Exception:  # noqa: BLE001 - a misbehaving device must not stop the node
            log.exception("battery poll")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), every_seconds / getattr(clock, "speed", 1.0))


async def serve(args: ServeArgs) -> None:
    config, base = load_node_config(args.config)
    logfields.set_default(site=config.site.site_id)  # every log line of this process names its site
    registry = AdapterRegistry()
    runtime, built = make_node(
        config,
        base,
        args.listen or config.node.listen,
        insecure_loopback=args.insecure_loopback,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        registry=registry,
    )
    central = central_system(config, runtime)
    devices, battery = device_registry(config, base, central)
    for asset_id in [c.id for c in config.site.chargers] + ([BATTERY_ID] if config.site.battery else []):
        registry.register(asset_id, devices.get(asset_id))
    if central is not None and config.devices.ocpp is not None:
        spec = config.devices.ocpp
        host, port = spec.listen.rsplit(":", 1)
        context = None
        if spec.tls_cert and spec.tls_key:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(base / spec.tls_cert, base / spec.tls_key)
        bound = await central.start(host, int(port), ssl=context)
        print(f"OCPP central system on {'wss' if context else 'ws'}://{host}:{bound}/ocpp", flush=True)
    stop_event = asyncio.Event()
    stop_on_signals(stop_event)
    await start(built)
    if config.node.metrics_listen:
        node_metrics = install_node_metrics(built.metrics, runtime)
        node_metrics.watch_devices(central, {BATTERY_ID: battery} if battery is not None else None)
        log.info("metrics on port %d", built.metrics.serve(config.node.metrics_listen))
    lag = LoopLag(built.metrics.registry if config.node.metrics_listen else None)
    lag.start()
    log.info("site node %s serving on port %d", config.site.site_id, built.port)
    print(f"site node {config.site.site_id} serving on port {built.port}", flush=True)
    loop = asyncio.create_task(runtime.run(stop_event))
    tasks = [loop]
    if config.portfolio is not None:
        from services.link_client import NodeLink  # only nodes that have a portfolio load the link

        tasks.append(asyncio.create_task(NodeLink(runtime, config.portfolio, base).run(stop_event)))
    if battery is not None and config.devices.battery is not None:
        monitor = BatteryMonitor(
            battery, runtime, runtime.clock, BATTERY_ID, timedelta(seconds=config.devices.battery.stale_seconds)
        )
        tasks.append(
            asyncio.create_task(poll_battery(monitor, config.devices.battery.poll_seconds, runtime.clock, stop_event))
        )
    await stop_event.wait()  # SIGTERM or SIGINT
    try:
        await lag.stop()
        await stop(built)  # open streams end with UNAVAILABLE, unary calls get a grace
        await finish(tasks)  # told to stop by stop_event; one still busy after a grace is cancelled
        if battery is not None:
            await battery.close()
        if central is not None:
            await central.stop()
    finally:
        runtime.close()  # the journal, however the rest went
