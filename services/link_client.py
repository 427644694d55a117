"""The node's end of the portfolio stream: hello, resync, snapshots, telemetry and its
recent dispatch commands up, schedules down, acks, heartbeats; reconnect with jittered
exponential backoff.

A stream can die without a word (a NAT drops it, the portfolio's host vanishes): gRPC
keepalive notices only after its own, long timeout. So the stream carries heartbeats, and
the node gives it up when it has heard nothing for `ping_timeout_seconds`; from then the
runtime counts the link as down and, after its grace, plans alone within the last import
limit it was given. The portfolio keeps the stream alive: it pings a stream it has not
heard from or sent to for half an interval, the node answers, and any message counts as a
sign of life. The node pings on its own only after two intervals of silence (the portfolio
is late or gone; sooner if its timeout would leave less than an interval for the answer),
at most once an interval. Were every node to ping on its own clock, a
thousand nodes that acked one solve together would ping together an interval later, and a
solve ending then would queue its schedules behind their pongs; the portfolio spreads its
pings evenly, and holds them back from a site whose schedule is on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import itertools
import logging
import random
import time
from pathlib import Path
from typing import Any

import grpc

from services import convert
from services import portfolio_convert as pc
from services.certs import channel_credentials
from services.server import KEEPALIVE
from services.stubs.gridmesh.v1 import portfolio_pb2, portfolio_pb2_grpc
from sitenode import logfields
from sitenode.dispatch.commands import Command
from sitenode.errors import GridmeshError, InvalidInput
from sitenode.node_config import PortfolioLinkConfig
from sitenode.runtime import NodeRuntime

log = logging.getLogger("gridmesh.link")
TELEMETRY_BATCH = 200
# how often (seconds, wall clock) the node looks at its recent commands (the ones due last, up
# to now); it sends them when they changed, and on every new stream
COMMAND_REPORT_SECONDS = 2.0
SOFTWARE_VERSION = importlib.metadata.version("gridmesh")


def ping_due(now: float, heard: float, last_ping: float, interval: float, timeout: float) -> bool:
    """The node's own ping: after two intervals with nothing heard (the portfolio pings every
    stream it has not heard from or sent to for half an interval), or sooner where the
    timeout would leave less than an interval for the answer; at most one an interval."""
    return now - heard >= min(2 * interval, timeout - interval) and now - last_ping >= interval


class LinkDead(Exception):
    """Nothing heard on the stream for longer than the ping timeout."""


def channel(cfg: PortfolioLinkConfig, base: Path) -> grpc.aio.Channel:
    if cfg.insecure_loopback:
        return grpc.aio.insecure_channel(cfg.address, options=KEEPALIVE)
    assert cfg.ca and cfg.cert and cfg.key  # the config checked it
    credentials = channel_credentials(base / cfg.ca, base / cfg.cert, base / cfg.key)
    return grpc.aio.secure_channel(cfg.address, credentials, options=KEEPALIVE)


class NodeLink:
    def __init__(self, runtime: NodeRuntime, cfg: PortfolioLinkConfig, base: Path) -> None:
        self.runtime, self.cfg, self.base = runtime, cfg, base
        self.connects = 0  # streams opened so far (tests and status)
        self.last_error = ""

    def _fields(self, schedule_version: str | None = None) -> dict[str, str]:
        return logfields.fields(site=self.runtime.config.site.site_id, schedule_version=schedule_version)

    async def run(self, stop: asyncio.Event) -> None:
        delay = self.cfg.backoff_initial_seconds
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self._session(stop)
            except (grpc.aio.AioRpcError, LinkDead, TimeoutError, ConnectionError) as exc:
                self.last_error = (
                    f"{type(exc).__name__}: {exc.details() if isinstance(exc, grpc.aio.AioRpcError) else exc}"
                )
                log.warning("portfolio link down: %s", self.last_error, extra=self._fields())
            except Exception:  # noqa: BLE001 - the link must outlive any single failure
                log.exception("portfolio link failed", extra=self._fields())
            finally:
                self.runtime.link_down(self.runtime.clock.now())
            if stop.is_set():
                return
            if time.monotonic() - started > 30:
                delay = self.cfg.backoff_initial_seconds  # it was up for a while: start the backoff over
            # full jitter: a portfolio that comes back is not hit by every node at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), random.uniform(0, delay))
            delay = min(delay * 2, self.cfg.backoff_max_seconds)

    async def _session(self, stop: asyncio.Event) -> None:
        runtime, cfg = self.runtime, self.cfg
        async with channel(cfg, self.base) as ch:
            call = portfolio_pb2_grpc.PortfolioLinkStub(ch).Connect()
            try:
                held = runtime.journal.latest_version("portfolio")
                hello = portfolio_pb2.NodeMessage(
                    hello=portfolio_pb2.Hello(
                        site_id=runtime.config.site.site_id, software_version=SOFTWARE_VERSION, schedule_version=held
                    )
                )

                async def opened() -> Any:
                    await call.write(hello)
                    return await call.read()

                # the hello's write waits for the connection too: a half-open one (its handshake
                # answered by nobody) would hold it for gRPC's 20 s connect timeout
                first = await asyncio.wait_for(opened(), cfg.ping_timeout_seconds * 3)
                if first is grpc.aio.EOF or first.WhichOneof("body") != "welcome":
                    raise ConnectionError("the portfolio did not welcome the node")
                self.connects += 1
                runtime.link_up(runtime.clock.now())
                log.info("portfolio link up (stream %d)", self.connects, extra=self._fields(held or None))
                await self._converse(call, first.welcome, stop)
            finally:
                call.cancel()

    async def _converse(
        self, call: grpc.aio.StreamStreamCall, welcome: portfolio_pb2.Welcome, stop: asyncio.Event
    ) -> None:
        runtime, cfg = self.runtime, self.cfg
        outbox: asyncio.Queue[portfolio_pb2.NodeMessage] = asyncio.Queue()
        heard = [time.monotonic()]
        sent_seq = welcome.last_telemetry_seq  # resend whatever the portfolio did not store
        runtime.journal.prune_telemetry(welcome.last_telemetry_seq)

        async def read() -> None:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    raise ConnectionError("the portfolio closed the stream")
                heard[0] = time.monotonic()
                kind = message.WhichOneof("body")
                if kind == "schedule":
                    outbox.put_nowait(portfolio_pb2.NodeMessage(ack=self._apply(message.schedule)))
                elif kind == "settings":
                    self._settings(message.settings)
                elif kind == "telemetry_ack":
                    runtime.journal.prune_telemetry(message.telemetry_ack.up_to_seq)
                elif kind == "ping":
                    outbox.put_nowait(portfolio_pb2.NodeMessage(pong=portfolio_pb2.Pong(nonce=message.ping.nonce)))

        async def write() -> None:
            nonlocal sent_seq
            revision = -1
            snapshot_at = 0.0
            reported: list[Command] | None = None  # None: nothing sent on this stream yet
            reported_at = -COMMAND_REPORT_SECONDS
            last_ping = time.monotonic()
            nonce = itertools.count(1)

            speed = getattr(runtime.clock, "speed", 1.0)
            while not stop.is_set():
                now = time.monotonic()
                if now - heard[0] > cfg.ping_timeout_seconds:
                    raise LinkDead(f"nothing heard for {now - heard[0]:.1f} s")
                if runtime.revision != revision or (now - snapshot_at) * speed >= cfg.snapshot_seconds:
                    revision, snapshot_at = runtime.revision, now
                    snap = pc.snapshot_out(
                        runtime.config.site, runtime.inputs(runtime.clock.now()), runtime.clock.now()
                    )
                    snap.assets.extend(convert.asset(a) for a in runtime.assets())
                    await call.write(portfolio_pb2.NodeMessage(snapshot=snap))
                if now - reported_at >= COMMAND_REPORT_SECONDS:
                    reported_at = now
                    recent = runtime.journal.recent_commands(pc.MAX_COMMANDS, due_by=runtime.clock.now())
                    if recent != reported:  # the first look on a stream always sends
                        await call.write(
                            portfolio_pb2.NodeMessage(
                                commands=portfolio_pb2.CommandReport(commands=[pc.command_out(c) for c in recent])
                            )
                        )
                        reported = recent
                points = runtime.journal.telemetry_after(sent_seq, TELEMETRY_BATCH)
                if points:
                    await call.write(
                        portfolio_pb2.NodeMessage(
                            telemetry=portfolio_pb2.TelemetryBatch(points=[pc.telemetry_out(p) for p in points])
                        )
                    )
                    sent_seq = points[-1].seq
                while not outbox.empty():
                    await call.write(outbox.get_nowait())
                if ping_due(now, heard[0], last_ping, cfg.ping_interval_seconds, cfg.ping_timeout_seconds):
                    last_ping = now
                    await call.write(
                        portfolio_pb2.NodeMessage(
                            ping=portfolio_pb2.Ping(nonce=next(nonce), sent_at=convert.ts(runtime.clock.now()))
                        )
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(0.1, cfg.ping_interval_seconds / 4))

        reader, writer = asyncio.create_task(read()), asyncio.create_task(write())
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise what ended the session
        finally:
            for task in (reader, writer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _settings(self, message: portfolio_pb2.SiteSettings) -> None:
        """An operator's weights and priorities, passed on by the portfolio: the node plans
        with them from now on, and says so in its next snapshot (its run config)."""
        try:
            settings = pc.settings_in(message)
        except GridmeshError as exc:
            log.warning("site settings refused: %s", exc, extra=self._fields())
            return
        self.runtime.set_objective(settings.weights, settings.priorities)
        log.info(
            "site settings from the portfolio: weights %s, priorities %s",
            settings.weights,
            settings.priorities,
            extra=self._fields(),
        )

    def _apply(self, message: portfolio_pb2.SetpointSchedule) -> portfolio_pb2.ScheduleAck:
        version = message.schedule.version
        try:
            if not version:
                raise InvalidInput.one("schedule.version", "is required")
            if not message.schedule.columns:
                raise InvalidInput.one("schedule.columns", "has no columns")
            if message.schedule.step_minutes <= 0:
                raise InvalidInput.one("schedule.step_minutes", f"must be > 0, got {message.schedule.step_minutes}")
            if len({len(c.values) for c in message.schedule.columns}) != 1:
                raise InvalidInput.one("schedule.columns", "columns differ in length")
            frame = convert.schedule_frame(message.schedule)
            limit = pc.import_limit_in(message)
            self.runtime.apply_portfolio_schedule(
                version,
                frame,
                convert.from_ts(message.schedule.valid_until),
                dict(message.schedule.charger_assignment),
                limit,
            )
        except GridmeshError as exc:
            log.warning("schedule %s refused: %s", version, exc, extra=self._fields(version))
            return portfolio_pb2.ScheduleAck(version=version, accepted=False, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - a schedule the node cannot read is refused, not fatal
            log.exception("schedule %s could not be read", version, extra=self._fields(version))
            return portfolio_pb2.ScheduleAck(
                version=version, accepted=False, reason=f"unreadable: {type(exc).__name__}"
            )
        log.info("schedule %s from the portfolio accepted", version, extra=self._fields(version))
        return portfolio_pb2.ScheduleAck(version=version, accepted=True)
