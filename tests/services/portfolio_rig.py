"""A portfolio and site nodes in one event loop on loopback: the rig the link tests share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from portfolio.config import PortfolioConfig
from services.link_client import NodeLink
from services.portfolio_hub import PortfolioHub
from services.portfolio_main import make_portfolio
from services.server import Built, start, stop
from sitenode.clock import Clock, RealClock
from sitenode.model.validation import parse
from sitenode.node_config import NodeConfig
from sitenode.runtime import NodeRuntime

ROOT = Path(__file__).resolve().parents[2]
SITES = {"depot": "depot-north", "office": "office-east", "warehouse": "warehouse-west"}


def node_config(
    name: str, folder: Path, address: str, edit: Callable[[dict], None] | None = None, **link: object
) -> NodeConfig:
    """The example node `name` pointed at `address`; `edit` may change its YAML document first."""
    doc = yaml.safe_load((ROOT / "examples" / "nodes" / f"{name}.yaml").read_text())
    if edit is not None:
        edit(doc)
    history = (ROOT / "examples" / "nodes" / doc["node"]["history"]).resolve()
    doc["node"].update(journal=str(folder / f"{name}.db"), history=str(history), tick_seconds=0.05)
    doc["node"].pop("tokens", None)
    doc.pop("devices", None)
    doc["portfolio"] = {
        "address": address,
        "insecure_loopback": True,
        "ping_interval_seconds": 0.2,
        "ping_timeout_seconds": 1.0,
        "grace_seconds": 60.0,
        "telemetry_seconds": 0.2,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.5,
        **link,
    }
    return parse(NodeConfig, doc)


@dataclass(eq=False)
class Node:
    runtime: NodeRuntime
    link: NodeLink
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> None:
        self.stop.clear()
        self.tasks = [asyncio.create_task(self.runtime.run(self.stop)), asyncio.create_task(self.link.run(self.stop))]

    async def halt(self) -> None:
        self.stop.set()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


@dataclass(eq=False)
class Portfolio:
    hub: PortfolioHub
    built: Built
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.built.port}"

    async def begin(self) -> None:
        await start(self.built)
        self.task = asyncio.create_task(self.hub.run(self.stop))

    async def end(self) -> None:
        self.stop.set()
        await stop(self.built, 0.1)
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.hub.close()


def make_rig_portfolio(
    folder: Path, doc: dict | None = None, listen: str = "127.0.0.1:0", clock: Clock | None = None
) -> Portfolio:
    body = {
        "portfolio": {
            "store": str(folder / "portfolio.db"),
            "ping_interval_seconds": 0.2,
            "ping_timeout_seconds": 1.0,
            "solve_period_seconds": 3600,
            "schedule_valid_minutes": 60,
            "tokens": [{"token": "op", "role": "operator"}, {"token": "view", "role": "viewer"}],
        }
    }
    for key, value in (doc or {}).items():
        if isinstance(value, dict):
            body.setdefault(key, {}).update(value)
        else:
            body[key] = value
    hub, built = make_portfolio(
        parse(PortfolioConfig, body), folder, listen, insecure_loopback=True, clock=clock or RealClock()
    )
    return Portfolio(hub, built)


def make_node(
    name: str,
    folder: Path,
    address: str,
    clock: Clock | None = None,
    edit: Callable[[dict], None] | None = None,
    **link: object,
) -> Node:
    config = node_config(name, folder, address, edit, **link)
    runtime = NodeRuntime(config, folder, clock or RealClock())
    return Node(runtime, NodeLink(runtime, config.portfolio, folder))  # type: ignore[arg-type]


async def until(predicate, timeout: float = 20.0, every: float = 0.05) -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(every)
