"""`gridmesh sitenode serve` as a process: ready when health says so, and after kill -9
and a restart no command is lost, none that finished is sent again, and the schedule in
force is still the one it had."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import yaml
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.stubs.gridmesh.v1 import common_pb2, sitenode_pb2, sitenode_pb2_grpc
from sitenode.dispatch import CommandState
from sitenode.journal import Journal

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = [("authorization", "Bearer op")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tmp_path: Path) -> Path:
    doc = yaml.safe_load((ROOT / "examples" / "nodes" / "depot.yaml").read_text())
    doc["node"].update(
        journal=str(tmp_path / "journal.db"),
        history=str(ROOT / "examples" / "bundles" / "depot" / "timeseries.csv"),
        tokens=[{"token": "op", "role": "operator"}],
        tick_seconds=0.05,
    )
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def start(cfg: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # its log goes to a file beside the config: a pipe nobody reads fills up and stalls the node
    with (cfg.parent / "node.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "sitenode",
                "serve",
                "--config",
                str(cfg),
                "--listen",
                f"127.0.0.1:{port}",
                "--insecure-loopback",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_serving(port: int, timeout: float = 60) -> grpc.Channel:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (
                health.Check(health_pb2.HealthCheckRequest(service="gridmesh.v1.SiteNode"), timeout=1).status
                == health_pb2.HealthCheckResponse.SERVING
            ):
                return channel
        except grpc.RpcError:
            time.sleep(0.1)
    raise AssertionError("node never reported SERVING")


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def test_kill_9_and_restart(tmp_path):
    cfg, port = config(tmp_path), free_port()
    proc = start(cfg, port)
    try:
        stub = sitenode_pb2_grpc.SiteNodeStub(wait_serving(port))
        now = datetime.now(UTC)
        for i in range(6):
            session = common_pb2.EVSession(
                session_id=f"van-{i}",
                arrival=ts(now - timedelta(minutes=30)),
                departure=ts(now + timedelta(hours=6)),
                energy_kwh=30 + 5 * i,
                max_kw=22,
                priority=1 + i % 3,
            )
            stub.UpsertSession(sitenode_pb2.UpsertSessionRequest(session=session), metadata=OPERATOR, timeout=10)
        out = stub.Optimize(sitenode_pb2.OptimizeRequest(), metadata=OPERATOR, timeout=30)
        # the loop may already have planned after the upserts: same setpoints, same command ids
        assert out.status == "optimal"
        version = out.schedule.version
        time.sleep(0.3)  # let the engine send the commands now due
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    journal = Journal(tmp_path / "journal.db")
    at_crash = {c.id: c.state for c in journal.commands()}
    assert at_crash, "the plan should have produced commands"
    assert journal.current_schedule().version == version
    journal.close()
    log = tmp_path / "dry_run_commands.jsonl"
    before = [json.loads(line)["id"] for line in log.read_text().splitlines()] if log.exists() else []
    assert before, "some commands should have reached the devices before the kill"

    proc = start(cfg, port)
    try:
        stub = sitenode_pb2_grpc.SiteNodeStub(wait_serving(port))
        status = stub.GetStatus(sitenode_pb2.GetStatusRequest(), metadata=OPERATOR, timeout=10)
        assert status.active_sessions == 6
        assert status.schedule_version == version and status.mode == sitenode_pb2.NODE_MODE_LOCAL
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, (cfg.parent / "node.log").read_text()[-2000:]
    journal = Journal(tmp_path / "journal.db")
    after = {c.id: c.state for c in journal.commands()}
    assert set(at_crash) <= set(after)  # nothing lost
    sent = [json.loads(line)["id"] for line in log.read_text().splitlines()]
    completed_before = {i for i, s in at_crash.items() if s is CommandState.COMPLETED}
    assert all(sent.count(i) == 1 for i in completed_before)  # none finished sent again
    repeats = {i for i in sent if sent.count(i) > 1}
    assert repeats <= {i for i, s in at_crash.items() if s is CommandState.DISPATCHED}
    assert journal.current_schedule().version == version  # still in force: no re-plan was due
