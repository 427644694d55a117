"""Fuzz targets 1 and 2: the SiteNode and Portfolio gRPC servers, fed raw bytes.

Every method is called through a generic channel call (no serializer: the bytes go on the
wire as they are) with an operator token, so the handlers run. Each call must end with a
gRPC status, whatever it is; UNKNOWN (an exception past the error mapper) or INTERNAL from
a handler (bad input that was not refused as INVALID_ARGUMENT) count as crashes. Between
batches a valid call must succeed; on the portfolio a well-behaved node's stream (the
keeper) must stay connected and answer its pings while garbage streams end.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

import grpc
from fuzz_common import ByteMutator, Report, rss_kb
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from services import convert
from services import portfolio_convert as pc
from portfolio.config import PortfolioConfig
from services.node_main import make_node
from services.portfolio_main import make_portfolio
from services.server import start, stop
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2, portfolio_pb2_grpc, sitenode_pb2
from sitenode.clock import RealClock
from sitenode.dispatch import AdapterRegistry, Command
from sitenode.model.validation import parse
from sitenode.node_config import NodeConfig, TokenConfig, load_node_config
from sitenode.runtime import NodeRuntime

ROOT = Path(__file__).resolve().parents[1]
OPERATOR = (("authorization", "Bearer fuzz-op"),)
BATCH = 400
CONCURRENCY = 16
Seeds = list[tuple[str, bool, float, list[bytes]]]  # method path, server streaming, weight, valid requests


class NoDevice:
    async def execute(self, command: Command) -> None:
        return None


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def depot_node(folder: Path) -> tuple[NodeConfig, Path, NodeRuntime, object]:
    """The example depot node with an operator token and a dry device behind each asset."""
    config, base = load_node_config(ROOT / "examples" / "nodes" / "depot.yaml")
    node = config.node.model_copy(
        update={"journal": str(folder / "journal.db"), "tokens": [TokenConfig(token="fuzz-op", role="operator")]}
    )
    config = config.model_copy(update={"node": node, "portfolio": None})
    registry = AdapterRegistry()
    for asset in [c.id for c in config.site.chargers] + ["battery"]:
        registry.register(asset, NoDevice())
    runtime, built = make_node(
        config, base, "127.0.0.1:0", insecure_loopback=True, clock=RealClock(), registry=registry
    )
    return config, base, runtime, built


def _ser(*messages: Message) -> list[bytes]:
    return [m.SerializeToString() for m in messages]


def sitenode_seeds(config: NodeConfig) -> Seeds:
    now = datetime.now(UTC)
    chargers = [c.id for c in config.site.chargers]
    S = "/gridmesh.v1.SiteNode/"
    session = common_pb2.EVSession(
        session_id="van-1",
        arrival=ts(now),
        departure=ts(now + timedelta(hours=8)),
        energy_kwh=40,
        max_kw=22,
        priority=1,
        charger_id=chargers[0],
    )
    return [
        (S + "GetStatus", False, 3, _ser(sitenode_pb2.GetStatusRequest())),
        (S + "ListAssets", False, 2, _ser(sitenode_pb2.ListAssetsRequest())),
        (S + "GetSchedule", False, 2, _ser(sitenode_pb2.GetScheduleRequest())),
        (S + "Optimize", False, 0.02, _ser(sitenode_pb2.OptimizeRequest())),
        (S + "UpsertSession", False, 12, _ser(sitenode_pb2.UpsertSessionRequest(session=session))),
        (S + "EndSession", False, 4, _ser(sitenode_pb2.EndSessionRequest(session_id="van-1"))),
        (
            S + "SetObjective",
            False,
            8,
            _ser(
                sitenode_pb2.SetObjectiveRequest(
                    weights=sitenode_pb2.ObjectiveWeights(cost=1, carbon=0.1, peak=0.5),
                    priorities=sitenode_pb2.Priorities(fleet=1, facility=2, battery=3, mining=4, export=5),
                ),
                sitenode_pb2.SetObjectiveRequest(weights=sitenode_pb2.ObjectiveWeights(cost=1)),
            ),
        ),
        (
            S + "SendCommand",
            False,
            8,
            _ser(
                sitenode_pb2.SendCommandRequest(
                    asset_id=chargers[1], type=sitenode_pb2.COMMAND_TYPE_SET_CHARGE_RATE, value_kw=7, ttl_seconds=60
                ),
                sitenode_pb2.SendCommandRequest(
                    asset_id="battery", type=sitenode_pb2.COMMAND_TYPE_SET_DISCHARGE_RATE, value_kw=20
                ),
            ),
        ),
        (S + "WatchEvents", True, 1, _ser(sitenode_pb2.WatchEventsRequest(types=["command_completed"]))),
    ]


async def call_raw(
    channel: grpc.aio.Channel, path: str, streaming: bool, payload: bytes, report: Report, kind: str
) -> None:
    """One call; its status is the outcome. Anything but a status is a crash."""
    report.inputs += 1
    report.kinds[kind] += 1
    try:
        if streaming:
            stream = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
            call = stream(payload, metadata=OPERATOR, timeout=0.05)
            async for _ in call:
                pass
        else:
            method = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            await method(payload, metadata=OPERATOR, timeout=30)
        code, details = grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code(), exc.details() or ""
    except Exception as exc:  # noqa: BLE001 - the client side failing is a finding too
        report.crash(f"{path} [{kind}]: client saw {type(exc).__name__}: {exc}")
        return
    undecodable = "DecodeError" in details or "deserializ" in details
    report.outcomes[code.name + (" (undecodable request)" if undecodable else "")] += 1
    if undecodable:
        return  # grpc's own answer to bytes that are no message: the handler never ran
    if code is grpc.StatusCode.UNKNOWN or (code is grpc.StatusCode.INTERNAL and "internal error" in details):
        report.crash(f"{path} [{kind}]: {code.name} {details[:200]}")
    elif code is grpc.StatusCode.UNAVAILABLE:
        report.crash(f"{path} [{kind}]: server unavailable: {details[:200]}")


async def fuzz_calls(
    channel: grpc.aio.Channel,
    seeds: Seeds,
    inputs: int,
    rng: Random,
    report: Report,
    between: Callable[[], Awaitable[bool]],
) -> None:
    """`inputs` raw calls in batches, CONCURRENCY at a time; `between` (a valid call, housekeeping)
    after each batch must say the server is fine. RSS is taken after the first tenth."""
    mutator = ByteMutator(rng)
    weights = [w for _, _, w, _ in seeds]
    everything = [b for *_, values in seeds for b in values]
    warm_at = max(BATCH, inputs // 10)
    done = 0
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job: tuple[str, bool, bytes, str]) -> None:
        async with gate:
            await call_raw(channel, job[0], job[1], job[2], report, job[3])

    while done < inputs:
        jobs = []
        for _ in range(min(BATCH, inputs - done)):
            path, streaming, _, values = rng.choices(seeds, weights)[0]
            kind, payload = mutator.mutate(rng.choice(values), everything)
            jobs.append((path, streaming, payload, kind))
        await asyncio.gather(*(one(j) for j in jobs))
        done += len(jobs)
        if not await between():
            report.server_up = False
            report.crash(f"the server failed its health call after {done} inputs")
            return
        if not report.rss_warm_kb and done >= warm_at:
            report.rss_warm_kb = rss_kb()


async def sitenode_target(inputs: int, seed: int) -> Report:
    report = Report("sitenode_grpc")
    with tempfile.TemporaryDirectory() as folder:
        config, _, runtime, built = depot_node(Path(folder))
        await start(built)  # type: ignore[arg-type]
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")  # type: ignore[attr-defined]
        status = channel.unary_unary(
            "/gridmesh.v1.SiteNode/GetStatus",
            request_serializer=sitenode_pb2.GetStatusRequest.SerializeToString,
            response_deserializer=sitenode_pb2.GetStatusResponse.FromString,
        )

        async def between() -> bool:
            # sessions the fuzz created are ended: the node's state (and each solve) stays the size it was
            for s in runtime.journal.sessions():
                with contextlib.suppress(Exception):
                    runtime.end_session(s.session_id)
            try:
                got = await status(sitenode_pb2.GetStatusRequest(), metadata=OPERATOR, timeout=10)
            except grpc.aio.AioRpcError:
                return False
            return got.site_id == config.site.site_id

        started = time.perf_counter()
        try:
            await fuzz_calls(channel, sitenode_seeds(config), inputs, Random(seed), report, between)
            report.seconds = time.perf_counter() - started
            report.rss_end_kb = rss_kb()
            report.other_session_alive = report.server_up = await between()
        finally:
            await channel.close()
            await stop(built, 0.5)  # type: ignore[arg-type]
            runtime.close()
    return report


# -- the portfolio --------------------------------------------------------------------------

SITES = [f"fuzz-{i}" for i in range(6)]


def portfolio_seeds(now: datetime) -> Seeds:
    P = "/gridmesh.v1.Portfolio/"
    feeder = portfolio_pb2.Feeder(feeder_id="f-1", site_ids=SITES[:2], cap_kw=150, description="fuzz")
    event = portfolio_pb2.FlexEvent(
        event_id="e-1",
        kind=portfolio_pb2.FLEX_KIND_REDUCE_BY,
        kw=20,
        start=ts(now + timedelta(hours=1)),
        end=ts(now + timedelta(hours=2)),
        site_ids=SITES[:3],
    )
    settings = portfolio_pb2.SetSiteSettingsRequest(
        site_id=SITES[0],
        weights=sitenode_pb2.ObjectiveWeights(cost=1, peak=0.2),
        priorities=sitenode_pb2.Priorities(fleet=1, facility=2, battery=3, mining=4, export=5),
    )
    return [
        (P + "ListSites", False, 2, _ser(portfolio_pb2.ListSitesRequest())),
        (P + "GetSite", False, 4, _ser(portfolio_pb2.GetSiteRequest(site_id=SITES[0]))),
        (P + "GetPortfolioState", False, 2, _ser(portfolio_pb2.GetPortfolioStateRequest())),
        (P + "WatchPortfolio", True, 0.5, _ser(portfolio_pb2.WatchPortfolioRequest())),
        (P + "SetFeeder", False, 8, _ser(portfolio_pb2.SetFeederRequest(feeder=feeder))),
        (P + "ListFeeders", False, 2, _ser(portfolio_pb2.ListFeedersRequest())),
        (P + "DeleteFeeder", False, 3, _ser(portfolio_pb2.DeleteFeederRequest(feeder_id="f-1"))),
        (P + "CreateFlexEvent", False, 8, _ser(portfolio_pb2.CreateFlexEventRequest(event=event))),
        (P + "ListFlexEvents", False, 2, _ser(portfolio_pb2.ListFlexEventsRequest(include_cancelled=True))),
        (P + "CancelFlexEvent", False, 3, _ser(portfolio_pb2.CancelFlexEventRequest(event_id="e-1"))),
        (P + "Solve", False, 0.02, _ser(portfolio_pb2.SolveRequest())),
        (P + "GetSolveReport", False, 2, _ser(portfolio_pb2.GetSolveReportRequest(solve_id="nope"))),
        (P + "SetSiteSettings", False, 5, _ser(settings)),
        (P + "WhoAmI", False, 1, _ser(portfolio_pb2.WhoAmIRequest())),
    ]


def node_messages(runtime: NodeRuntime, now: datetime) -> list[bytes]:
    """Valid NodeMessages (after the hello) to mutate: telemetry, pings, pongs, acks, a command
    report and a snapshot of the depot."""
    point = portfolio_pb2.TelemetryPoint(
        seq=1, at=ts(now), grid_import_kw=50, load_kw=40, ev_kw=10, soc_kwh=100, ev_energy_kwh=3
    )
    snap = pc.snapshot_out(runtime.config.site, runtime.inputs(now), now)
    snap.assets.extend(convert.asset(a) for a in runtime.assets())
    command = portfolio_pb2.CommandStatus(
        command_id="c-1", asset_id="battery", type="SET_CHARGE_RATE", value_kw=5, due_at=ts(now), state="PENDING"
    )
    return _ser(
        portfolio_pb2.NodeMessage(telemetry=portfolio_pb2.TelemetryBatch(points=[point])),
        portfolio_pb2.NodeMessage(ping=portfolio_pb2.Ping(nonce=7, sent_at=ts(now))),
        portfolio_pb2.NodeMessage(pong=portfolio_pb2.Pong(nonce=7)),
        portfolio_pb2.NodeMessage(ack=portfolio_pb2.ScheduleAck(version="v-1", accepted=True)),
        portfolio_pb2.NodeMessage(commands=portfolio_pb2.CommandReport(commands=[command])),
        portfolio_pb2.NodeMessage(snapshot=snap),
    )


def hello(site_id: str) -> bytes:
    return portfolio_pb2.NodeMessage(
        hello=portfolio_pb2.Hello(site_id=site_id, software_version="fuzz")
    ).SerializeToString()


class Keeper:
    """A well-behaved node on the link: answers pings; `alive` pings and waits for the pong."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.outbox: asyncio.Queue[portfolio_pb2.NodeMessage] = asyncio.Queue()
        self.pongs: set[int] = set()
        self.call = portfolio_pb2_grpc.PortfolioLinkStub(channel).Connect(self._requests())
        self.reader = asyncio.create_task(self._read())
        self.ended: str | None = None

    async def _requests(self):  # noqa: ANN202 - an async generator of NodeMessages
        yield portfolio_pb2.NodeMessage(hello=portfolio_pb2.Hello(site_id="keeper-site", software_version="keeper"))
        while True:
            yield await self.outbox.get()

    async def _read(self) -> None:
        try:
            async for message in self.call:
                kind = message.WhichOneof("body")
                if kind == "ping":
                    self.outbox.put_nowait(portfolio_pb2.NodeMessage(pong=portfolio_pb2.Pong(nonce=message.ping.nonce)))
                elif kind == "pong":
                    self.pongs.add(message.pong.nonce)
            self.ended = "the portfolio ended the keeper's stream"
        except grpc.aio.AioRpcError as exc:
            self.ended = f"keeper stream failed: {exc.code().name} {exc.details()}"

    async def alive(self, nonce: int) -> bool:
        if self.ended:
            return False
        self.outbox.put_nowait(portfolio_pb2.NodeMessage(ping=portfolio_pb2.Ping(nonce=nonce)))
        deadline = time.monotonic() + 10
        while nonce not in self.pongs and not self.ended and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return nonce in self.pongs

    async def close(self) -> None:
        self.call.cancel()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


