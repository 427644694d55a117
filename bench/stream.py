"""Portfolio stream benchmark: N simulated site nodes on one portfolio over loopback gRPC.

    python bench/stream.py [--nodes 100,1000] [--seconds 5] [--points 1] [--window 64] [--solves 5]
                           [--skip-bare] [--keep DIR] [--out FILE]

For each N the portfolio runs as a real subprocess (`gridmesh portfolio serve
--insecure-loopback`, its store in a temporary folder on disk) and N raw grpc.aio
`PortfolioLink.Connect` streams run in this process (one channel per 100 streams). They
behave like `services/link_client.py`: hello first, pong every ping, a ping of their own
only after two ping intervals with nothing heard, an immediate accepting ack for every
schedule. Measured:

1. memory per connection: (portfolio VmRSS with N streams welcomed − VmRSS before) / N,
   "before" taken after one warm-up stream came and went;
2. telemetry ingestion: every node sends TelemetryBatch messages (`--points` points each)
   as fast as it can for `--seconds`, with at most `--window` messages unacked per node
   (so the backlog drains in seconds; a real node sends whatever its journal holds, acked
   or not, and the portfolio acks a site at most every `telemetry_ack_seconds`, 0.5 s by
   default); rate = telemetry rows the portfolio's store gained during the window / window
   length, and after it every node waits until its acks cover all it sent. Beside it
   (unless `--skip-bare`): `bench/bare_link.py`, which acks each message at once and does
   nothing else, fed by the same nodes; and `bench/bare_link.py --sink`, which only
   counts, fed by one stream from grpc's synchronous client and by N grpc.aio streams
   writing without waiting (the most a grpc.aio server takes in here);
3. schedule push: each node sends a small snapshot (grid connection, fixed load, PV, flat
   tariff, 96 steps; the portfolio solves 8), the snapshot-triggered solves settle, then
   the operator `Portfolio.Solve` runs `--solves` times (the figures are the median over
   them, and the worst p99 is kept). Per node: wall time its ack was written minus the
   solve's end, the report's `solved_at` (the portfolio's clock, the wall clock here, when
   its solver returned). "before solver" is what ran between the solve's start (`at`) and
   the solver, besides the problems' build the hub logs: reading feeders and events, and
   handing the work to a thread.

The portfolio's ping timeout is raised to 30 s (`--ping-timeout`) so the figures cover
all N streams: with the service's default 3 s, streams are dropped at 1,000 nodes while
snapshot receipt and the solve's synchronous parts hold the portfolio's event loop;
"dropped" counts streams the portfolio ended.

Goals (portfolio issue): <= 200 KiB per connection; >= 15,000 telemetry messages/s;
every node acked within 0.5 s (p99) of the solve's end.

An in-process breakdown (a store opened as the service opens it) says where the time
goes per site: the snapshot's receipt and the solve's work around the solver (problem
build, encoding the SetpointSchedule as the hub does, storing the issued schedules in
one transaction, the acks in one transaction; per-transaction store costs are divided
by the sites in it). The problem build per site also gives the build estimate above.
"""

from __future__ import annotations

import benchpath  # noqa: F401 - first: keeps bench/ from shadowing the sitenode package

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pandas as pd
from rich.console import Console
from rich.table import Table

import portfolio_process  # bench/, last on the path (benchpath)

from services import portfolio_convert as pc
from services.convert import ts
from services.link_client import ping_due
from services.server import KEEPALIVE
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2, portfolio_pb2_grpc
from sitenode.model.run import RunConfig
from sitenode.model.site import SiteConfig

STEP_MINUTES = 15
SNAPSHOT_STEPS = 96
SOLVE_STEPS = 8
STREAMS_PER_CHANNEL = 100
TOKEN = "bench"
META = [("authorization", f"Bearer {TOKEN}")]
GOALS = {"kib_per_connection": 200.0, "telemetry_messages_per_s": 15_000.0, "ack_p99_s": 0.5}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


# ---- the portfolio process -------------------------------------------------------------
def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy (not idle or waiting on I/O) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """Samples, every `every` seconds in its own thread (the event loop may be the busy
    one), the CPU seconds of this process, of the portfolio and of the whole machine; then
    says how many cores each used over any stretch of wall time inside the sampling."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.samples.append((time.time(), time.process_time(), cpu_seconds(self.pid), machine_busy_seconds()))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        # one more at the end: on a starved machine the thread may have taken none after the
        # stretch a caller asks about, which then could not be bracketed
        with contextlib.suppress(OSError):  # the portfolio may be gone already
            self._sample()

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Cores used from wall time `start` to `end` by this process, the portfolio and the machine
        (over the samples that bracket the stretch: at 10 ms a sample, a short one reads coarse)."""
        before = [s for s in self.samples if s[0] <= start] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= end] or self.samples[-1:]
        if not before or not after or after[0][0] <= before[-1][0]:
            return {}
        (t0, *a), (t1, *b) = before[-1], after[0]
        return {name: (y - x) / (t1 - t0) for name, x, y in zip(("bench", "portfolio", "machine"), a, b, strict=True)}


