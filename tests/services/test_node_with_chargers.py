"""End to end as processes: `gridmesh sitenode serve` with its OCPP central system, and
`gridmesh sim chargers` plugging EVs in; the node sees them over gRPC."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import yaml

from services.stubs.gridmesh.v1 import sitenode_pb2, sitenode_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
VIEW = [("authorization", "Bearer v")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_simulated_chargers_drive_a_served_node(tmp_path):
    grpc_port, ocpp_port = free_port(), free_port()
    doc = yaml.safe_load((ROOT / "examples" / "nodes" / "depot.yaml").read_text())
    doc["node"].update(
        journal=str(tmp_path / "j.db"),
        tokens=[{"token": "v", "role": "viewer"}],
        tick_seconds=0.1,
        history=str(ROOT / "examples" / "bundles" / "depot" / "timeseries.csv"),
    )
    doc["devices"] = {"ocpp": {"listen": f"127.0.0.1:{ocpp_port}", "password_env": "CP_PASSWORD"}}
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "CP_PASSWORD": "s3cret"}
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "sitenode",
            "serve",
            "--config",
            str(tmp_path / "node.yaml"),
            "--listen",
            f"127.0.0.1:{grpc_port}",
            "--insecure-loopback",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    sims = None
    try:
        assert "OCPP central system" in node.stdout.readline()
        sims = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "sim",
                "chargers",
                "--central-system",
                f"ws://127.0.0.1:{ocpp_port}/ocpp",
                "--ids",
                "ac-01,ac-02,dc-01",
                "--password",
                "s3cret",
                "--plug-in",
                "--meter-seconds",
                "0.5",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert "3 charge points connected" in sims.stdout.readline()
        stub = sitenode_pb2_grpc.SiteNodeStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        deadline = time.monotonic() + 30
        states = {}
        while time.monotonic() < deadline:
            assets = stub.ListAssets(sitenode_pb2.ListAssetsRequest(), metadata=VIEW, timeout=5).assets
            states = {a.asset_id: a.state for a in assets if a.asset_id in ("ac-01", "ac-02", "dc-01", "ac-03")}
            status = stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=VIEW, timeout=5)
            if status.active_sessions == 3 and all(states[i] == "CHARGING" for i in ("ac-01", "ac-02", "dc-01")):
                break
            time.sleep(0.2)
        assert states == {"ac-01": "CHARGING", "ac-02": "CHARGING", "dc-01": "CHARGING", "ac-03": "AVAILABLE"}
        assert status.active_sessions == 3
    finally:
        for proc in (sims, node):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
