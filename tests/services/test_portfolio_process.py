"""`gridmesh portfolio serve` with examples/portfolio.yaml as is, and a node process linked to it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_node_process import free_port

from services.stubs.gridmesh.v1 import portfolio_pb2, portfolio_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def wait_serving(port: int, service: str, timeout: float = 60) -> grpc.Channel:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (
                health.Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status
                == health_pb2.HealthCheckResponse.SERVING
            ):
                return channel
        except grpc.RpcError:
            time.sleep(0.1)
    raise AssertionError(f"{service} never reported SERVING")


def test_example_portfolio_serves_a_linked_node_process(tmp_path):
    (tmp_path / "examples").mkdir()
    shutil.copy(
        ROOT / "examples" / "portfolio.yaml", tmp_path / "examples" / "portfolio.yaml"
    )  # its store lands under tmp_path/runs
    port = free_port()
    env = {**os.environ, "GRIDMESH_OPERATOR_TOKEN": "op", "GRIDMESH_VIEWER_TOKEN": "view", "PYTHONUNBUFFERED": "1"}

    def logs(name: str) -> IO[bytes]:
        # a file, not a pipe: a pipe nobody reads fills with the service's log and stalls it
        return (tmp_path / f"{name}.log").open("wb")

    portfolio = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "portfolio",
            "serve",
            "--config",
            str(tmp_path / "examples" / "portfolio.yaml"),
            "--listen",
            f"127.0.0.1:{port}",
            "--insecure-loopback",
        ],
        env=env,
        stdout=logs("portfolio"),
        stderr=subprocess.STDOUT,
    )
    node = None
    try:
        channel = wait_serving(port, "gridmesh.v1.PortfolioLink")
        doc = yaml.safe_load((ROOT / "examples" / "nodes" / "office.yaml").read_text())
        doc["node"].update(
            journal=str(tmp_path / "office.db"),
            history=str((ROOT / "examples" / "nodes" / doc["node"]["history"]).resolve()),
            tick_seconds=0.1,
        )
        doc["portfolio"] = {"address": f"127.0.0.1:{port}", "insecure_loopback": True}
        (tmp_path / "office.yaml").write_text(yaml.safe_dump(doc))
        node = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "sitenode",
                "serve",
                "--config",
                str(tmp_path / "office.yaml"),
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--insecure-loopback",
            ],
            env=env,
            stdout=logs("node"),
            stderr=subprocess.STDOUT,
        )
        stub = portfolio_pb2_grpc.PortfolioStub(channel)
        meta = [("authorization", "Bearer view")]
        deadline = time.monotonic() + 60
        site = None
        while time.monotonic() < deadline:
            sites = stub.ListSites(portfolio_pb2.ListSitesRequest(), metadata=meta).sites
            site = next((s for s in sites if s.site_id == "office-east"), None)
            if site is not None and site.connected and site.schedule_state == "ACKED":
                break
            time.sleep(0.2)
        assert site is not None and site.connected and site.schedule_state == "ACKED", site
        feeders = stub.ListFeeders(portfolio_pb2.ListFeedersRequest(), metadata=meta).feeders
        assert [f.feeder_id for f in feeders] == ["north"]
        channel.close()
    finally:
        for proc in (node, portfolio):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=20) for p in (node, portfolio) if p is not None]
    assert codes == [0] * len(codes)
    assert (tmp_path / "runs" / "portfolio" / "portfolio.db").exists()
