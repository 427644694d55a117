"""SiteNode over a real loopback socket: every RPC with good and bad input, auth, health, reflection."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.errors import bad_request_fields
from services.node_main import make_node
from services.server import start, stop
from services.stubs.gridmesh.v1 import common_pb2, sitenode_pb2, sitenode_pb2_grpc
from sitenode.clock import SimulatedClock
from sitenode.dispatch import AdapterRegistry
from sitenode.node_config import TokenConfig, load_node_config

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 1, 15, 22, 0, tzinfo=UTC)
OPERATOR = [("authorization", "Bearer op-token")]
VIEWER = [("authorization", "Bearer view-token")]


class NoOp:
    def __init__(self):
        self.sent = []

    async def execute(self, command):
        self.sent.append(command)


@pytest.fixture
async def node(tmp_path):
    config, base = load_node_config(ROOT / "examples" / "nodes" / "depot.yaml")
    tokens = [TokenConfig(token="op-token", role="operator"), TokenConfig(token="view-token", role="viewer")]
    config = config.model_copy(
        update={"node": config.node.model_copy(update={"journal": str(tmp_path / "journal.db"), "tokens": tokens})}
    )
    registry, device = AdapterRegistry(), NoOp()
    for c in config.site.chargers:
        registry.register(c.id, device)
    runtime, built = make_node(
        config, base, "127.0.0.1:0", insecure_loopback=True, clock=SimulatedClock(NOW, 1.0), registry=registry
    )
    await start(built)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
    yield runtime, sitenode_pb2_grpc.SiteNodeStub(channel), channel, device, f"127.0.0.1:{built.port}"
    await channel.close()
    await stop(built, 0.1)
    runtime.close()


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


async def test_status_assets_and_schedule(node):
    runtime, stub, *_ = node
    status = await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=VIEWER)
    assert status.site_id == "depot-north" and status.mode == sitenode_pb2.NODE_MODE_FAILSAFE
    assets = (await stub.ListAssets(sitenode_pb2.ListAssetsRequest(), metadata=VIEWER)).assets
    chargers = [a for a in assets if a.kind == common_pb2.ASSET_KIND_CHARGER]
    assert len(chargers) == 20 and all(a.state == "AVAILABLE" for a in chargers)
    assert not (await stub.GetSchedule(sitenode_pb2.GetScheduleRequest(), metadata=VIEWER)).HasField("schedule")


async def test_sessions_then_optimize_gives_a_schedule_and_commands(node):
    runtime, stub, *_ = node
    session = common_pb2.EVSession(
        session_id="van-1",
        arrival=ts(NOW),
        departure=ts(NOW + timedelta(hours=8)),
        energy_kwh=40,
        max_kw=22,
        priority=1,
    )
    await stub.UpsertSession(sitenode_pb2.UpsertSessionRequest(session=session), metadata=OPERATOR)
    out = await stub.Optimize(sitenode_pb2.OptimizeRequest(), metadata=OPERATOR)
    assert out.status == "optimal" and out.ev_shortfall_kwh == pytest.approx(0, abs=1e-6)
    assert out.total_cost <= out.baseline_total_cost + 1e-6
    assert out.commands_created > 0
    columns = {c.name for c in out.schedule.columns}
    assert {"grid_import_kw", "ev_van-1_kw"} <= columns and "van-1" in out.schedule.charger_assignment
    got = await stub.GetSchedule(sitenode_pb2.GetScheduleRequest(), metadata=VIEWER)
    assert got.schedule.version == out.schedule.version
    status = await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=VIEWER)
    assert status.mode == sitenode_pb2.NODE_MODE_LOCAL and status.active_sessions == 1
    await stub.EndSession(sitenode_pb2.EndSessionRequest(session_id="van-1"), metadata=OPERATOR)
    assert (await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=VIEWER)).active_sessions == 0


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (dict(session_id="x", hours=(2, 1), energy=10, max_kw=11), "session.departure"),
        (dict(session_id="x", hours=(0, 4), energy=-1, max_kw=11), "session.energy_kwh"),
        (dict(session_id="x", hours=(0, 4), energy=10, max_kw=11, charger="cp-nowhere"), "session.charger_id"),
        (dict(session_id="", hours=(0, 4), energy=10, max_kw=11), "session.session_id"),
    ],
)
async def test_bad_sessions_name_the_field_and_change_nothing(node, request_, field):
    runtime, stub, *_ = node
    a, d = request_["hours"]
    session = common_pb2.EVSession(
        session_id=request_["session_id"],
        arrival=ts(NOW + timedelta(hours=a)),
        departure=ts(NOW + timedelta(hours=d)),
        energy_kwh=request_["energy"],
        max_kw=request_["max_kw"],
        charger_id=request_.get("charger", ""),
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.UpsertSession(sitenode_pb2.UpsertSessionRequest(session=session), metadata=OPERATOR)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_request_fields(exc.value)
    assert runtime.journal.sessions() == []


async def test_objective_and_commands(node):
    runtime, stub, _, device, _ = node
    out = await stub.SetObjective(
        sitenode_pb2.SetObjectiveRequest(weights=sitenode_pb2.ObjectiveWeights(cost=1, carbon=0.5, peak=0)),
        metadata=OPERATOR,
    )
    assert out.weights.carbon == 0.5 and out.priorities.fleet == 1
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.SetObjective(
            sitenode_pb2.SetObjectiveRequest(
                priorities=sitenode_pb2.Priorities(fleet=0, facility=2, battery=3, mining=4, export=9)
            ),
            metadata=OPERATOR,
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"priorities.fleet", "priorities.export"} <= set(bad_request_fields(exc.value))
    assert runtime.settings.priorities.fleet == 1  # unchanged

    sent = await stub.SendCommand(
        sitenode_pb2.SendCommandRequest(
            asset_id="dc-01", type=sitenode_pb2.COMMAND_TYPE_SET_CHARGE_RATE, value_kw=500, ttl_seconds=600
        ),
        metadata=OPERATOR,
    )
    assert sent.value_kw == 60  # clamped to the charger's rating
    await runtime.engine.tick(runtime.clock.now())
    assert [c.value_kw for c in device.sent] == [60]
    for bad, code in (
        (
            dict(asset_id="nope", type=sitenode_pb2.COMMAND_TYPE_SET_CHARGE_RATE, value_kw=1, ttl_seconds=60),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            dict(asset_id="dc-01", type=sitenode_pb2.COMMAND_TYPE_SET_CHARGE_RATE, value_kw=1, ttl_seconds=0),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            dict(asset_id="dc-01", type=sitenode_pb2.COMMAND_TYPE_UNSPECIFIED, value_kw=1, ttl_seconds=60),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.SendCommand(sitenode_pb2.SendCommandRequest(**bad), metadata=OPERATOR)
        assert exc.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.EndSession(sitenode_pb2.EndSessionRequest(session_id="ghost"), metadata=OPERATOR)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


async def test_auth_roles(node):
    _, stub, *_ = node
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetStatus(sitenode_pb2.GetStatusRequest())
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=[("authorization", "Bearer wrong")])
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Optimize(sitenode_pb2.OptimizeRequest(), metadata=VIEWER)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in stub.WatchEvents(sitenode_pb2.WatchEventsRequest()):
            pass
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_watch_events_streams_bus_events(node):
    runtime, stub, *_ = node
    call = stub.WatchEvents(
        sitenode_pb2.WatchEventsRequest(types=["COMMAND_CREATED", "STATE_CHANGED"]), metadata=VIEWER
    )
    await asyncio.sleep(0.2)  # let the subscription open
    runtime.fire("ac-01", "plug_in")
    await stub.SendCommand(
        sitenode_pb2.SendCommandRequest(
            asset_id="ac-01", type=sitenode_pb2.COMMAND_TYPE_SET_CHARGE_RATE, value_kw=7, ttl_seconds=60
        ),
        metadata=OPERATOR,
    )
    first = await asyncio.wait_for(call.read(), 5)
    second = await asyncio.wait_for(call.read(), 5)
    assert (first.type, first.to_state) == ("STATE_CHANGED", "PREPARING")
    assert (second.type, second.asset_id, second.value_kw) == ("COMMAND_CREATED", "ac-01", 7)
    call.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in stub.WatchEvents(sitenode_pb2.WatchEventsRequest(types=["NOPE"]), metadata=VIEWER):
            pass
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_health_and_reflection(node):
    _, _, channel, _, target = node
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="gridmesh.v1.SiteNode"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    # a client that knows no stubs finds the service and its methods through reflection
    from grpc_requests.aio import AsyncClient

    client = AsyncClient(target, lazy=True)
    assert "gridmesh.v1.SiteNode" in await client.service_names()
    descriptor = client.get_service_descriptor("gridmesh.v1.SiteNode")
    methods = {m.name for m in descriptor.methods}
    assert {"GetStatus", "Optimize", "WatchEvents"} <= set(methods)


async def test_status_answers_while_an_optimize_is_solving(node):
    """The charger-choice MIP of many unassigned sessions takes seconds: the node answers
    meanwhile (its plan runs in the worker thread, not on the event loop)."""
    runtime, stub, *_ = node
    for k in range(30):
        session = common_pb2.EVSession(
            session_id=f"van-{k}",
            arrival=ts(NOW + timedelta(minutes=15 * (k % 8))),
            departure=ts(NOW + timedelta(hours=9 + k % 4)),
            energy_kwh=20 + k % 7 * 5,
            max_kw=22,
            priority=1 + k % 3,
        )
        await stub.UpsertSession(sitenode_pb2.UpsertSessionRequest(session=session), metadata=OPERATOR)
    optimize = asyncio.ensure_future(stub.Optimize(sitenode_pb2.OptimizeRequest(), metadata=OPERATOR))
    for _ in range(500):
        if runtime.planner.running:
            break
        await asyncio.sleep(0.01)
    assert runtime.planner.running
    answered = 0
    while runtime.planner.running and answered < 20:
        status = await stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=VIEWER)
        assert status.site_id == "depot-north"
        answered += 1
    assert answered >= 3 and not optimize.done()  # answered while the plan was still solving
    reply = await optimize
    assert reply.status in ("optimal", "time_limit") and reply.schedule.version