class PortfolioProcess(portfolio_process.PortfolioProcess):
    """The portfolio the stream bench measures: its step, horizon and heartbeat."""

    def __init__(self, folder: Path, ping_interval: float, ping_timeout: float) -> None:
        body = {
            "portfolio": {
                "store": "portfolio.db",
                "tokens": [{"token": TOKEN, "role": "operator"}],
                "step_minutes": STEP_MINUTES,
                "horizon_steps": SOLVE_STEPS,
                "solve_period_seconds": 86_400,
                "schedule_valid_minutes": 60,
                "ping_interval_seconds": ping_interval,
                "ping_timeout_seconds": ping_timeout,
            }
        }
        super().__init__(folder, body)


class BareLinkProcess(PortfolioProcess):
    """`bench/bare_link.py` in a subprocess: grpc.aio with no portfolio behind it."""

    def command(self) -> tuple[list[str], str]:
        return [sys.executable, str(Path(__file__).with_name("bare_link.py"))], "bare link serving on port "


class SinkProcess(BareLinkProcess):
    """`bench/bare_link.py --sink`: takes the streams' messages, counts them, sends nothing."""

    def command(self) -> tuple[list[str], str]:
        command, ready = super().command()
        return [*command, "--sink"], ready

    def received_per_s(self, start: float, end: float) -> float:
        """Messages a second the sink counted between wall times `start` and `end`, by its own lines."""
        counts = [
            (float(at), int(n))
            for n, at in re.findall(r"^received (\d+) at ([0-9.]+)$", (self.folder / "portfolio.out").read_text(), re.M)
        ]
        inside = [(at, n) for at, n in counts if start <= at <= end]
        if len(inside) < 2:
            return float("nan")
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0)


# ---- simulated nodes -------------------------------------------------------------------
def site_snapshot(site_id: str, index: int, now: datetime) -> common_pb2.SiteSnapshot:
    """What `portfolio_convert.snapshot_out` would send for a small site: grid limits, fixed load, PV, flat tariff."""
    start = pd.Timestamp(now).floor(f"{STEP_MINUTES}min").to_pydatetime()
    site = SiteConfig.model_validate(
        {"site_id": site_id, "grid": {"import_limit_kw": 100.0, "export_limit_kw": 50.0}, "pv": {"curtailable": True}}
    )
    run = RunConfig.model_validate(
        {
            "horizon": {"start": start.isoformat(), "step_minutes": STEP_MINUTES, "steps": SNAPSHOT_STEPS},
            "tariff": {
                "energy_rates": [{"rate": 0.2, "schedule": {"start_time": "00:00", "end_time": "23:59"}}],
                "export_rate": 0.05,
            },
        }
    )
    msg = common_pb2.SiteSnapshot(
        site_id=site_id,
        taken_at=ts(now),
        soc_kwh=0.0,
        site_config_json=site.model_dump_json(exclude_none=True),
        run_config_json=run.model_dump_json(exclude_none=True),
    )
    msg.load_forecast_kw.CopyFrom(
        pc.series(start, STEP_MINUTES, [20.0 + index % 7 + (k % 4) for k in range(SNAPSHOT_STEPS)])
    )
    msg.pv_forecast_kw.CopyFrom(pc.series(start, STEP_MINUTES, [float(k % 12) for k in range(SNAPSHOT_STEPS)]))
    return msg


