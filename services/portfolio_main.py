"""`gridmesh portfolio serve`: the portfolio's streams, operator API and solve loop, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from portfolio.config import PortfolioConfig, load_portfolio_config
from portfolio.solvers import make_solver
from portfolio.store import PortfolioStore
from services import portfolio_convert as pc
from services.auth import Role
from services.lifecycle import finish
from services.loop_lag import LoopLag
from services.metrics_portfolio import install_portfolio_metrics
from services.portfolio_api import OPERATOR_METHODS, TOKEN_EXEMPT, PortfolioServicer
from services.portfolio_hub import PortfolioHub, PortfolioLinkServicer
from services.server import Built, ServerOptions, build_server, start, stop, stop_on_signals
from services.stubs.gridmesh.v1 import portfolio_pb2_grpc
from sitenode.clock import Clock, clock_for

log = logging.getLogger("gridmesh.portfolio")


@dataclass(frozen=True)
class PortfolioArgs:
    config: Path
    listen: str | None = None
    insecure_loopback: bool = False


def make_portfolio(
    config: PortfolioConfig, base: Path, listen: str, *, insecure_loopback: bool, clock: Clock | None = None
) -> tuple[PortfolioHub, Built]:
    s = config.portfolio
    clock = clock or clock_for(s.clock_speed, s.clock_start, s.clock_origin_unix)
    store = PortfolioStore(base / s.store)
    known = {f.feeder_id for f in store.feeders()}
    for feeder in config.feeders:
        if feeder.feeder_id not in known:  # seeded once: operators' later changes win
            store.put_feeder(feeder)
    # the decomposition's workers encode each site's schedule as the stream sends it
    hub = PortfolioHub(
        s, store, make_solver(config.solver, encode=pc.schedule_body), clock, trust_hello=insecure_loopback
    )
    # one token table: the AuthInterceptor checks every call against it, WhoAmI reads the caller's role from it
    tokens = {value: Role(t.role) for t in s.tokens if (value := t.value())}

    def register(server: grpc.aio.Server) -> list[str]:
        portfolio_pb2_grpc.add_PortfolioLinkServicer_to_server(PortfolioLinkServicer(hub), server)
        portfolio_pb2_grpc.add_PortfolioServicer_to_server(PortfolioServicer(hub, tokens), server)
        return ["gridmesh.v1.PortfolioLink", "gridmesh.v1.Portfolio"]

    tls = s.tls
    options = ServerOptions(
        listen=listen,
        insecure_loopback=insecure_loopback,
        tls_cert=base / tls.cert if tls and not insecure_loopback else None,
        tls_key=base / tls.key if tls and not insecure_loopback else None,
        tls_client_ca=base / tls.client_ca if tls and not insecure_loopback else None,
        tokens=tokens,
        operator_methods=OPERATOR_METHODS,
        token_exempt=TOKEN_EXEMPT,
    )
    return hub, build_server(options, register)


async def serve(args: PortfolioArgs) -> None:
    config, base = load_portfolio_config(args.config)
    hub, built = make_portfolio(
        config, base, args.listen or config.portfolio.listen, insecure_loopback=args.insecure_loopback
    )
    stop_event = asyncio.Event()
    stop_on_signals(stop_event)
    await start(built)
    if config.portfolio.metrics_listen:
        install_portfolio_metrics(built.metrics, hub)
        built.metrics.serve(config.portfolio.metrics_listen)
    lag = LoopLag(built.metrics.registry if config.portfolio.metrics_listen else None)
    lag.start()
    print(f"portfolio serving on port {built.port}", flush=True)
    solver = asyncio.create_task(hub.run(stop_event))
    await stop_event.wait()  # SIGTERM or SIGINT
    try:
        await lag.stop()
        await stop(built)  # the nodes' streams and watchers end with UNAVAILABLE, unary calls get a grace
        await finish([solver])  # told to stop by stop_event; a solve still running after a grace is cancelled
    finally:
        close = getattr(hub.solver, "close", None)
        if close is not None:
            close()  # a Ray the portfolio started goes with it
        hub.close()
