"""Processes start and stop like services, as real processes (no mocks): every long-running
command ends on SIGTERM and SIGINT within 10 s with exit code 0, its streams closed with a
status and its SQLite files closed; `gridmesh demo` takes every process it started with it,
whether it is stopped by a signal (exit 128 + the signal) or killed outright (its children
get SIGTERM from Linux: PR_SET_PDEATHSIG); `sim chargers` with no central system says which
one it could not reach.

Processes are found by walking /proc (psutil is not a dependency)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import grpc
import pytest
import yaml

from services.stubs.gridmesh.v1 import portfolio_pb2, portfolio_pb2_grpc, sitenode_pb2, sitenode_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
STOP_SECONDS = 10.0  # what every long-running command promises on SIGTERM / SIGINT
GONE_SECONDS = 15.0  # after the demo is stopped or killed, none of its processes may remain


# -- /proc ---------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1])


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents[int(entry)] = stat[1]
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def naming(folder: Path) -> set[int]:
    """Processes whose command line names `folder` (the demo's children name their run folder's files)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if str(folder).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.add(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def running(pids: set[int]) -> set[int]:
    """The ones still running (a zombie has ended: only its parent has not reaped it yet)."""
    return {pid for pid in pids if (stat := _stat(pid)) is not None and stat[0] != "Z"}


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- processes -----------------------------------------------------------------------------
class Command:
    """`gridmesh ARGS` with its output in a file (a pipe nobody reads fills up and stalls it)."""

    def __init__(self, name: str, args: list[str], folder: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, folder / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                cwd=ROOT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        if not wait_until(lambda: text in self.output() or self.proc.poll() is not None, timeout, 0.2):
            raise AssertionError(f"{self.name}: no {text!r} within {timeout:g} s:\n{self.output()[-3000:]}")
        assert text in self.output(), f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}"

    def stop(self, sig: signal.Signals) -> tuple[int, float]:
        """Send `sig`; (exit code, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=STOP_SECONDS + 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not stop on {sig.name}:\n{self.output()[-3000:]}") from None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def commands() -> Iterator[list[Command]]:
    started: list[Command] = []
    yield started
    for command in started:
        command.kill()


def watch(call: Iterator[object], ended: dict[str, object]) -> threading.Thread:
    """Read a server stream on a thread; `ended["code"]` is the status it closed with."""

    def read() -> None:
        try:
            for _ in call:
                pass
            ended["code"] = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            ended["code"] = exc.code()  # type: ignore[attr-defined]

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


# -- every long-running command ------------------------------------------------------------
def portfolio_config(folder: Path, port: int) -> Path:
    doc = yaml.safe_load((ROOT / "examples" / "portfolio.yaml").read_text())
    doc["portfolio"].update(store=str(folder / "portfolio.db"), listen=f"127.0.0.1:{port}")
    (folder / "portfolio.yaml").write_text(yaml.safe_dump(doc))
    return folder / "portfolio.yaml"


def node_config(folder: Path, port: int, ocpp: int, battery: int | None = None, portfolio: int | None = None) -> Path:
    """The example depot's node serving `port`, its chargers' central system on `ocpp`."""
    doc = yaml.safe_load((ROOT / "examples" / "nodes" / "depot.yaml").read_text())
    doc["node"].update(
        journal=str(folder / "journal.db"),
        history=str((ROOT / "examples" / "nodes" / doc["node"]["history"]).resolve()),
        tick_seconds=0.1,
        tokens=[{"token": "v", "role": "viewer"}],
        listen=f"127.0.0.1:{port}",
    )
    doc["devices"] = {"ocpp": {"listen": f"127.0.0.1:{ocpp}", "password_env": "CP_PASSWORD"}}
    if battery is not None:
        doc["devices"]["battery"] = {"host": "127.0.0.1", "port": battery, "poll_seconds": 1}
        doc["site"]["battery"] = {
            "capacity_kwh": 200,
            "soc_initial_kwh": 100,
            "soc_min_kwh": 20,
            "soc_max_kwh": 190,
            "max_charge_kw": 100,
            "max_discharge_kw": 100,
        }
    doc.pop("portfolio", None)
    if portfolio is not None:
        doc["portfolio"] = {"address": f"127.0.0.1:{portfolio}", "insecure_loopback": True}
    (folder / "node.yaml").write_text(yaml.safe_dump(doc))
    return folder / "node.yaml"


# SIGTERM (what Kubernetes and the demo send) to the servers and to the charger fleet whose central system hangs,
# SIGINT (Ctrl-C) to the others: one handler serves both
SIGNALS = {
    "chargers": signal.SIGTERM,
    "node": signal.SIGTERM,
    "dashboard": signal.SIGINT,
    "portfolio": signal.SIGTERM,
    "battery": signal.SIGINT,
}


def test_every_service_stops_on_its_signal_within_ten_seconds(tmp_path: Path, commands: list[Command]) -> None:
    """portfolio, sitenode, dashboard, sim battery and sim chargers, linked as in production;
    the chargers are stopped while their central system hangs (the node is SIGSTOPped with a
    request of theirs unanswered), the case that took SIGKILL."""
    ports = {name: free_port() for name in ("portfolio", "node", "ocpp", "battery", "dashboard")}
    portfolio_yaml = portfolio_config(tmp_path, ports["portfolio"])
    node_yaml = node_config(tmp_path, ports["node"], ports["ocpp"], ports["battery"], ports["portfolio"])
    env = {"GRIDMESH_OPERATOR_TOKEN": "op", "GRIDMESH_VIEWER_TOKEN": "view", "CP_PASSWORD": "pw"}
    start: dict[str, list[str]] = {
        "portfolio": ["portfolio", "serve", "--config", str(portfolio_yaml), "--insecure-loopback"],
        "battery": ["sim", "battery", "--listen", f"127.0.0.1:{ports['battery']}"],
        "node": ["sitenode", "serve", "--config", str(node_yaml), "--insecure-loopback"],
        "dashboard": [
            "dashboard",
            "--portfolio",
            f"127.0.0.1:{ports['portfolio']}",
            "--insecure-loopback",
            "--listen",
            f"127.0.0.1:{ports['dashboard']}",
        ],
    }
    ready = {
        "portfolio": "portfolio serving on port",
        "battery": "SunSpec battery simulator on",
        "node": "serving on port",
        "dashboard": "dashboard serving on",
    }
    procs = {name: Command(name, args, tmp_path, env) for name, args in start.items()}
    commands.extend(procs.values())
    for name, text in ready.items():
        procs[name].wait_for(text)
    procs["chargers"] = Command(
        "chargers",
        [
            "sim",
            "chargers",
            "--central-system",
            f"ws://127.0.0.1:{ports['ocpp']}/ocpp",
            "--ids",
            "ac-01,ac-02",
            "--password",
            "pw",
            "--plug-in",
            "--meter-seconds",
            "0.5",
        ],
        tmp_path,
    )
    commands.append(procs["chargers"])
    procs["chargers"].wait_for("2 charge points connected")
    # a stream open on each server: shutdown closes it with a status instead of leaving it hanging
    node_channel = grpc.insecure_channel(f"127.0.0.1:{ports['node']}")
    portfolio_channel = grpc.insecure_channel(f"127.0.0.1:{ports['portfolio']}")
    node_stream: dict[str, object] = {}
    portfolio_stream: dict[str, object] = {}
    readers = [
        watch(
            sitenode_pb2_grpc.SiteNodeStub(node_channel).WatchEvents(
                sitenode_pb2.WatchEventsRequest(), metadata=[("authorization", "Bearer v")]
            ),
            node_stream,
        ),
        watch(
            portfolio_pb2_grpc.PortfolioStub(portfolio_channel).WatchPortfolio(
                portfolio_pb2.WatchPortfolioRequest(), metadata=[("authorization", "Bearer view")]
            ),
            portfolio_stream,
        ),
    ]
    try:
        os.kill(procs["node"].proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.5)  # a meter report of the chargers now waits for its answer
            took = {"chargers": procs["chargers"].stop(SIGNALS["chargers"])}
        finally:
            os.kill(procs["node"].proc.pid, signal.SIGCONT)
        took |= {name: procs[name].stop(SIGNALS[name]) for name in ("node", "dashboard", "portfolio", "battery")}
        for thread in readers:
            thread.join(timeout=5)
    finally:
        node_channel.close()
        portfolio_channel.close()
    print("stop seconds:", {name: round(seconds, 2) for name, (_, seconds) in took.items()})  # shown with -s
    slow = {name: round(seconds, 1) for name, (_, seconds) in took.items() if seconds > STOP_SECONDS}
    assert not slow, slow
    assert {name: code for name, (code, _) in took.items()} == dict.fromkeys(took, 0), {
        n: procs[n].output()[-2000:] for n, (code, _) in took.items() if code
    }
    # the streams ended with a status, not a hang; the SQLite files were closed (WAL checkpointed away)
    assert node_stream.get("code") not in (None, grpc.StatusCode.OK), node_stream
    assert portfolio_stream.get("code") not in (None, grpc.StatusCode.OK), portfolio_stream
    assert (tmp_path / "journal.db").exists() and not (tmp_path / "journal.db-wal").exists()
    assert (tmp_path / "portfolio.db").exists() and not (tmp_path / "portfolio.db-wal").exists()
    for command in procs.values():
        assert "internal error" not in command.output() and "Traceback" not in command.output(), command.output()


def test_sim_chargers_name_the_central_system_they_cannot_reach(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "sim",
            "chargers",
            "--central-system",
            f"ws://127.0.0.1:{port}/ocpp",
            "--ids",
            "ac-01",
            "--password",
            "pw",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 1, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == [f"error cannot reach the central system at ws://127.0.0.1:{port}/ocpp: connection refused"], (
        run.stderr
    )


# -- the demo takes its processes with it --------------------------------------------------
def _started_demo(tmp_path: Path, everything: bool) -> tuple[subprocess.Popen, set[int], IO[bytes]]:
    """A demo long enough not to end by itself; (demo, every descendant seen, its output).
    Returned once all eight of its processes run and its dashboard answers (`everything`), or
    as soon as its three nodes serve, while it still starts the others (a child may then be
    in its first instants, before it asked to die with its parent)."""
    out = (tmp_path / "demo.out").open("wb")
    demo = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "demo", "--hours", "24", "--speed", "480", "--out", str(tmp_path)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
    )
    seen: set[int] = set()

    def up() -> bool:
        seen.update(descendants(demo.pid))
        if demo.poll() is not None:
            return True
        if everything:
            return b"dashboard: http" in (tmp_path / "demo.out").read_bytes()
        nodes = list(tmp_path.glob("demo-*/logs/node-*.log"))
        return len(nodes) == 3 and all("serving on port" in log.read_text(errors="replace") for log in nodes)

    wait_until(up, 120, 0.1)
    assert demo.poll() is None and up(), (tmp_path / "demo.out").read_text(errors="replace")[-3000:]
    seen.update(descendants(demo.pid))
    # portfolio, three nodes, a battery; then two charger fleets and the dashboard
    assert len(running(seen)) >= (8 if everything else 5), seen
    return demo, seen, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_the_demo_takes_every_process_it_started_with_it(tmp_path: Path, sig: signal.Signals) -> None:
    demo, seen, out = _started_demo(tmp_path, everything=sig is signal.SIGTERM)
    try:
        seen.update(descendants(demo.pid))
        started = time.monotonic()
        demo.send_signal(sig)
        code = demo.wait(timeout=GONE_SECONDS)
        print(f"demo {sig.name}: exit {code} after {time.monotonic() - started:.2f} s")  # shown with -s
        if sig is signal.SIGTERM:
            # it stopped its children itself (SIGTERM, SIGKILL after a grace) and waited for them
            assert code == 128 + signal.SIGTERM and time.monotonic() - started < STOP_SECONDS, code
            assert not running(seen), running(seen)
        else:
            assert code == -signal.SIGKILL
        # killed outright, its children got SIGTERM from the kernel (PR_SET_PDEATHSIG) and stop as on any SIGTERM;
        # one started as the demo was killed is found by its command line
        seen.update(naming(tmp_path) - {os.getpid()})
        left = set() if wait_until(lambda: not running(seen), GONE_SECONDS, 0.2) else running(seen)
        assert not left, {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left}
    finally:
        for pid in running(seen | {demo.pid}):
            os.kill(pid, signal.SIGKILL)
        demo.wait()
        out.close()
    logs = tmp_path.glob("demo-*/logs/*.log")
    if sig is signal.SIGTERM:  # each child stopped cleanly, none needed SIGKILL
        for log in logs:
            assert "internal error" not in log.read_text(errors="replace"), log
