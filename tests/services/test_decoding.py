"""Bytes that are not the method's message are bad input: INVALID_ARGUMENT naming the request."""

from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from services.errors import bad_request_fields
from services.node_main import make_node
from services.server import start, stop
from services.stubs.gridmesh.v1 import sitenode_pb2
from sitenode.clock import SimulatedClock
from sitenode.node_config import TokenConfig, load_node_config

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = [("authorization", "Bearer op")]
GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length-delimited, a length far past the end


@pytest.fixture
async def node(tmp_path):
    config, base = load_node_config(ROOT / "examples" / "nodes" / "depot.yaml")
    config = config.model_copy(
        update={
            "node": config.node.model_copy(
                update={"journal": str(tmp_path / "j.db"), "tokens": [TokenConfig(token="op", role="operator")]}
            )
        }
    )
    runtime, built = make_node(
        config, base, "127.0.0.1:0", insecure_loopback=True, clock=SimulatedClock(datetime(2025, 1, 15, tzinfo=UTC))
    )
    await start(built)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
    yield channel
    await channel.close()
    await stop(built, 0.1)
    runtime.close()


@pytest.mark.parametrize("method", ["GetStatus", "UpsertSession", "SendCommand"])
async def test_an_undecodable_unary_request_is_invalid_argument_naming_the_request(node, method):
    call = node.unary_unary(f"/gridmesh.v1.SiteNode/{method}")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(GARBAGE, metadata=OPERATOR)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "request" in bad_request_fields(caught.value)
    # the server goes on, and a good request is decoded as before
    status = sitenode_pb2.GetStatusResponse.FromString(
        await node.unary_unary("/gridmesh.v1.SiteNode/GetStatus")(
            sitenode_pb2.GetStatusRequest().SerializeToString(), metadata=OPERATOR
        )
    )
    assert status.site_id == "depot-north"


async def test_an_undecodable_request_to_a_response_stream_ends_it_as_invalid_argument(node):
    call = node.unary_stream("/gridmesh.v1.SiteNode/WatchEvents")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call(GARBAGE, metadata=OPERATOR):
            pass
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
