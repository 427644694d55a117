"""The portfolio's edges: mTLS identities, malformed node messages, operator requests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from portfolio_rig import make_node, until

from portfolio.config import PortfolioConfig
from services import portfolio_convert as pc
from services.certs import channel_credentials, init_ca, issue_server, issue_site
from services.errors import bad_request_fields
from services.portfolio_main import make_portfolio
from services.server import start, stop
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2, portfolio_pb2_grpc
from sitenode.clock import RealClock
from sitenode.model.validation import parse

OPERATOR = (("authorization", "Bearer op"),)
VIEWER = (("authorization", "Bearer view"),)


def hello(site_id: str) -> portfolio_pb2.NodeMessage:
    return portfolio_pb2.NodeMessage(hello=portfolio_pb2.Hello(site_id=site_id, software_version="test"))


async def converse(
    address: str,
    messages: list[portfolio_pb2.NodeMessage],
    credentials: grpc.ChannelCredentials | None = None,
    replies: int = 1,
) -> tuple[list[portfolio_pb2.PortfolioMessage], grpc.aio.AioRpcError | None]:
    """Send `messages` on one stream; return what came back and the error that ended it."""
    channel = grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address)
    got: list[portfolio_pb2.PortfolioMessage] = []
    async with channel:
        call = portfolio_pb2_grpc.PortfolioLinkStub(channel).Connect()
        try:
            for m in messages:
                await call.write(m)
            while True:
                reply = await asyncio.wait_for(call.read(), 5)
                if reply is grpc.aio.EOF:
                    return got, None
                if reply.WhichOneof("body") != "ping":
                    got.append(reply)
                if len(got) >= replies and replies > 0 and reply.WhichOneof("body") not in ("welcome",):
                    return got, None
        except grpc.aio.AioRpcError as exc:
            return got, exc
        finally:
            call.cancel()


@pytest.fixture
async def portfolio(tmp_path):
    from portfolio_rig import make_rig_portfolio

    pf = make_rig_portfolio(tmp_path)
    await pf.begin()
    yield pf
    await pf.end()


async def test_health_and_reflection_list_both_services(portfolio):
    async with grpc.aio.insecure_channel(portfolio.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("gridmesh.v1.Portfolio", "gridmesh.v1.PortfolioLink"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert set(portfolio.built.services) == {"gridmesh.v1.Portfolio", "gridmesh.v1.PortfolioLink"}


async def test_malformed_node_messages_get_errors_and_change_nothing(portfolio):
    store = portfolio.hub.store
    # the first message must be a hello
    _, error = await converse(portfolio.address, [portfolio_pb2.NodeMessage(ping=portfolio_pb2.Ping(nonce=1))])
    assert (
        error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT and "hello" in bad_request_fields(error)
    )
    _, error = await converse(portfolio.address, [hello("not a site!")])
    assert error is not None and "hello.site_id" in bad_request_fields(error)
    # a snapshot that is not a site
    bad_snapshot = portfolio_pb2.NodeMessage(
        snapshot=common_pb2.SiteSnapshot(site_id="depot-north", site_config_json="{nope", run_config_json="{}")
    )
    _, error = await converse(portfolio.address, [hello("depot-north"), bad_snapshot], replies=0)
    assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "snapshot.site_config_json" in bad_request_fields(error)
    assert store.snapshot("depot-north") is None
    # telemetry with a negative flow: the whole batch is refused
    points = [
        portfolio_pb2.TelemetryPoint(seq=1, at=pc.ts(RealClock().now()), grid_import_kw=3.0),
        portfolio_pb2.TelemetryPoint(seq=2, at=pc.ts(RealClock().now()), grid_import_kw=-1.0),
    ]
    _, error = await converse(
        portfolio.address,
        [hello("depot-north"), portfolio_pb2.NodeMessage(telemetry=portfolio_pb2.TelemetryBatch(points=points))],
        replies=0,
    )
    assert error is not None and "telemetry.points[1].grid_import_kw" in bad_request_fields(error)
    assert store.last_telemetry_seq("depot-north") == 0
    # an ack of a schedule never issued
    ack = portfolio_pb2.NodeMessage(ack=portfolio_pb2.ScheduleAck(version="pf-made-up", accepted=True))
    _, error = await converse(portfolio.address, [hello("depot-north"), ack], replies=0)
    assert error is not None and "ack.version" in bad_request_fields(error)
    # a second hello on a stream
    _, error = await converse(portfolio.address, [hello("depot-north"), hello("depot-north")], replies=0)
    assert error is not None and "hello" in bad_request_fields(error)
    # and the portfolio still serves
    got, error = await converse(portfolio.address, [hello("depot-north")])
    assert error is None and got[0].welcome.site_id == "depot-north"


async def test_operator_requests_are_checked_and_roles_enforced(portfolio):
    async with grpc.aio.insecure_channel(portfolio.address) as channel:
        stub = portfolio_pb2_grpc.PortfolioStub(channel)
        feeder = portfolio_pb2.Feeder(feeder_id="north", site_ids=["depot-north"], cap_kw=-5.0)
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.SetFeeder(portfolio_pb2.SetFeederRequest(feeder=feeder), metadata=OPERATOR)
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "feeder.cap_kw" in bad_request_fields(bad.value)
        both = portfolio_pb2.Feeder(feeder_id="north", site_ids=["depot-north"], cap_kw=5.0, caps_kw=[1.0])
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.SetFeeder(portfolio_pb2.SetFeederRequest(feeder=both), metadata=OPERATOR)
        assert "feeder.cap_kw" in bad_request_fields(bad.value)
        assert not (await stub.ListFeeders(portfolio_pb2.ListFeedersRequest(), metadata=VIEWER)).feeders
        good = portfolio_pb2.Feeder(feeder_id="north", site_ids=["depot-north"], cap_kw=50.0)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.SetFeeder(portfolio_pb2.SetFeederRequest(feeder=good), metadata=VIEWER)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.ListSites(portfolio_pb2.ListSitesRequest())
        assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
        await stub.SetFeeder(portfolio_pb2.SetFeederRequest(feeder=good), metadata=OPERATOR)
        assert [
            f.cap_kw for f in (await stub.ListFeeders(portfolio_pb2.ListFeedersRequest(), metadata=VIEWER)).feeders
        ] == [50.0]

        now = RealClock().now()
        backwards = portfolio_pb2.FlexEvent(
            event_id="e1",
            kind=portfolio_pb2.FLEX_KIND_REDUCE_BY,
            kw=10,
            start=pc.ts(now + timedelta(hours=2)),
            end=pc.ts(now + timedelta(hours=1)),
        )
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.CreateFlexEvent(portfolio_pb2.CreateFlexEventRequest(event=backwards), metadata=OPERATOR)
        assert "event.end" in bad_request_fields(bad.value)
        no_kind = portfolio_pb2.FlexEvent(event_id="e1", kw=10, start=pc.ts(now), end=pc.ts(now + timedelta(hours=1)))
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.CreateFlexEvent(portfolio_pb2.CreateFlexEventRequest(event=no_kind), metadata=OPERATOR)
        assert "event.kind" in bad_request_fields(bad.value)
        assert not (
            await stub.ListFlexEvents(portfolio_pb2.ListFlexEventsRequest(include_cancelled=True), metadata=VIEWER)
        ).events
        for call, request in (
            (stub.GetSite, portfolio_pb2.GetSiteRequest(site_id="nowhere")),
            (stub.CancelFlexEvent, portfolio_pb2.CancelFlexEventRequest(event_id="nothing")),
            (stub.GetSolveReport, portfolio_pb2.GetSolveReportRequest(solve_id="none")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await call(request, metadata=OPERATOR)
            assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        # a solve with nobody connected reports so, and does not fail
        report = (await stub.Solve(portfolio_pb2.SolveRequest(), metadata=OPERATOR)).report
        assert report.status == "no_sites"


async def test_mtls_node_speaks_only_for_its_own_site(tmp_path):
    certs = tmp_path / "certs"
    init_ca(certs)
    server = issue_server(certs, "portfolio", ["127.0.0.1", "localhost"])
    depot = issue_site(certs, "depot-north")
    body = {
        "portfolio": {
            "store": str(tmp_path / "p.db"),
            "ping_interval_seconds": 0.2,
            "ping_timeout_seconds": 1.0,
            "solve_period_seconds": 3600,
            "tls": {"cert": str(server.cert), "key": str(server.key), "client_ca": str(certs / "ca.pem")},
            "tokens": [{"token": "op", "role": "operator"}],
        }
    }
    hub, built = make_portfolio(
        parse(PortfolioConfig, body), tmp_path, "127.0.0.1:0", insecure_loopback=False, clock=RealClock()
    )
    await start(built)
    address = f"127.0.0.1:{built.port}"
    credentials = channel_credentials(certs / "ca.pem", depot.cert, depot.key)
    try:
        _, error = await converse(address, [hello("office-east")], credentials)
        assert error is not None and error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert hub.store.site("office-east") is None
        # without a client certificate the handshake itself fails
        _, error = await converse(address, [hello("depot-north")], channel_credentials(certs / "ca.pem"))
        assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
        # the real node, with its own certificate, is welcomed and follows the portfolio
        node = make_node(
            "depot",
            tmp_path,
            address,
            insecure_loopback=False,
            ca=str(certs / "ca.pem"),
            cert=str(depot.cert),
            key=str(depot.key),
        )
        node.start()
        solver = asyncio.create_task(hub.run(asyncio.Event()))
        try:
            await until(
                lambda: (
                    hub.store.schedules("depot-north", 1)
                    and str(hub.store.schedules("depot-north", 1)[0].state) == "ACKED"
                ),
                60,
            )
            assert node.runtime.schedule().source == "portfolio"
        finally:
            solver.cancel()
            await node.halt()
    finally:
        await stop(built, 0.1)
        hub.close()