class SimNode:
    def __init__(self, site_id: str, channel: grpc.aio.Channel, ping_interval: float) -> None:
        self.site_id, self.ping_interval = site_id, ping_interval
        self.stub = portfolio_pb2_grpc.PortfolioLinkStub(channel)
        self.call: grpc.aio.StreamStreamCall | None = None
        self.lock = asyncio.Lock()
        self.welcomed = asyncio.Event()
        self.acked = asyncio.Event()
        self.seq = 0  # last telemetry seq sent
        self.acked_seq = 0  # last telemetry_ack up_to_seq
        self.schedules: dict[str, tuple[float, float]] = {}  # version -> (wall time received, wall time ack written)
        self.ended: str | None = None
        self.tasks: list[asyncio.Task] = []
        self.last_heard = self.last_ping = time.monotonic()

    async def send(self, message: portfolio_pb2.NodeMessage) -> None:
        async with self.lock:
            await self.call.write(message)  # type: ignore[union-attr]

    async def offer(self, message: portfolio_pb2.NodeMessage) -> None:
        """Send unless the stream has ended (the portfolio may have dropped it)."""
        if self.ended is None:
            try:
                await self.send(message)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
                self.ended = self.ended or f"{type(exc).__name__}: {exc}"

    async def open(self) -> None:
        self.call = self.stub.Connect()
        await self.send(
            portfolio_pb2.NodeMessage(hello=portfolio_pb2.Hello(site_id=self.site_id, software_version="bench"))
        )
        self.tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._heartbeat())]
        await asyncio.wait_for(self.welcomed.wait(), 60)

    async def _read(self) -> None:
        try:
            async for message in self.call:  # type: ignore[union-attr]
                self.last_heard = time.monotonic()
                kind = message.WhichOneof("body")
                if kind == "telemetry_ack":
                    self.acked_seq = max(self.acked_seq, message.telemetry_ack.up_to_seq)
                    self.acked.set()
                elif kind == "schedule":
                    received = time.time()
                    version = message.schedule.schedule.version
                    await self.send(
                        portfolio_pb2.NodeMessage(ack=portfolio_pb2.ScheduleAck(version=version, accepted=True))
                    )
                    self.schedules[version] = (received, time.time())
                elif kind == "ping":
                    await self.send(portfolio_pb2.NodeMessage(pong=portfolio_pb2.Pong(nonce=message.ping.nonce)))
                elif kind == "welcome":
                    self.acked_seq = message.welcome.last_telemetry_seq
                    self.seq = max(self.seq, self.acked_seq)
                    self.welcomed.set()
            self.ended = "the portfolio closed the stream"
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.ended = f"{exc.code().name}: {exc.details()}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a write on a stream that ended under it
            self.ended = f"{type(exc).__name__}: {exc}"
        finally:
            self.acked.set()

    async def _heartbeat(self) -> None:
        """The node's rule: the portfolio keeps the stream alive; a ping of its own only after
        two intervals with nothing heard, then at most one per interval."""
        nonce, interval = 0, self.ping_interval
        while True:
            now = time.monotonic()
            if ping_due(now, self.last_heard, self.last_ping, interval, math.inf):  # the bench's nodes never give up
                nonce += 1
                self.last_ping = now
                await self.send(
                    portfolio_pb2.NodeMessage(ping=portfolio_pb2.Ping(nonce=nonce, sent_at=ts(datetime.now(UTC))))
                )
                continue
            due = max(self.last_heard + 2 * interval, self.last_ping + interval)
            await asyncio.sleep(max(0.01, due - now))

    async def pump(self, deadline: float, points: int, window: int) -> None:
        """TelemetryBatch messages as fast as the portfolio acks them, at most `window` unacked."""
        at = ts(datetime.now(UTC))
        while time.monotonic() < deadline and self.ended is None:
            if self.seq - self.acked_seq >= window * points:
                self.acked.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.acked.wait(), max(0.0, deadline - time.monotonic()))
                continue
            first = self.seq + 1
            self.seq += points
            batch = portfolio_pb2.TelemetryBatch(
                points=[
                    portfolio_pb2.TelemetryPoint(
                        seq=s, at=at, grid_import_kw=12.5, load_kw=20.0, pv_kw=7.5, soc_kwh=0.0
                    )
                    for s in range(first, first + points)
                ]
            )
            await self.offer(portfolio_pb2.NodeMessage(telemetry=batch))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.call is not None:
            self.call.cancel()


async def until(predicate, timeout: float, what: str, every: float = 0.05) -> float:  # noqa: ANN001
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(every)
    return time.monotonic() - started


def epoch(stamp) -> float:  # noqa: ANN001 - a protobuf Timestamp
    return stamp.seconds + stamp.nanos / 1e9