async def fuzz_stream(
    channel: grpc.aio.Channel, rng: Random, mutator: ByteMutator, seeds: list[bytes], report: Report
) -> None:
    """One link stream: a hello (mutated one time in ten), then up to 30 mutated NodeMessages.
    However the portfolio ends it, it must end with a status."""
    link = channel.stream_stream(
        "/gridmesh.v1.PortfolioLink/Connect", request_serializer=None, response_deserializer=None
    )
    first = hello(rng.choice(SITES))
    messages = [("hello", first)]
    if rng.random() < 0.1:
        messages = [mutator.mutate(first, seeds)]
    messages += [mutator.mutate(rng.choice(seeds), seeds) for _ in range(rng.randint(1, 30))]
    call = link(timeout=20)

    async def drain() -> None:
        async for _ in call:
            pass

    reader = asyncio.create_task(drain())
    sent = 0
    try:
        for kind, payload in messages:
            if call.done():
                break
            await call.write(payload)
            sent += 1
            report.kinds[kind] += 1
        if not call.done():
            await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
        pass  # the portfolio already ended this stream
    except Exception as exc:  # noqa: BLE001
        report.crash(f"link write: {type(exc).__name__}: {exc}")
    report.inputs += max(sent, 1)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(reader), 20)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await reader
    code = await call.code()
    details = await call.details() or ""
    undecodable = "DecodeError" in details or "deserializ" in details
    report.outcomes[f"link:{code.name}" + (" (undecodable request)" if undecodable else "")] += 1
    if (
        not undecodable
        and code is grpc.StatusCode.UNKNOWN
        or (code is grpc.StatusCode.INTERNAL and "internal error" in details)
    ):
        report.crash(f"link stream: {code.name} {details[:200]}")


