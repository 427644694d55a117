"""What the operators' dashboard reads: the caller's role, a site's recent dispatch commands
as its node reports them, and the site's running account of the day against business as usual.

Real gRPC on loopback, the real node runtime and link (portfolio_rig), and hand-driven
streams where a test needs to send what no healthy node would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from datetime import UTC, datetime, timedelta

import grpc
import pandas as pd
import pytest
from portfolio_rig import make_node, make_rig_portfolio, node_config, until

from portfolio.outcome import horizon_run, realized_frame, site_outcome
from services import portfolio_convert as pc
from services import portfolio_hub
from services.link_client import NodeLink
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2, portfolio_pb2_grpc
from sitenode.clock import SimulatedClock
from sitenode.dispatch import AdapterRegistry
from sitenode.dispatch.commands import Command, CommandType
from sitenode.dispatch.engine import AdapterError
from sitenode.model.sessions import EVSession
from sitenode.runtime import BATTERY_ID, NodeRuntime

OPERATOR = (("authorization", "Bearer op"),)
VIEWER = (("authorization", "Bearer view"),)
STEP = pd.Timedelta(minutes=15)
SPEED = 600.0  # a 15-minute step passes in 1.5 s
# a busy test machine (the suite runs in parallel) can hold a stream's messages back for a
# second: streams are given up after 5 s of silence here, not the rig's 1 s
PATIENT = {"portfolio": {"ping_timeout_seconds": 5.0}}


class RawNode:
    """A node's stream driven by hand: hello, then what the test sends; pings are answered
    (a silent stream is dropped), telemetry acks collected."""

    def __init__(self, address: str, site_id: str) -> None:
        self.address, self.site_id = address, site_id
        self.acked = 0
        self.ended: grpc.aio.AioRpcError | None = None

    async def __aenter__(self) -> RawNode:
        self.channel = grpc.aio.insecure_channel(self.address)
        self.call = portfolio_pb2_grpc.PortfolioLinkStub(self.channel).Connect()
        await self.call.write(
            portfolio_pb2.NodeMessage(hello=portfolio_pb2.Hello(site_id=self.site_id, software_version="test"))
        )
        first = await asyncio.wait_for(self.call.read(), 5)
        assert first.WhichOneof("body") == "welcome"
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            while (message := await self.call.read()) is not grpc.aio.EOF:
                kind = message.WhichOneof("body")
                if kind == "ping":
                    await self.call.write(portfolio_pb2.NodeMessage(pong=portfolio_pb2.Pong(nonce=message.ping.nonce)))
                elif kind == "telemetry_ack":
                    self.acked = max(self.acked, message.telemetry_ack.up_to_seq)
        except grpc.aio.AioRpcError as exc:
            self.ended = exc

    async def send(self, **body: object) -> None:
        await self.call.write(portfolio_pb2.NodeMessage(**body))

    async def __aexit__(self, *_: object) -> None:
        self.call.cancel()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader
        await self.channel.close()


@pytest.fixture
async def portfolio(tmp_path):
    pf = make_rig_portfolio(tmp_path, PATIENT)
    await pf.begin()
    yield pf
    await pf.end()


async def call(pf, method: str, request, metadata=VIEWER):  # noqa: ANN001, ANN201
    async with grpc.aio.insecure_channel(pf.address) as channel:
        return await getattr(portfolio_pb2_grpc.PortfolioStub(channel), method)(request, metadata=metadata, timeout=5)


async def site_info(pf, site_id: str) -> portfolio_pb2.SiteInfo:  # noqa: ANN001
    sites = (await call(pf, "ListSites", portfolio_pb2.ListSitesRequest())).sites
    return next(s for s in sites if s.site_id == site_id)


# ---- WhoAmI -------------------------------------------------------------------------------
async def test_whoami_names_the_role_of_the_callers_token(portfolio):
    assert (await call(portfolio, "WhoAmI", portfolio_pb2.WhoAmIRequest(), VIEWER)).role == "viewer"
    assert (await call(portfolio, "WhoAmI", portfolio_pb2.WhoAmIRequest(), OPERATOR)).role == "operator"
    assert (
        await call(portfolio, "WhoAmI", portfolio_pb2.WhoAmIRequest(), (("authorization", "bearer op"),))
    ).role == "operator"
    for metadata in ((), (("authorization", "Bearer nobody"),), (("authorization", "op"),)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(portfolio, "WhoAmI", portfolio_pb2.WhoAmIRequest(), metadata)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


# ---- commands -------------------------------------------------------------------------------
class ChargeOnlyBattery:
    """A battery inverter that takes charge setpoints and refuses every discharge setpoint."""

    def __init__(self) -> None:
        self.got: list[Command] = []

    async def execute(self, command: Command) -> None:
        if command.type is CommandType.SET_DISCHARGE_RATE:
            raise AdapterError("discharge locked out")
        self.got.append(command)


def reported(commands) -> list[tuple[str, str, int]]:  # noqa: ANN001
    return [(c.command_id, c.state, c.attempts) for c in commands]


async def test_a_nodes_dispatched_commands_appear_in_get_site_with_their_states(tmp_path, portfolio):
    config = node_config("office", tmp_path, portfolio.address, ping_timeout_seconds=5.0)
    registry = AdapterRegistry()
    battery = ChargeOnlyBattery()
    registry.register(BATTERY_ID, battery)
    runtime = NodeRuntime(config, tmp_path, portfolio.hub.clock, registry)
    runtime.engine.policy = dataclasses.replace(runtime.engine.policy, backoff_seconds=0.2)  # retries within the test
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(runtime.run(stop)),
        asyncio.create_task(NodeLink(runtime, config.portfolio, tmp_path).run(stop)),
    ]  # type: ignore[arg-type]
    try:
        # the charge setpoint completes; the discharge one fails after its retries
        await until(
            lambda: battery.got and any(str(c.state) == "FAILED" for c in runtime.journal.commands()),
            15,
        )
        journal = runtime.journal.recent_commands(50, due_by=runtime.clock.now())
        # the portfolio shows what the journal holds (the node reports a change within a few seconds)
        got: list = []

        async def matches() -> bool:
            got[:] = (await call(portfolio, "GetSite", portfolio_pb2.GetSiteRequest(site_id="office-east"))).commands
            return reported(got) == reported(
                pc.command_out(c) for c in runtime.journal.recent_commands(50, due_by=runtime.clock.now())
            )

        deadline = asyncio.get_running_loop().time() + 10
        while not await matches():
            assert asyncio.get_running_loop().time() < deadline, (
                reported(got),
                [(c.id, str(c.state)) for c in journal],
            )
            await asyncio.sleep(0.2)
        states = {c.state for c in got}
        assert {"COMPLETED", "FAILED"} <= states
        completed = next(c for c in got if c.state == "COMPLETED")
        assert (
            completed.type == "SET_CHARGE_RATE"
            and completed.asset_id == BATTERY_ID
            and completed.attempts == 1
            and not completed.last_error
        )
        assert completed.source == next(c.source for c in runtime.journal.commands() if c.id == completed.command_id)
        failed = next(c for c in got if c.state == "FAILED")
        assert (
            failed.type == "SET_DISCHARGE_RATE" and failed.attempts == 3 and "discharge locked out" in failed.last_error
        )
        assert all(math.isfinite(c.value_kw) for c in got) and all(c.HasField("due_at") for c in got)
        due = [(c.due_at.ToDatetime(), c.command_id) for c in got]
        assert due == sorted(due, reverse=True) and len(got) <= 50  # newest first
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runtime.close()


def status(i: int, at: datetime, **fields: object) -> portfolio_pb2.CommandStatus:
    body = {
        "command_id": f"c{i:04d}",
        "asset_id": "battery",
        "type": "SET_CHARGE_RATE",
        "value_kw": float(i),
        "due_at": pc.ts(at + timedelta(minutes=i)),
        "state": "PENDING",
        "source": "pf-1",
        **fields,
    }
    return portfolio_pb2.CommandStatus(**body)


async def test_an_oversized_or_malformed_command_report_never_kills_the_stream(portfolio):
    now = portfolio.hub.clock.now()
    async with RawNode(portfolio.address, "warehouse-west") as node:
        # more than the portfolio keeps: the 50 due last stay, newest first
        await node.send(commands=portfolio_pb2.CommandReport(commands=[status(i, now) for i in range(120)]))
        await until(
            lambda: (
                "warehouse-west" in portfolio.hub.sites and len(portfolio.hub.sites["warehouse-west"].commands) == 50
            ),
            5,
        )
        got = (await call(portfolio, "GetSite", portfolio_pb2.GetSiteRequest(site_id="warehouse-west"))).commands
        assert [c.command_id for c in got] == [f"c{i:04d}" for i in range(119, 69, -1)]
        # malformed reports are dropped whole: the last good one stays
        bad = [
            [status(1, now, state="EXPLODED")],
            [status(1, now, type="MAKE_COFFEE")],
            [status(1, now, value_kw=float("nan"))],
            [status(1, now, command_id="")],
            [status(1, now, asset_id="x" * 5000)],
            [
                portfolio_pb2.CommandStatus(
                    command_id="c1", asset_id="battery", type="SET_CHARGE_RATE", state="PENDING"
                )
            ],  # no due_at
            [status(1, now, attempts=-1)],
        ]
        for commands in bad:
            await node.send(commands=portfolio_pb2.CommandReport(commands=commands))
        # a long error is cut, not refused; the stream still carries telemetry and gets it acked
        await node.send(
            commands=portfolio_pb2.CommandReport(
                commands=[status(7, now, state="FAILED", attempts=3, last_error="e" * 5000)]
            )
        )
        await node.send(
            telemetry=portfolio_pb2.TelemetryBatch(
                points=[portfolio_pb2.TelemetryPoint(seq=1, at=pc.ts(now), grid_import_kw=1.0)]
            )
        )
        await until(lambda: node.acked == 1, 5)
        assert node.ended is None and "warehouse-west" in portfolio.hub.connections
        got = (await call(portfolio, "GetSite", portfolio_pb2.GetSiteRequest(site_id="warehouse-west"))).commands
        assert [(c.command_id, c.state, c.attempts) for c in got] == [("c0007", "FAILED", 3)]
        assert 0 < len(got[0].last_error) <= 1000
        # an empty report clears the list (a node with a fresh journal)
        await node.send(commands=portfolio_pb2.CommandReport())
        await until(lambda: not portfolio.hub.sites["warehouse-west"].commands, 5)


# ---- today's account ----------------------------------------------------------------------------
def direct(pf, site_id: str, day: portfolio_pb2.SiteDay, sessions: list[EVSession]):  # noqa: ANN001, ANN201
    """What portfolio.outcome makes of the stored telemetry over the day's counted steps."""
    since = day.since.ToDatetime(tzinfo=UTC)
    points = [
        pc.telemetry_in(portfolio_pb2.TelemetryPoint.FromString(r.payload))
        for r in pf.hub.store.telemetry(site_id, limit=1_000_000)
    ]
    index = pd.date_range(since, periods=day.steps, freq=STEP, name="timestamp")
    frame, missing = realized_frame(points, index)
    snap = pf.hub.sites[site_id].snapshot
    return site_outcome(snap.site, horizon_run(snap.run, since, day.steps), frame, missing, sessions).outcome


