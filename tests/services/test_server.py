"""The server factory: plaintext only on loopback, TLS otherwise, metrics for every call."""

import asyncio
import urllib.request

import grpc
import pytest
from factories.certs import make_server_cert
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.observability import Metrics
from services.server import ServerOptions, build_server, start, stop
from sitenode.errors import InvalidInput


def no_services(server):
    return []


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "192.0.2.1:0", "[::]:0", "example.org:0"])
def test_plaintext_is_refused_off_loopback(listen):
    with pytest.raises(InvalidInput) as exc:
        build_server(ServerOptions(listen=listen, insecure_loopback=True), no_services)
    assert exc.value.violations[0].field == "listen"


def test_no_plaintext_without_the_flag():
    with pytest.raises(InvalidInput, match="insecure-loopback"):
        build_server(ServerOptions(listen="127.0.0.1:0"), no_services)


async def test_tls_server_answers_a_client_that_trusts_its_ca(tmp_path):
    files = make_server_cert(tmp_path)
    built = build_server(ServerOptions(listen="127.0.0.1:0", tls_cert=files.cert, tls_key=files.key), no_services)
    await start(built)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=files.ca.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{built.port}", creds) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=2)
    finally:
        await stop(built, 0.1)


async def test_metrics_count_calls_by_method_and_code():
    metrics = Metrics()
    built = build_server(ServerOptions(listen="127.0.0.1:0", insecure_loopback=True), no_services, metrics)
    await start(built)
    port = metrics.serve("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest())
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'gridmesh_grpc_requests_total{code="OK",method="/grpc.health.v1.Health/Check"} 1.0' in body
        assert 'gridmesh_grpc_requests_total{code="NOT_FOUND",method="/grpc.health.v1.Health/Check"} 1.0' in body
        assert "gridmesh_grpc_latency_seconds_bucket" in body
    finally:
        await stop(built, 0.1)
        metrics.close()


async def test_health_watch_streams_through_every_interceptor_and_is_counted():
    """grpc's health Watch streams with `context.write` (a coroutine, not a generator): each
    interceptor must pass that shape through."""
    metrics = Metrics()
    built = build_server(ServerOptions(listen="127.0.0.1:0", insecure_loopback=True), no_services, metrics)
    await start(built)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            first = await call.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            call.cancel()
        for _ in range(50):
            if metrics.requests.labels(method="/grpc.health.v1.Health/Watch", code="CANCELLED")._value.get():
                break
            await asyncio.sleep(0.02)
        counted = {
            s.labels["code"]
            for m in metrics.registry.collect()
            for s in m.samples
            if s.name == "gridmesh_grpc_requests_total" and s.labels.get("method") == "/grpc.health.v1.Health/Watch"
        }
        assert counted, "the Watch call was not counted"
    finally:
        await stop(built, 0.1)
