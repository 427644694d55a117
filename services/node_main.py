"""`gridmesh sitenode serve`: a site node's runtime behind its gRPC server, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from services.auth import Role
from services.server import Built, ServerOptions, build_server, start, stop, stop_on_signals
from services.sitenode_service import OPERATOR_METHODS, SiteNodeServicer
from services.stubs.gridmesh.v1 import sitenode_pb2_grpc
from sitenode.clock import Clock, RealClock, SimulatedClock
from sitenode.dispatch import AdapterRegistry
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


def make_node(config: NodeConfig, base: Path, listen: str, *, insecure_loopback: bool, clock: Clock | None = None,
              registry: AdapterRegistry | None = None, tls_cert: Path | None = None, tls_key: Path | None = None) -> tuple[NodeRuntime, Built]:
    clock = clock or (RealClock() if config.node.clock_speed == 1.0 else SimulatedClock(RealClock().now(), config.node.clock_speed))
    runtime = NodeRuntime(config, base, clock, registry)

    def register(server) -> list[str]:  # noqa: ANN001
        sitenode_pb2_grpc.add_SiteNodeServicer_to_server(SiteNodeServicer(runtime), server)
        return ["gridmesh.v1.SiteNode"]

    options = ServerOptions(listen=listen, insecure_loopback=insecure_loopback, tls_cert=tls_cert, tls_key=tls_key,
                            tokens=tokens_of(config), operator_methods=OPERATOR_METHODS)
    return runtime, build_server(options, register)


def dry_run_registry(config: NodeConfig, base: Path) -> AdapterRegistry:
    """Until device adapters are configured, every asset logs its commands next to the journal."""
    device = DryRunDevice((base / config.node.journal).parent / "dry_run_commands.jsonl")
    registry = AdapterRegistry()
    for charger in config.site.chargers:
        registry.register(charger.id, device)
    if config.site.battery is not None:
        registry.register(BATTERY_ID, device)
    return registry


async def serve(args: ServeArgs) -> None:
    config, base = load_node_config(args.config)
    runtime, built = make_node(config, base, args.listen or config.node.listen, insecure_loopback=args.insecure_loopback,
                               tls_cert=args.tls_cert, tls_key=args.tls_key, registry=dry_run_registry(config, base))
    stop_event = asyncio.Event()
    stop_on_signals(stop_event)
    await start(built)
    if config.node.metrics_listen:
        log.info("metrics on port %d", built.metrics.serve(config.node.metrics_listen))
    log.info("site node %s serving on port %d", config.site.site_id, built.port)
    print(f"site node {config.site.site_id} serving on port {built.port}", flush=True)
    loop = asyncio.create_task(runtime.run(stop_event))
    await stop_event.wait()
    await stop(built)
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    runtime.close()