def assert_priced_as(day: portfolio_pb2.SiteDay, outcome) -> None:  # noqa: ANN001
    assert day.currency == outcome.currency
    for name in ("cost", "bau_cost", "ev_delivered_kwh", "peak_import_kw", "bau_peak_import_kw"):
        assert getattr(day, name) == pytest.approx(getattr(outcome, name), rel=1e-9, abs=1e-9), name


async def test_today_is_absent_without_telemetry_then_prices_the_whole_steps_as_portfolio_outcome(
    tmp_path, monkeypatch
):
    # the clock ends a step every 1.5 s: the hub looks at each (in service, at most every 5 s)
    monkeypatch.setattr(portfolio_hub, "DAY_MIN_SECONDS", 0.5)
    clock = SimulatedClock(datetime(2025, 6, 11, 4, 5, tzinfo=UTC), SPEED)
    pf = make_rig_portfolio(tmp_path, PATIENT, clock=clock)
    await pf.begin()
    node = make_node("office", tmp_path, pf.address, clock=clock, snapshot_seconds=1e6, ping_timeout_seconds=5.0)
    try:
        # a snapshot but no telemetry yet: no account, while steps end
        rt = node.runtime
        async with RawNode(pf.address, "office-east") as raw:
            await raw.send(snapshot=pc.snapshot_out(rt.config.site, rt.inputs(clock.now()), clock.now()))
            await until(
                lambda: (
                    pf.hub.sites.get("office-east") is not None and pf.hub.sites["office-east"].snapshot is not None
                ),
                10,
            )
            first_end = pd.Timestamp(clock.now()).floor(STEP) + STEP
            await until(lambda: clock.now() > first_end + STEP, 10)
            info = await site_info(pf, "office-east")
            assert not info.HasField("today")
        # the node runs: telemetry flows, whole steps end
        node.start()
        await until(
            lambda: pf.hub.site_day("office-east") is not None and pf.hub.site_day("office-east").steps >= 2,
            15,
        )
        await node.halt()
        # everything the node sent is stored, and the account was worked out again since
        stored = -1
        while stored != pf.hub.store.last_telemetry_seq("office-east"):
            stored = pf.hub.store.last_telemetry_seq("office-east")
            await asyncio.sleep(0.7)
        counted = pf.hub.site_day("office-east").steps
        await until(lambda: pf.hub.site_day("office-east").steps > counted, 10)

        day = (await site_info(pf, "office-east")).today
        first = pf.hub.store.telemetry("office-east", limit=1)[0].at
        since = day.since.ToDatetime(tzinfo=UTC)
        assert since == pd.Timestamp(first).floor(STEP).to_pydatetime() and since.date() == first.date()
        assert day.steps >= 3 and since + day.steps * STEP <= clock.now()  # only steps that have ended
        assert day.currency == "USD" and day.cost > 0 and day.bau_cost > 0
        assert_priced_as(day, direct(pf, "office-east", day, []))
    finally:
        await node.halt()
        node.runtime.close()
        await pf.end()


