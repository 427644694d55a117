"""The engine against a real journal file and in-memory adapters."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from sitenode.dispatch import (
    AdapterError,
    AdapterRegistry,
    AssetRating,
    Command,
    CommandState,
    CommandType,
    DispatchEngine,
    RetryPolicy,
)
from sitenode.events import EventBus, EventType
from sitenode.journal import Journal

T0 = datetime(2025, 1, 15, tzinfo=UTC)
RATINGS = {"cp-1": AssetRating("cp-1", "charger", 22), "bat": AssetRating("bat", "battery", 50, 50)}


class Recorder:
    def __init__(self, fail_times: int = 0, hang: bool = False) -> None:
        self.sent: list[Command] = []
        self.fail_times, self.hang = fail_times, hang

    async def execute(self, command: Command) -> None:
        self.sent.append(command)
        if self.hang:
            await asyncio.sleep(10)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise AdapterError("rejected")


def engine(tmp_path, adapters, states=None, policy=None):
    registry = AdapterRegistry()
    for asset, adapter in adapters.items():
        registry.register(asset, adapter)
    bus = EventBus()
    journal = Journal(tmp_path / "journal.db")
    eng = DispatchEngine(
        registry,
        bus,
        journal,
        RATINGS,
        (states or {}).get,
        policy or RetryPolicy(max_attempts=3, backoff_seconds=1, timeout_seconds=0.2),
    )
    return eng, bus, journal


def cmd(value, minutes=0, asset="cp-1", source="v1"):
    return Command.new(source, asset, CommandType.SET_CHARGE_RATE, value, T0 + timedelta(minutes=minutes))


async def test_sends_when_due_and_completes(tmp_path):
    rec = Recorder()
    eng, bus, journal = engine(tmp_path, {"cp-1": rec})
    events = bus.subscribe()
    eng.submit([cmd(7, 0), cmd(11, 15)], T0)
    await eng.tick(T0)
    assert [c.value_kw for c in rec.sent] == [7]
    await eng.tick(T0 + timedelta(minutes=15))
    assert [c.value_kw for c in rec.sent] == [7, 11]
    assert {c.state for c in journal.commands()} == {CommandState.COMPLETED}
    kinds = [events.queue.get_nowait().type for _ in range(events.queue.qsize())]
    assert kinds.count(EventType.COMMAND_CREATED) == 2 and kinds.count(EventType.COMMAND_COMPLETED) == 2
    assert kinds.index(EventType.COMMAND_DISPATCHED) < kinds.index(EventType.COMMAND_ACKNOWLEDGED)


async def test_retries_with_backoff_then_fails(tmp_path):
    rec = Recorder(fail_times=10)
    eng, bus, journal = engine(tmp_path, {"cp-1": rec})
    eng.submit([cmd(7)], T0)
    await eng.tick(T0)
    await eng.tick(T0 + timedelta(seconds=0.5))  # backoff 1 s not over: nothing sent
    assert len(rec.sent) == 1
    await eng.tick(T0 + timedelta(seconds=1))
    await eng.tick(T0 + timedelta(seconds=3))  # second backoff is 2 s
    (final,) = journal.commands()
    assert len(rec.sent) == 3 and final.state is CommandState.FAILED and final.attempts == 3
    assert "rejected" in final.last_error
    assert len({c.id for c in rec.sent}) == 1  # one idempotency id for all attempts


async def test_unanswered_sends_time_out(tmp_path):
    eng, _, journal = engine(
        tmp_path, {"cp-1": Recorder(hang=True)}, policy=RetryPolicy(max_attempts=1, timeout_seconds=0.05)
    )
    eng.submit([cmd(7)], T0)
    finished = await eng.tick(T0)
    assert [c.state for c in finished] == [CommandState.TIMED_OUT]


async def test_a_recovering_adapter_completes_on_retry(tmp_path):
    rec = Recorder(fail_times=1)
    eng, _, journal = engine(tmp_path, {"cp-1": rec})
    eng.submit([cmd(7)], T0)
    await eng.tick(T0)
    await eng.tick(T0 + timedelta(seconds=1))
    assert journal.commands()[0].state is CommandState.COMPLETED


async def test_faulted_assets_are_held_not_sent(tmp_path):
    rec = Recorder()
    states = {"cp-1": "FAULTED"}
    eng, _, journal = engine(tmp_path, {"cp-1": rec}, states=states)
    eng.submit([cmd(7)], T0)
    await eng.tick(T0)
    assert rec.sent == [] and journal.commands()[0].state is CommandState.PENDING
    states["cp-1"] = "AVAILABLE"
    await eng.tick(T0 + timedelta(seconds=1))
    assert [c.value_kw for c in rec.sent] == [7]


async def test_newest_setpoint_wins_and_new_schedules_supersede(tmp_path):
    rec = Recorder()
    eng, _, journal = engine(tmp_path, {"cp-1": rec})
    eng.submit([cmd(7, 0), cmd(9, 5), cmd(11, 30)], T0)
    await eng.tick(T0 + timedelta(minutes=10))  # both 7 and 9 are due: only 9 goes
    assert [c.value_kw for c in rec.sent] == [9]
    eng.submit([cmd(3, 20, source="v2")], T0 + timedelta(minutes=10), replace_from=T0 + timedelta(minutes=20))
    states = {c.value_kw: c.state for c in journal.commands()}
    assert (
        states[7] is CommandState.SUPERSEDED
        and states[11] is CommandState.SUPERSEDED
        and states[3] is CommandState.PENDING
    )


async def test_setpoints_are_clamped_before_they_leave_and_unknown_assets_fail(tmp_path):
    rec = Recorder()
    eng, _, journal = engine(tmp_path, {"cp-1": rec}, policy=RetryPolicy(max_attempts=1))
    eng.submit([cmd(80), cmd(5, asset="nowhere")], T0)
    await eng.tick(T0)
    assert rec.sent[0].value_kw == 22
    failed = [c for c in journal.commands() if c.asset_id == "nowhere"][0]
    assert failed.state is CommandState.FAILED and "no adapter" in failed.last_error


async def test_resume_after_restart_sends_open_commands_once(tmp_path):
    rec = Recorder()
    eng, _, journal = engine(tmp_path, {"cp-1": rec})
    eng.submit([cmd(7, 0), cmd(11, 15)], T0)
    await eng.tick(T0)
    journal.close()
    rec2 = Recorder()
    eng2, _, journal2 = engine(tmp_path, {"cp-1": rec2})
    assert eng2.submit([cmd(7, 0), cmd(11, 15)], T0) == 0  # the same plan again adds nothing
    await eng2.tick(T0 + timedelta(minutes=15))
    assert [c.value_kw for c in rec2.sent] == [11]
    assert sorted(c.state for c in journal2.commands()) == [CommandState.COMPLETED] * 2


@pytest.mark.parametrize("n", [200])
async def test_many_commands_in_one_tick(tmp_path, n):
    rec = Recorder()
    eng, _, journal = engine(tmp_path, {f"a{i}": rec for i in range(n)})
    eng.submit([Command.new("v", f"a{i}", CommandType.SET_CHARGE_RATE, 1.0, T0) for i in range(n)], T0)
    finished = await eng.tick(T0)
    assert len(finished) == n and len(rec.sent) == n


async def test_a_newer_plan_gets_its_setpoint_even_when_an_older_plan_had_the_same(tmp_path):
    rec = Recorder()
    eng, _, journal = engine(tmp_path, {"cp-1": rec})
    # plan A wants 0 at 00:15, plan B replaces it with 11 before it runs: A's command is superseded
    eng.submit([cmd(0, 15, source="a")], T0, replace_from=T0)
    eng.submit([cmd(11, 15, source="b")], T0, replace_from=T0)
    await eng.tick(T0 + timedelta(minutes=15))
    assert [c.value_kw for c in rec.sent] == [11]
    # plan C, late in the same step, wants 0 again: the same id as A's, but the device holds 11
    eng.submit([cmd(0, 15, source="c")], T0 + timedelta(minutes=16), replace_from=T0 + timedelta(minutes=15))
    await eng.tick(T0 + timedelta(minutes=16))
    assert [c.value_kw for c in rec.sent] == [11, 0]
    # and the same plan again changes nothing: the device holds that very command
    eng.submit([cmd(0, 15, source="c")], T0 + timedelta(minutes=17), replace_from=T0 + timedelta(minutes=15))
    await eng.tick(T0 + timedelta(minutes=17))
    assert [c.value_kw for c in rec.sent] == [11, 0]
    # an older step's command, re-submitted after a newer one ran, is not sent: it is stale
    eng.submit([cmd(11, 0, source="d")], T0 + timedelta(minutes=18))
    await eng.tick(T0 + timedelta(minutes=18))
    assert [c.value_kw for c in rec.sent] == [11, 0]
    journal.close()
