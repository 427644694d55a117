"""`gridmesh dashboard --portfolio HOST:PORT`: serve the operator dashboard until SIGTERM."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from services.dashboard.app import serve
from services.dashboard.client import PortfolioClient, PortfolioTarget
from services.server import stop_on_signals
from sitenode.errors import InvalidInput


@dataclass(frozen=True)
class DashboardArgs:
    portfolio: str
    listen: str = "127.0.0.1:8080"
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure_loopback: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_address(value: str, field: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InvalidInput.one(field, f"must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def target_of(args: DashboardArgs) -> PortfolioTarget:
    host, _ = split_address(args.portfolio, "portfolio")
    if args.insecure_loopback:
        if not _loopback(host):
            raise InvalidInput.one("portfolio", "plaintext (--insecure-loopback) is allowed only to a loopback address")
        return PortfolioTarget(args.portfolio)
    if args.ca is None or args.cert is None or args.key is None:
        raise InvalidInput.one(
            "ca",
            "give --ca, --cert and --key (the portfolio asks every client for a certificate), or --insecure-loopback",
        )
    return PortfolioTarget(args.portfolio, args.ca, args.cert, args.key)


def tls_of(args: DashboardArgs, host: str) -> ssl.SSLContext | None:
    if args.tls_cert is None and args.tls_key is None:
        if not _loopback(host):
            # the page sends operators' tokens: never in clear text over a network
            raise InvalidInput.one("listen", "listening beyond loopback needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise InvalidInput.one("tls_key" if args.tls_key is None else "tls_cert", "give both --tls-cert and --tls-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    return context


async def run(args: DashboardArgs) -> None:
    host, port = split_address(args.listen, "listen")
    tls = tls_of(args, host)
    client = PortfolioClient(target_of(args))
    stop = asyncio.Event()
    stop_on_signals(stop)
    serving = await serve(client, host, port, tls)
    print(f"dashboard serving on {serving.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await serving.runner.cleanup()