async def test_todays_business_as_usual_keeps_sessions_that_departed_with_their_whole_need(tmp_path, monkeypatch):
    # real-time speed, a minute into the third step: exactly two whole steps have ended
    start = datetime(2025, 6, 11, 4, 31, tzinfo=UTC)
    clock = SimulatedClock(start, 1.0)
    # within a step, late samples are looked at soon (in service, after 30 s)
    monkeypatch.setattr(portfolio_hub, "DAY_CHECK_SECONDS", 0.2)
    monkeypatch.setattr(portfolio_hub, "DAY_MIN_SECONDS", 0.1)
    pf = make_rig_portfolio(tmp_path, PATIENT, clock=clock)
    await pf.begin()
    rt = NodeRuntime(node_config("depot", tmp_path, pf.address), tmp_path, clock)
    t0 = start.replace(minute=0)
    a = EVSession(
        session_id="a",
        arrival=t0,
        departure=t0 + timedelta(minutes=40),
        energy_kwh=30.0,
        max_kw=50.0,
    )
    b = EVSession(
        session_id="b",
        arrival=t0 + timedelta(minutes=10),
        departure=t0 + timedelta(hours=4),
        energy_kwh=20.0,
        max_kw=11.0,
    )

    def snapshot(*sessions: EVSession) -> common_pb2.SiteSnapshot:
        inputs = dataclasses.replace(rt.inputs(clock.now()), sessions=list(sessions))
        return pc.snapshot_out(rt.config.site, inputs, clock.now())

    try:
        async with RawNode(pf.address, "depot-north") as raw:
            # a needs 30 kWh, then (partly charged) 5 more, then has left; b stays
            for sessions in ((a, b), (a.model_copy(update={"energy_kwh": 5.0}), b), (b,)):
                await raw.send(snapshot=snapshot(*sessions))
            # two whole steps of measured samples, one a minute (a and b charging), and one
            # sample of the step under way, which does not count yet
            points = [
                portfolio_pb2.TelemetryPoint(
                    seq=i + 1,
                    at=pc.ts(t0 + timedelta(minutes=i, seconds=30)),
                    load_kw=20.0,
                    ev_kw=40.0 if i < 20 else 11.0,
                    grid_import_kw=60.0 if i < 20 else 31.0,
                    ev_energy_kwh=i * 0.6,
                )
                for i in range(30)
            ]
            points.append(
                portfolio_pb2.TelemetryPoint(
                    seq=31,
                    at=pc.ts(t0 + timedelta(minutes=30, seconds=10)),
                    load_kw=20.0,
                    grid_import_kw=500.0,
                    ev_energy_kwh=18.0,
                )
            )
            await raw.send(telemetry=portfolio_pb2.TelemetryBatch(points=points))
            await until(lambda: raw.acked == 31, 5)
            await until(
                lambda: (d := pf.hub.site_day("depot-north")) is not None and d.ev_delivered_kwh > 0,
                10,
            )
            day = (await site_info(pf, "depot-north")).today
        assert clock.now() < t0 + 3 * STEP
        assert day.since.ToDatetime(tzinfo=UTC) == t0 and day.steps == 2
        assert day.peak_import_kw == pytest.approx(60.0)  # the sample of the step under way is not counted
        assert_priced_as(day, direct(pf, "depot-north", day, [a, b]))
        # what it is not: a forgotten once departed, or held at the need it last reported
        assert day.bau_cost != pytest.approx(direct(pf, "depot-north", day, [b]).bau_cost, rel=1e-6)
        assert day.bau_cost != pytest.approx(
            direct(pf, "depot-north", day, [a.model_copy(update={"energy_kwh": 5.0}), b]).bau_cost,
            rel=1e-6,
        )
    finally:
        rt.close()
        await pf.end()