async def portfolio_target(inputs: int, seed: int) -> Report:
    report = Report("portfolio_grpc")
    rng = Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        _, _, runtime, _ = depot_node(Path(folder))
        now = datetime.now(UTC)
        stream_seeds = node_messages(runtime, now)
        runtime.close()
        body = {
            "portfolio": {
                "store": str(Path(folder) / "portfolio.db"),
                "ping_interval_seconds": 0.5,
                "ping_timeout_seconds": 3.0,
                "solve_period_seconds": 3600,
                "tokens": [{"token": "fuzz-op", "role": "operator"}],
            },
            "solver": {"method": "monolithic"},
        }
        hub, built = make_portfolio(
            parse(PortfolioConfig, body), Path(folder), "127.0.0.1:0", insecure_loopback=True, clock=RealClock()
        )
        await start(built)
        halt = asyncio.Event()
        hub_task = asyncio.create_task(hub.run(halt))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
        keeper = Keeper(channel)
        whoami = channel.unary_unary(
            "/gridmesh.v1.Portfolio/WhoAmI",
            request_serializer=portfolio_pb2.WhoAmIRequest.SerializeToString,
            response_deserializer=portfolio_pb2.WhoAmIResponse.FromString,
        )
        nonce = iter(range(1, 10**9))
        stream_mutator = ByteMutator(rng, oversized_every=2000)

        async def between() -> bool:
            # a batch of link streams, 8 at a time, then the health calls
            gate = asyncio.Semaphore(8)
            budget = BATCH // 2

            async def one() -> None:
                async with gate:
                    await fuzz_stream(channel, rng, stream_mutator, stream_seeds, report)

            await asyncio.gather(*(one() for _ in range(max(1, budget // 15))))
            try:
                role = (await whoami(portfolio_pb2.WhoAmIRequest(), metadata=OPERATOR, timeout=10)).role
            except grpc.aio.AioRpcError:
                return False
            if not await keeper.alive(next(nonce)):
                report.other_session_alive = False
                report.crash(keeper.ended or "the keeper's ping went unanswered")
            return role == "operator"

        started = time.perf_counter()
        try:
            await fuzz_calls(channel, portfolio_seeds(now), inputs // 2, rng, report, between)
            while report.inputs < inputs and report.server_up:  # the rest on the link
                if not await between():
                    report.server_up = False
            report.seconds = time.perf_counter() - started
            report.rss_end_kb = rss_kb()
            report.other_session_alive = report.other_session_alive and await keeper.alive(next(nonce))
        finally:
            await keeper.close()
            await channel.close()
            halt.set()
            await stop(built, 0.5)
            hub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await hub_task
            hub.close()
    return report