NODE_CHANNEL_OPTIONS = [*KEEPALIVE, ("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel


def sim_nodes(address: str, n: int, ping_interval: float) -> tuple[list[grpc.aio.Channel], list[SimNode]]:
    """N simulated nodes, STREAMS_PER_CHANNEL to a channel (not yet connected)."""
    channels = [
        grpc.aio.insecure_channel(address, options=NODE_CHANNEL_OPTIONS)
        for _ in range(math.ceil(n / STREAMS_PER_CHANNEL))
    ]
    return channels, [SimNode(f"site-{i:05d}", channels[i // STREAMS_PER_CHANNEL], ping_interval) for i in range(n)]


async def close_all(nodes: list[SimNode], channels: list[grpc.aio.Channel]) -> None:
    """End every node's stream and close every channel, whatever state each is in."""
    for node in nodes:
        with contextlib.suppress(Exception):
            await node.close()
    for ch in channels:
        with contextlib.suppress(Exception):
            await ch.close()


def stored_points(folder: Path) -> int:
    """Telemetry rows in the portfolio's store (read-only; the store is in WAL mode, so its writer goes on)."""
    with contextlib.closing(sqlite3.connect(f"file:{folder / 'portfolio.db'}?mode=ro", uri=True)) as db:
        return db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]


async def pump_telemetry(
    nodes: list[SimNode], pid: int, args: argparse.Namespace, taken: Callable[[], int] | None = None
) -> tuple[int, float, float, float, float]:
    """Every node pumps telemetry for `args.seconds`: (points the server took in during the
    window, the window's seconds, the server's CPU cores, this process's CPU cores, seconds
    until the backlog drained). `taken` counts what the server has taken in so far (by
    default what the nodes saw acked)."""
    count = taken or (lambda: sum(node.acked_seq for node in nodes))
    base = count()
    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
    bench0 = time.process_time()
    deadline = time.monotonic() + args.seconds
    pumps = [asyncio.create_task(node.pump(deadline, args.points, args.window)) for node in nodes]
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    in_window = count() - base
    window_s = time.perf_counter() - wall0
    server_cpu = (cpu_seconds(pid) - cpu0) / window_s
    bench_cpu = (time.process_time() - bench0) / window_s
    await asyncio.gather(*pumps)
    drain_s = await until(
        lambda: all(node.acked_seq >= node.seq or node.ended for node in nodes), 120, "telemetry drain"
    )
    return in_window, window_s, server_cpu, bench_cpu, drain_s


async def run_bare(n: int, args: argparse.Namespace, folder: Path, console: Console) -> dict:
    """The telemetry phase against `bench/bare_link.py`: the grpc.aio ceiling for these nodes here."""
    server = BareLinkProcess(folder, args.ping_interval, args.ping_timeout)
    channels: list[grpc.aio.Channel] = []
    nodes: list[SimNode] = []
    try:
        await server.open()
        channels, nodes = sim_nodes(f"127.0.0.1:{server.port}", n, args.ping_interval)
        await asyncio.gather(*(node.open() for node in nodes))
        await asyncio.sleep(1.0)
        acked, window_s, server_cpu, bench_cpu, _ = await pump_telemetry(nodes, server.pid, args)
        rate = acked / window_s / args.points
        console.print(
            f"[{n}] bare grpc.aio link (no portfolio): {rate:,.0f} telemetry messages/s, "
            f"server CPU {server_cpu:.0%} of a core, bench CPU {bench_cpu:.0%}"
        )
        return {
            "messages_per_s": rate,
            "server_cpu_cores": server_cpu,
            "bench_cpu_cores": bench_cpu,
            "dropped": sum(1 for node in nodes if node.ended),
        }
    finally:
        await close_all(nodes, channels)
        server.close()


SINK_MESSAGE = portfolio_pb2.NodeMessage(
    telemetry=portfolio_pb2.TelemetryBatch(
        points=[portfolio_pb2.TelemetryPoint(seq=1, grid_import_kw=12.5, load_kw=20.0, pv_kw=7.5, soc_kwh=0.0)]
    )
)


def feed_one_stream(address: str, seconds: float) -> None:
    """One stream from grpc's synchronous client, which draws its messages from an iterator in
    grpc's own thread: the quickest feed Python has, on the stream the issue names."""
    with grpc.insecure_channel(address) as channel:
        stub = portfolio_pb2_grpc.PortfolioLinkStub(channel)
        end = time.monotonic() + seconds

        def messages():  # noqa: ANN202
            while time.monotonic() < end:
                yield SINK_MESSAGE

        for _ in stub.Connect(messages()):
            pass


async def feed_streams(address: str, n: int, seconds: float) -> None:
    """N grpc.aio streams (STREAMS_PER_CHANNEL to a channel), each writing as fast as grpc takes it."""
    channels = [
        grpc.aio.insecure_channel(address, options=NODE_CHANNEL_OPTIONS)
        for _ in range(math.ceil(n / STREAMS_PER_CHANNEL))
    ]
    end = time.monotonic() + seconds

    async def one(channel: grpc.aio.Channel) -> None:
        call = portfolio_pb2_grpc.PortfolioLinkStub(channel).Connect()
        while time.monotonic() < end:
            await call.write(SINK_MESSAGE)
        await call.done_writing()
        async for _ in call:
            pass

    try:
        await asyncio.gather(*(one(channels[i // STREAMS_PER_CHANNEL]) for i in range(n)))
    finally:
        for channel in channels:
            await channel.close()


async def run_sink(n: int, args: argparse.Namespace, folder: Path, console: Console) -> dict:
    """What a grpc.aio server that does nothing but count takes in here: from one stream fed as
    fast as Python can, and from N streams (the issue's premise: about 20,000 small messages
    a second on one stream). The rate is the sink's own count over the feed's middle."""
    out = {}
    for name, streams in (("one_stream", 1), ("n_streams", n)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        sink = SinkProcess(folder / name, args.ping_interval, args.ping_timeout)
        try:
            await sink.open()
            address = f"127.0.0.1:{sink.port}"
            seconds = args.seconds + 1.0
            started = time.time()
            cpu0, bench0 = cpu_seconds(sink.pid), time.process_time()
            if streams == 1:
                await asyncio.to_thread(feed_one_stream, address, seconds)
            else:
                await feed_streams(address, streams, seconds)
            took = time.time() - started
            server_cpu, bench_cpu = (cpu_seconds(sink.pid) - cpu0) / took, (time.process_time() - bench0) / took
            await asyncio.sleep(0.3)  # the sink's last lines
            rate = sink.received_per_s(started + 0.5, started + seconds - 0.2)
        finally:
            sink.close()
        out[name] = {
            "streams": streams,
            "messages_per_s": rate,
            "server_cpu_cores": server_cpu,
            "bench_cpu_cores": bench_cpu,
            "server_us_per_message": server_cpu / rate * 1e6 if rate > 0 else float("nan"),
        }
        console.print(
            f"[{n}] grpc.aio sink (counts, sends nothing), {streams} stream{'s' if streams > 1 else ''}: "
            f"{rate:,.0f} messages/s, server CPU {server_cpu:.0%} of a core "
            f"({out[name]['server_us_per_message']:.0f} us a message), bench CPU {bench_cpu:.0%}"
        )
    return out


async def operator_solve(
    api: portfolio_pb2_grpc.PortfolioStub, nodes: list[SimNode], portfolio: PortfolioProcess
) -> dict:
    """One operator `Portfolio.Solve`, and when each node received and acked its schedule, from the solve's end.

    This process's garbage collector waits meanwhile: a thousand simulated nodes share one
    heap here, and a full collection of it stalls all of them at once for a good part of
    the figure, where a real node's own collection stalls only that node."""
    gc.disable()
    try:
        with CpuSampler(portfolio.pid) as sampler:
            sent_at = time.time()
            report = (await api.Solve(portfolio_pb2.SolveRequest(), metadata=META, timeout=600)).report
            returned_at = time.time()
            version = f"pf-{report.solve_id}"
            await until(
                lambda: all(version in node.schedules or node.ended for node in nodes), 120, "schedule acks", every=0.01
            )
    finally:
        gc.enable()
    # the hub's own account of the solve's parts (problems, solver, encoding, storing, pushing)
    hub_line = next(
        (
            line.split(f"solve {report.solve_id}: ", 1)[1]
            for line in portfolio.log_tail(400).splitlines()
            if f"solve {report.solve_id}: " in line
        ),
        "",
    )
    built = re.search(r"problems ([0-9.]+) s", hub_line)
    build_s = float(built.group(1)) if built else 0.0
    # the portfolio's clock when its solver returned; before the report said so, the start
    # plus the build and the solver's seconds (early by whatever ran between them)
    end = epoch(report.solved_at) if report.HasField("solved_at") else epoch(report.at) + build_s + report.seconds
    got = [node.schedules[version] for node in nodes if version in node.schedules]
    acks = [max(0.0, a - end) for _, a in got]
    received = [r - end for r, _ in got]
    # who was busy from the solve's end until the last ack: with the machine's cores full, the
    # simulated nodes (one process here, each its own machine in a fleet) hold the figure too
    push_cores = sampler.cores(end, end + max(acks, default=0.0))
    first_cores = sampler.cores(end, end + min(received, default=0.0))
    return {
        "solve_id": report.solve_id,
        "status": report.status,
        "sites": len(report.sites),
        "steps": report.steps,
        "solver_seconds": report.seconds,
        "problems_built_seconds": build_s,
        "before_solver_s": end - report.seconds - build_s - epoch(report.at),
        "solve_rpc_seconds": returned_at - sent_at,
        "rpc_return_after_end_s": returned_at - end,
        "acked_nodes": len(got),
        "ack_p50_s": pct(acks, 0.5),
        "ack_p99_s": pct(acks, 0.99),
        "ack_max_s": max(acks, default=float("nan")),
        "first_received_after_end_s": min(received, default=float("nan")),
        "last_received_after_end_s": max(received, default=float("nan")),
        "cores_until_last_ack": push_cores,
        "cores_until_first_received": first_cores,
        "received_p10_p50_p90_s": [pct(received, q) for q in (0.1, 0.5, 0.9)],
        "hub_breakdown": hub_line,
    }


# ---- one run ---------------------------------------------------------------------------
async def run_nodes(n: int, args: argparse.Namespace, folder: Path, console: Console, costs: dict[str, float]) -> dict:
    portfolio = PortfolioProcess(folder, args.ping_interval, args.ping_timeout)
    channels: list[grpc.aio.Channel] = []
    nodes: list[SimNode] = []
    try:
        await portfolio.open()
        address = f"127.0.0.1:{portfolio.port}"
        operator = grpc.aio.insecure_channel(address)
        channels.append(operator)
        api = portfolio_pb2_grpc.PortfolioStub(operator)
        # warm-up: one stream comes and goes, so "before" holds what the first stream loads once
        warm_channel = grpc.aio.insecure_channel(address, options=NODE_CHANNEL_OPTIONS)
        channels.append(warm_channel)
        warm = SimNode("bench-warmup", warm_channel, args.ping_interval)
        await warm.open()
        await warm.close()
        await asyncio.sleep(1.0)
        rss_before = rss_kib(portfolio.pid)

        # 1. memory per connection
        node_channels, nodes = sim_nodes(address, n, args.ping_interval)
        channels += node_channels
        started = time.perf_counter()
        await asyncio.gather(*(node.open() for node in nodes))
        connect_s = time.perf_counter() - started
        await asyncio.sleep(2.0)  # a couple of ping rounds: the steady state of idle streams
        rss_after = rss_kib(portfolio.pid)
        kib = (rss_after - rss_before) / n
        console.print(
            f"[{n}] {n} streams welcomed in {connect_s:.2f} s; "
            f"RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB"
        )

        # 2. telemetry ingestion
        stored_in_window, window_s, portfolio_cpu, bench_cpu, drain_s = await pump_telemetry(
            nodes, portfolio.pid, args, lambda: stored_points(folder)
        )
        sent, stored = sum(node.seq for node in nodes), stored_points(folder)
        points_per_s = stored_in_window / window_s
        console.print(
            f"[{n}] telemetry: {stored_in_window:,} points stored in {window_s:.1f} s ({points_per_s:,.0f}/s), "
            f"portfolio CPU {portfolio_cpu:.0%} of a core, bench CPU {bench_cpu:.0%}; "
            f"{sent:,} sent, {stored:,} stored after a {drain_s:.1f} s drain"
        )

        # 3. schedule push: snapshots, the snapshot-triggered solves settle, then the operator's Solve
        now = datetime.now(UTC)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                node.offer(portfolio_pb2.NodeMessage(snapshot=site_snapshot(node.site_id, i, now)))
                for i, node in enumerate(nodes)
            )
        )
        settled: list[str] = []

        async def all_solved() -> bool:
            try:
                report = (await api.GetSolveReport(portfolio_pb2.GetSolveReportRequest(), metadata=META)).report
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return False
                raise
            version = f"pf-{report.solve_id}"
            live = [node for node in nodes if node.ended is None]
            if len(report.sites) >= len(live) and all(version in node.schedules for node in live):
                settled.append(report.solve_id)
                return True
            return False

        while not await all_solved():
            if time.perf_counter() - started > args.settle_timeout:
                raise TimeoutError(
                    f"the snapshot-triggered solves did not settle within {args.settle_timeout} s: "
                    f"{portfolio.log_tail()}"
                )
            await asyncio.sleep(0.2)
        settle_s = time.perf_counter() - started
        await asyncio.sleep(0.5)
        console.print(f"[{n}] snapshots sent and their solves settled in {settle_s:.1f} s")

        solves = []
        for k in range(args.solves):
            if k:
                await asyncio.sleep(2.0)  # the acks of the solve before are in and stored
            solves.append(await operator_solve(api, nodes, portfolio))
            one = solves[-1]
            console.print(
                f"[{n}] Solve {k + 1}/{args.solves}: {one['status']}, {one['sites']} sites, "
                f"solver {one['solver_seconds']:.2f} s; "
                f"{one['acked_nodes']} acks p50 {one['ack_p50_s']:.3f} s p99 {one['ack_p99_s']:.3f} s "
                f"max {one['ack_max_s']:.3f} s; "
                f"first received {one['first_received_after_end_s']:.3f} s; "
                f"{one['before_solver_s']:.3f} s ran before the solver; until the last ack, cores "
                + ", ".join(f"{k} {v:.2f}" for k, v in one["cores_until_last_ack"].items())
            )
            console.print(f"[{n}] hub: {one['hub_breakdown']}")
        ended = [f"{node.site_id}: {node.ended}" for node in nodes if node.ended]

        def median(key: str) -> float:
            return pct([one[key] for one in solves], 0.5)

        result = {
            "nodes": n,
            "kib_per_connection": kib,
            "telemetry_messages_per_s": points_per_s / args.points,
            "telemetry_points_per_s": points_per_s,
            "ack_p50_s": median("ack_p50_s"),
            "ack_p99_s": median("ack_p99_s"),
            "ack_max_s": median("ack_max_s"),
            "ack_p99_s_worst": max(one["ack_p99_s"] for one in solves),
            "solve_seconds": median("solver_seconds"),
            "goals": {},
            "memory": {
                "rss_before_kib": rss_before,
                "rss_after_kib": rss_after,
                "connect_seconds": connect_s,
                "channels": len(node_channels),
            },
            "telemetry": {
                "window_seconds": window_s,
                "points_per_message": args.points,
                "window_messages_per_node": args.window,
                "points_stored_in_window": stored_in_window,
                "points_sent": sent,
                "points_stored": stored,
                "drain_seconds": drain_s,
                "portfolio_cpu_cores": portfolio_cpu,
                "bench_cpu_cores": bench_cpu,
                "measure": "telemetry rows the store gained during the window / window seconds; "
                "after the window every node waits for its acks to cover all it sent (the drain)",
            },
            "schedule": {
                "solves": solves,
                "settle_seconds": settle_s,
                "settled_solve": settled[-1] if settled else "",
                "measure": "per node: wall time its ack was written - report.solved_at "
                "(the portfolio's wall clock when its solver returned); "
                "the ack figures at the top are the median over the solves",
            },
            "streams_dropped": len(ended),
            "streams_dropped_first": ended[:3],
        }
        result["goals"] = {
            "kib_per_connection <= 200": kib <= GOALS["kib_per_connection"],
            "telemetry_messages_per_s >= 15000": result["telemetry_messages_per_s"]
            >= GOALS["telemetry_messages_per_s"],
            # a dropped node never acked: missed
            "ack_p99_s <= 0.5": all(one["acked_nodes"] == n for one in solves)
            and result["ack_p99_s"] <= GOALS["ack_p99_s"],
        }
        return result
    finally:
        await close_all(nodes, channels)
        portfolio.close()


# ---- where the time goes, in-process ---------------------------------------------------
def _hub(store):  # noqa: ANN001, ANN202
    from portfolio.config import PortfolioSettings
    from portfolio.coupled import MonolithicSolver
    from services.portfolio_hub import PortfolioHub
    from sitenode.clock import RealClock

    return PortfolioHub(PortfolioSettings(), store, MonolithicSolver(), RealClock(), trust_hello=True)


def _per_item(fn, count: int) -> float:  # noqa: ANN001
    started = time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.perf_counter() - started) / count * 1e6


def push_breakdown(folder: Path, sites: int = 50) -> dict[str, float]:
    """Microseconds per site of the synchronous parts of a snapshot's receipt and of
    `PortfolioHub.solve` around the solver."""
    from portfolio.coupled import MonolithicSolver
    from portfolio.snapshot import check_snapshot, common_horizon
    from portfolio.store import PortfolioStore

    now = datetime.now(UTC)
    msgs = [site_snapshot(f"site-{i:05d}", i, now) for i in range(sites)]
    store = PortfolioStore(folder / "push.db")
    out = {
        "snapshot_in_and_check_us": _per_item(
            lambda i: check_snapshot(pc.snapshot_in(msgs[i]), msgs[i].site_id, STEP_MINUTES), sites
        ),
        "store_save_snapshot_us": _per_item(
            lambda i: store.save_snapshot(msgs[i].site_id, msgs[i].SerializeToString(), now), sites
        ),
    }
    snaps = {m.site_id: pc.snapshot_in(m) for m in msgs}
    horizon = common_horizon(snaps, now, STEP_MINUTES, SOLVE_STEPS)
    assert horizon is not None
    ids = list(snaps)
    problems = {}
    out["problem_build_us"] = _per_item(
        lambda i: problems.__setitem__(ids[i], snaps[ids[i]].problem(horizon.start, horizon.steps)), sites
    )
    started = time.perf_counter()
    plan = MonolithicSolver().solve(problems, [], [])
    out["solver_us"] = (time.perf_counter() - started) / sites * 1e6
    parts = [plan.sites[s] for s in ids]
    built: list = []
    encoder = pc.SetpointEncoder("pf-bench", horizon.start, horizon.step_minutes, now)
    # as the hub does for a part no worker encoded: the body, then the solve's shared bytes joined to it
    out["setpoint_schedule_us"] = _per_item(
        lambda i: built.append(
            encoder.from_body(
                pc.schedule_body(
                    parts[i].plan.schedule.columns.tolist(),
                    parts[i].plan.schedule.to_numpy(dtype=float),
                    parts[i].plan.charger_assignment,
                ),
                parts[i].import_share_kw,
            )[1]
        ),
        sites,
    )
    started = time.perf_counter()
    store.issue_schedules([(ids[i], "pf-bench", horizon.start, now, built[i]) for i in range(sites)], now)
    out["store_issue_schedule_us"] = (time.perf_counter() - started) / sites * 1e6
    started = time.perf_counter()
    store.ack_many([(ids[i], "pf-bench", True, "", now) for i in range(sites)])
    out["store_ack_us"] = (time.perf_counter() - started) / sites * 1e6
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000", help="comma-separated node counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="telemetry phase length")
    parser.add_argument("--points", type=int, default=1, help="telemetry points per message")
    parser.add_argument("--window", type=int, default=64, help="telemetry messages in flight per node, at most")
    parser.add_argument(
        "--ping-interval", type=float, default=1.0, help="portfolio's and nodes' ping interval (service default 1 s)"
    )
    parser.add_argument(
        "--ping-timeout",
        type=float,
        default=30.0,
        help="portfolio's ping timeout; the service's default 3 s drops streams at 1,000 nodes "
        "while snapshots and solves block its loop",
    )
    parser.add_argument(
        "--solves", type=int, default=5, help="operator solves per N (the ack figures are their median)"
    )
    parser.add_argument(
        "--settle-timeout", type=float, default=180.0, help="how long the snapshot-triggered solves may take"
    )
    parser.add_argument(
        "--skip-bare",
        action="store_true",
        help="skip the telemetry ceiling of a bare grpc.aio link (bench/bare_link.py)",
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="run in DIR (the portfolios' logs and stores stay there) instead of a temporary folder",
    )
    parser.add_argument("--out", default="bench/results/stream.json")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 150))
    results = []
    with contextlib.ExitStack() as stack:
        tmp = args.keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="gridmesh-stream-"))
        Path(tmp).mkdir(parents=True, exist_ok=True)
        costs = push_breakdown(Path(tmp))
        for n in (int(v) for v in args.nodes.split(",") if v.strip()):
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            result = asyncio.run(run_nodes(n, args, folder, console, costs))
            if not args.skip_bare:
                bare = folder / "bare"
                bare.mkdir()
                result["bare_link"] = asyncio.run(run_bare(n, args, bare, console))
                result["grpc_sink"] = asyncio.run(run_sink(n, args, folder / "sink", console))
            results.append(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "stream",
                "results": results,
                "push_breakdown_us_per_site": costs,
                "config": {k: v for k, v in vars(args).items() if k != "out"},
            },
            indent=2,
        )
        + "\n"
    )

    def mark(ok: bool) -> str:
        return "[green]met[/green]" if ok else "[red]missed[/red]"

    table = Table(title=f"portfolio stream benchmark ({out})")
    for col in (
        "nodes",
        "KiB/conn",
        "telemetry msg/s",
        "bare grpc.aio msg/s",
        "sink 1 stream",
        "sink N streams",
        "ack p50 s",
        "ack p99 s",
        "worst p99 s",
        "solve s",
        "dropped",
        "<= 200 KiB",
        ">= 15k msg/s",
        "p99 <= 0.5 s",
    ):
        table.add_column(col)
    for r in results:
        g = list(r["goals"].values())
        sink = r.get("grpc_sink", {})
        table.add_row(
            str(r["nodes"]),
            f"{r['kib_per_connection']:.1f}",
            f"{r['telemetry_messages_per_s']:,.0f}",
            f"{r['bare_link']['messages_per_s']:,.0f}" if "bare_link" in r else "-",
            *(f"{sink[k]['messages_per_s']:,.0f}" if k in sink else "-" for k in ("one_stream", "n_streams")),
            f"{r['ack_p50_s']:.3f}",
            f"{r['ack_p99_s']:.3f}",
            f"{r['ack_p99_s_worst']:.3f}",
            f"{r['solve_seconds']:.2f}",
            str(r["streams_dropped"]),
            *(mark(ok) for ok in g),
        )
    console.print(table)
    console.print(
        "bare grpc.aio: the same nodes' telemetry against bench/bare_link.py, which acks every message "
        "at once and does nothing else (server and nodes share the machine's cores; the portfolio acks "
        "a site at most every 0.5 s). sink: bench/bare_link.py --sink, which only counts what it is sent, "
        "fed by one stream from grpc's synchronous client and by N grpc.aio streams writing without "
        "waiting: the most a grpc.aio server takes in here."
    )
    console.print(
        "ack latency: per node, wall time its ack was written - the solve report's solved_at "
        f"(when the solver returned); p50 and p99 are the median over {args.solves} operator solves, "
        "worst p99 the largest."
    )
    for title, values in (("snapshot receipt and solve push, per site, in-process (us)", costs),):
        parts = Table(title=title)
        for key in values:
            parts.add_column(key.removesuffix("_us").replace("_", " "))
        parts.add_row(*(f"{v:,.0f}" for v in values.values()))
        console.print(parts)


if __name__ == "__main__":
    main()
