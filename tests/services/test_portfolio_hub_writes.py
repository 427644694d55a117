"""The hub's gathered writes and its heartbeat, without a network: telemetry acked only once
stored, a failed write acks nothing and loses nothing, schedules stored before they are sent,
problems built when their snapshot comes, busy streams left unpinged, a held loop drops no one."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from portfolio.config import PortfolioSettings
from portfolio.coupled import MonolithicSolver
from portfolio.snapshot import SiteSnapshot
from portfolio.store import PortfolioStore
from services import portfolio_convert as pc
from services import portfolio_hub as hub_module
from services.portfolio_hub import _CLOSE, PortfolioHub
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2
from sitenode.model.run import RunConfig
from sitenode.model.site import SiteConfig

NOW = datetime(2025, 1, 15, 10, 3, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[..., PortfolioHub]]:
    """Hubs on a store in tmp_path, closed (their store threads ended) when the test ends."""
    made: list[PortfolioHub] = []

    def make(**settings: object) -> PortfolioHub:
        store = PortfolioStore(tmp_path / "portfolio.db")
        made.append(
            PortfolioHub(PortfolioSettings(**settings), store, MonolithicSolver(), FixedClock(), trust_hello=True)
        )
        return made[-1]

    yield make
    for hub in made:
        hub.close()


def telemetry(*seqs: int) -> portfolio_pb2.NodeMessage:
    return portfolio_pb2.NodeMessage(
        telemetry=portfolio_pb2.TelemetryBatch(
            points=[
                portfolio_pb2.TelemetryPoint(seq=s, at=pc.ts(NOW), grid_import_kw=1.0 + s, load_kw=2.0) for s in seqs
            ]
        )
    )


def drained(conn) -> list[portfolio_pb2.PortfolioMessage]:  # noqa: ANN001
    out = []
    while not conn.outbox.empty():
        out.append(conn.outbox.get_nowait())
    return out


def acks_in(messages: list) -> list[int]:
    return [m.telemetry_ack.up_to_seq for m in messages if m is not _CLOSE and m.WhichOneof("body") == "telemetry_ack"]


def stored_seqs(path) -> list[int]:  # noqa: ANN001
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT seq FROM telemetry WHERE site_id = 'north' ORDER BY seq")]


async def test_telemetry_is_acked_once_stored_one_ack_per_site_per_write(tmp_path, make_hub):
    hub = make_hub(telemetry_ack_seconds=0)  # every write acks (the cadence: below)
    conn = hub.attach("north")
    committed: list[int] = []
    write_many = hub.store.write_many

    def spying(batches, acks, snapshots=None):  # noqa: ANN001, ANN202
        # nothing of this batch may have been acked before its transaction commits
        assert max(acks_in(drained_copy(conn)), default=0) <= max(committed, default=0)
        out = write_many(batches, acks, snapshots)
        committed.extend(seq for _, items in batches.items() for seq, _, _ in items)
        return out

    def drained_copy(c) -> list:  # noqa: ANN001
        return list(c.outbox._queue)  # noqa: SLF001 - a look without taking

    hub.store.write_many = spying
    for seqs in ((1,), (2, 3), (4,)):
        assert hub.receive(conn, telemetry(*seqs))
    assert acks_in(drained(conn)) == []  # received is not stored
    await hub.flush()
    assert acks_in(drained(conn)) == [4]  # the three messages share one write and one ack
    assert stored_seqs(tmp_path / "portfolio.db") == [1, 2, 3, 4]
    hub.receive(conn, telemetry(5))
    await hub.flush()
    assert acks_in(drained(conn)) == [5]
    assert hub.sites["north"].latest.seq == 5


async def test_a_failed_write_acks_nothing_and_loses_nothing(tmp_path, make_hub):
    hub = make_hub(telemetry_ack_seconds=0)
    conn = hub.attach("north")
    hub.receive(conn, telemetry(1, 2))
    await hub.flush()
    assert acks_in(drained(conn)) == [2]

    # the write fails mid-transaction (after the telemetry rows went in): all of it rolls back
    failing = {"left": 1}
    ack_rows = PortfolioStore._ack_rows

    def breaking(db, items):  # noqa: ANN001, ANN202
        if failing["left"]:
            failing["left"] -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return ack_rows(db, items)

    hub.store._ack_rows = breaking  # noqa: SLF001
    hub.receive(conn, telemetry(3, 4))
    with pytest.raises(sqlite3.OperationalError):
        await hub.flush()
    assert acks_in(drained(conn)) == []
    assert stored_seqs(tmp_path / "portfolio.db") == [1, 2]  # every acked point, no unacked one
    assert hub.store.last_telemetry_seq("north") == 2  # what a reconnecting node is told to resend from

    # what failed is written with the next flush, ahead of what came meanwhile, and only then acked
    hub.receive(conn, telemetry(5))
    await hub.flush()
    assert acks_in(drained(conn)) == [5]
    assert stored_seqs(tmp_path / "portfolio.db") == [1, 2, 3, 4, 5]


async def test_a_site_is_acked_at_most_once_a_cadence_and_what_was_held_back_is_acked_after(tmp_path, make_hub):
    hub = make_hub(telemetry_ack_seconds=0.3)
    conn = hub.attach("north")
    hub.receive(conn, telemetry(1))
    await hub.flush()
    assert acks_in(drained(conn)) == [1]  # the first ack goes at once
    hub.receive(conn, telemetry(2, 3))
    await hub.flush()
    assert acks_in(drained(conn)) == []  # stored, but acked within the cadence
    assert stored_seqs(tmp_path / "portfolio.db") == [1, 2, 3]
    # the flush loop acks it once the cadence has passed, with nothing new to write
    stop = asyncio.Event()
    loop = asyncio.create_task(hub.flush_loop(stop))
    await asyncio.sleep(0.9)
    stop.set()
    await loop
    assert acks_in(drained(conn)) == [3]


async def test_a_crash_before_the_commit_loses_no_acked_point(tmp_path, make_hub):
    hub = make_hub()
    conn = hub.attach("north")
    hub.receive(conn, telemetry(1, 2, 3))
    await hub.flush()
    acked = max(acks_in(drained(conn)))
    hub.receive(conn, telemetry(4, 5))  # received, never written: the process dies here
    hub.store.close()
    with PortfolioStore(tmp_path / "portfolio.db") as reopened:
        assert reopened.last_telemetry_seq("north") == acked == 3
        assert [r.seq for r in reopened.telemetry("north")] == [1, 2, 3]


def snapshot_msg(site_id: str) -> common_pb2.SiteSnapshot:
    start = pd.Timestamp(NOW).floor("15min").to_pydatetime()
    site = SiteConfig.model_validate(
        {"site_id": site_id, "grid": {"import_limit_kw": 100.0, "export_limit_kw": 50.0}, "pv": {"curtailable": True}}
    )
    run = RunConfig.model_validate(
        {
            "horizon": {"start": start.isoformat(), "step_minutes": 15, "steps": 16},
            "tariff": {
                "energy_rates": [{"rate": 0.2, "schedule": {"start_time": "00:00", "end_time": "23:59"}}],
                "export_rate": 0.05,
            },
        }
    )
    msg = common_pb2.SiteSnapshot(
        site_id=site_id,
        taken_at=pc.ts(NOW),
        soc_kwh=0.0,
        site_config_json=site.model_dump_json(exclude_none=True),
        run_config_json=run.model_dump_json(exclude_none=True),
    )
    msg.load_forecast_kw.CopyFrom(pc.series(start, 15, [20.0 + k % 4 for k in range(16)]))
    msg.pv_forecast_kw.CopyFrom(pc.series(start, 15, [float(k % 5) for k in range(16)]))
    return msg


async def test_schedules_are_stored_before_they_are_sent_and_problems_built_at_the_snapshot(make_hub, monkeypatch):
    hub = make_hub(horizon_steps=8)
    conns = {s: hub.attach(s) for s in ("north", "south")}
    for site_id, conn in conns.items():
        await hub.handle_snapshot(conn, snapshot_msg(site_id))
    await hub.flush()
    assert hub.store.snapshot("north") is not None  # the snapshots went in with the gathered write

    built = []
    problem = SiteSnapshot.problem
    monkeypatch.setattr(
        SiteSnapshot, "problem", lambda self, start, steps: built.append(self.site_id) or problem(self, start, steps)
    )
    issue = hub.store.issue_schedules
    sent_before_stored = []

    def spying(items, at):  # noqa: ANN001, ANN202
        sent_before_stored.extend(
            s for s, c in conns.items() if any(m.WhichOneof("body") == "schedule" for m in list(c.outbox._queue))
        )  # noqa: SLF001
        issue(items, at)

    hub.store.issue_schedules = spying
    report = await hub.solve("test")
    assert report.status == "optimal" and set(report.schedules) == {"north", "south"}
    assert built == []  # both problems were built when their snapshots came
    assert sent_before_stored == []
    for site_id, conn in conns.items():
        sent = [m.schedule for m in drained(conn) if m.WhichOneof("body") == "schedule"]
        assert [s.schedule.version for s in sent] == [report.schedules[site_id]]
        stored = hub.store.current_schedule(site_id, NOW)
        assert stored is not None and portfolio_pb2.SetpointSchedule.FromString(stored.payload) == sent[0]
        assert len(sent[0].schedule.columns) > 0 and len(sent[0].import_limit_kw.values) == 8

    # the ack of one of them, gathered and written with the next flush
    hub.receive(
        conns["north"],
        portfolio_pb2.NodeMessage(ack=portfolio_pb2.ScheduleAck(version=report.schedules["north"], accepted=True)),
    )
    await hub.flush()
    assert str(hub.store.schedules("north", 1)[0].state) == "ACKED"
    assert str(hub.store.schedules("south", 1)[0].state) == "ISSUED"


def has_schedule(conn) -> bool:  # noqa: ANN001 - read from the store thread: a look, not a drain
    return any(m is not _CLOSE and m.WhichOneof("body") == "schedule" for m in list(conn.outbox._queue))  # noqa: SLF001


async def test_schedules_go_out_as_each_write_is_stored_and_a_refused_write_stays_back(make_hub, monkeypatch):
    monkeypatch.setattr(hub_module, "PUSH_BATCH", 1)  # encoded one site at a time
    hub = make_hub(horizon_steps=8)
    conns = {s: hub.attach(s) for s in ("east", "north", "south", "west")}
    for site_id, conn in conns.items():
        await hub.handle_snapshot(conn, snapshot_msg(site_id))
    await hub.flush()
    issue = hub.store.issue_schedules
    batches: list[list[str]] = []
    written: list[str] = []
    early: list[str] = []  # sites whose schedule was in their outbox before the store held it
    delivered_meanwhile: list[bool] = []

    def one_write(items, at):  # noqa: ANN001, ANN202 - the store thread
        if written:  # the last stored write reaches its streams while this one is still unwritten
            deadline = time.monotonic() + 10
            while not has_schedule(conns[written[-1]]) and time.monotonic() < deadline:
                time.sleep(0.005)
            delivered_meanwhile.append(has_schedule(conns[written[-1]]))
        batches.append(sorted(item[0] for item in items))
        early.extend(s for s, c in conns.items() if s not in written and has_schedule(c))
        if "north" in batches[-1]:
            raise sqlite3.OperationalError("disk I/O error")
        issue(items, at)
        written.extend(batches[-1])

    hub.store.issue_schedules = one_write
    with pytest.raises(sqlite3.OperationalError):
        await hub.solve("test")
    # the first write holds the first site alone: it began as soon as that one was encoded;
    # the next took everything encoded meanwhile (one write at a time)
    assert batches[0] == ["east"] and sorted(s for b in batches for s in b) == sorted(conns)
    assert delivered_meanwhile == [True] * (len(batches) - 1) and early == []
    refused = next(b for b in batches if "north" in b)
    got = {
        s: [m.schedule.schedule.version for m in drained(c) if m is not _CLOSE and m.WhichOneof("body") == "schedule"]
        for s, c in conns.items()
    }
    for site_id in conns:
        stored = hub.store.current_schedule(site_id, NOW)
        if site_id in refused:  # neither stored nor sent
            assert got[site_id] == [] and stored is None and site_id not in hub.issued
        else:  # sent as stored
            assert stored is not None and got[site_id] == [stored.version]


def pings(conn) -> int:  # noqa: ANN001
    return sum(1 for m in drained(conn) if m is not _CLOSE and m.WhichOneof("body") == "ping")


async def test_streams_with_traffic_both_ways_get_no_ping_silent_ones_do(make_hub):
    hub = make_hub(ping_interval_seconds=0.05, ping_timeout_seconds=5.0)
    busy, quiet = hub.attach("busy"), hub.attach("quiet")
    stop = asyncio.Event()

    async def chatter() -> None:
        while not stop.is_set():
            busy.last_heard = busy.last_sent = time.monotonic()
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(hub.heartbeat_loop(stop)), asyncio.create_task(chatter())]
    await asyncio.sleep(0.4)
    stop.set()
    await asyncio.gather(*tasks)
    assert pings(busy) == 0
    assert pings(quiet) >= 4
    # heard from but not sent to (or the other way round) is not traffic both ways
    busy.last_heard, busy.last_sent = time.monotonic(), time.monotonic() - 1.0
    stop.clear()
    task = asyncio.create_task(hub.heartbeat_loop(stop))
    await asyncio.sleep(0.08)
    stop.set()
    await task
    assert pings(busy) >= 1


async def test_heartbeat_pings_go_out_spread_over_the_interval_and_not_to_a_site_whose_schedule_is_coming(make_hub):
    interval = 0.2
    hub = make_hub(ping_interval_seconds=interval, ping_timeout_seconds=5.0)
    conns = [hub.attach(f"s{i}") for i in range(40)]
    push = hub.push_window.begin({"s0"})  # s0's schedule is on its way: it stands in for a ping
    first: dict[str, float] = {}
    stop = asyncio.Event()
    started = time.monotonic()

    async def watch() -> None:
        while not stop.is_set():
            for c in conns:
                if c.site_id not in first and not c.outbox.empty():
                    first[c.site_id] = time.monotonic() - started
            await asyncio.sleep(0.002)

    tasks = [asyncio.create_task(hub.heartbeat_loop(stop)), asyncio.create_task(watch())]
    await asyncio.sleep(2 * interval)
    stop.set()
    await asyncio.gather(*tasks)
    hub.push_window.sent(push, "pf-x", set())
    assert "s0" not in first and len(first) == len(conns) - 1  # every silent stream pinged within two intervals
    # not all at once: one pass over every stream pinged a thousand nodes together
    assert max(first.values()) - min(first.values()) >= interval / 2
    assert len({round(t, 2) for t in first.values()}) >= hub_module.PING_SLOTS // 2


async def test_a_held_event_loop_drops_no_stream_but_a_silent_one_goes(make_hub):
    hub = make_hub(ping_interval_seconds=0.05, ping_timeout_seconds=0.3)
    talking, dead = hub.attach("talking"), hub.attach("dead")
    stop = asyncio.Event()

    async def node() -> None:  # what the stream reader does for a node that keeps talking
        while not stop.is_set():
            talking.last_heard = time.monotonic()
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(hub.heartbeat_loop(stop)), asyncio.create_task(node())]
    await asyncio.sleep(0.1)
    time.sleep(0.5)  # the loop held (a solver holding the GIL): longer than the ping timeout
    await asyncio.sleep(0.6)
    stop.set()
    await asyncio.gather(*tasks)
    assert _CLOSE not in list(talking.outbox._queue)  # noqa: SLF001
    assert _CLOSE in list(dead.outbox._queue)  # noqa: SLF001


async def test_a_node_whose_schedule_is_coming_gets_that_instead_of_a_pong(make_hub):
    hub = make_hub()
    conn = hub.attach("north")
    ping = portfolio_pb2.NodeMessage(ping=portfolio_pb2.Ping(nonce=7))

    def pongs() -> list[int]:
        return [m.pong.nonce for m in drained(conn) if m is not _CLOSE and m.WhichOneof("body") == "pong"]

    push = hub.push_window.begin({"north"})  # a solver returned with north's schedule
    try:
        hub.receive(conn, ping)
        assert pongs() == []
        hub.push_window.delivered("north")  # with its stream now: pings are answered again
        hub.receive(conn, ping)
        assert pongs() == [7]
    finally:
        hub.push_window.sent(push, "pf-x", set())
    hub.receive(conn, ping)
    assert pongs() == [7] and not hub.push_window.open
