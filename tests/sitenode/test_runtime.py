"""The node runtime's planning loop: period, events, failsafe."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sitenode.dispatch import AdapterRegistry, CommandType
from sitenode.model.sessions import EVSession
from sitenode.node_config import load_node_config
from sitenode.runtime import Mode, NodeRuntime

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 1, 15, 22, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class Recorder:
    def __init__(self):
        self.sent = []

    async def execute(self, command):
        self.sent.append(command)


async def turn(rt: NodeRuntime) -> None:
    """One turn of the loop, and the plan it started (in the worker thread) put in force."""
    await rt.step()
    await rt.plans_settled()


@pytest.fixture(autouse=True)
def _close_runtimes():
    """Every runtime a test made is closed after it (its plan worker thread with it)."""
    yield
    while _made:
        _made.pop().close()


_made: list[NodeRuntime] = []


def runtime(tmp_path, **plan):
    config, base = load_node_config(ROOT / "examples" / "nodes" / "depot.yaml")
    config = config.model_copy(
        update={
            "node": config.node.model_copy(update={"journal": str(tmp_path / "j.db")}),
            "plan": config.plan.model_copy(update=plan),
        }
    )
    registry, device = AdapterRegistry(), Recorder()
    for c in config.site.chargers:
        registry.register(c.id, device)
    clock = ManualClock(T0)
    rt = NodeRuntime(config, base, clock, registry)
    _made.append(rt)
    return rt, clock, device


async def test_replans_on_period_and_on_events(tmp_path):
    rt, clock, _ = runtime(tmp_path, reoptimize_minutes=15)
    await turn(rt)
    first = rt.last_optimized_at
    assert rt.mode(clock.now()) is Mode.LOCAL
    clock.t += timedelta(minutes=5)
    await turn(rt)
    assert rt.last_optimized_at == first  # not due yet
    rt.upsert_session(
        EVSession(session_id="v", arrival=T0, departure=T0 + timedelta(hours=5), energy_kwh=20, max_kw=11)
    )
    await turn(rt)
    assert rt.last_optimized_at == clock.now()  # a new session re-plans at once
    clock.t += timedelta(minutes=1)
    await turn(rt)
    planned = rt.last_optimized_at
    rt.fire(rt.last_plan.charger_assignment["v"], "fault")
    clock.t += timedelta(seconds=10)
    await turn(rt)
    assert rt.last_optimized_at > planned  # a fault re-plans
    clock.t += timedelta(minutes=15)
    await turn(rt)
    assert rt.last_optimized_at == clock.now()  # the period re-plans


async def test_expired_schedule_falls_back_to_failsafe(tmp_path):
    rt, clock, device = runtime(tmp_path, horizon_steps=4, reoptimize_minutes=600)
    await turn(rt)
    assert rt.mode(clock.now()) is Mode.LOCAL
    clock.t += timedelta(hours=2)
    await turn(rt)
    assert rt.status().mode is Mode.FAILSAFE
    failsafe = [c for c in device.sent if c.source.startswith("failsafe")]
    assert {c.asset_id for c in failsafe} == {c.id for c in rt.config.site.chargers}
    assert all(c.type is CommandType.SET_CHARGE_RATE and c.value_kw == 6.0 for c in failsafe)
    await turn(rt)
    assert len([c for c in device.sent if c.source.startswith("failsafe")]) == len(failsafe)  # once per spell


async def test_forecasts_come_from_observed_telemetry(tmp_path):
    config, base = load_node_config(ROOT / "examples" / "nodes" / "office.yaml")
    config = config.model_copy(
        update={"node": config.node.model_copy(update={"journal": str(tmp_path / "j.db"), "history": None})}
    )
    clock = ManualClock(T0)
    rt = NodeRuntime(config, base, clock)
    rt.optimize()
    assert (rt.last_plan.schedule["load_kw"] == 0).all()  # cold start: nothing observed yet
    for k in range(96):
        at = T0 - timedelta(days=1) + k * timedelta(minutes=15)
        rt.observe(at, load_kw=40.0 + (k % 4), pv_kw=0.0)
    rt.optimize()
    load = rt.last_plan.schedule["load_kw"].to_numpy()
    assert load.tolist() == [40.0 + (k % 4) for k in range(96)]  # yesterday, same step


@pytest.mark.parametrize("name", ["depot", "office", "warehouse"])
def test_every_example_node_config_plans(tmp_path, name):
    config, base = load_node_config(ROOT / "examples" / "nodes" / f"{name}.yaml")
    config = config.model_copy(update={"node": config.node.model_copy(update={"journal": str(tmp_path / "j.db")})})
    rt = NodeRuntime(config, base, ManualClock(T0))
    out = rt.optimize()
    assert out.plan.result.status == "optimal" and out.total_cost <= out.baseline_total_cost + 1e-6


def test_measured_ev_energy_counts_towards_the_session_and_the_next_plan(tmp_path):
    rt, clock, _ = runtime(tmp_path)
    try:
        rt.upsert_session(
            EVSession(
                session_id="v",
                arrival=T0,
                departure=T0 + timedelta(hours=5),
                energy_kwh=20,
                max_kw=11,
                charger_id="ac-01",
            )
        )
        # a charger with an energy register: its readings count, exactly
        rt.charger_energy("ac-01", 100.0, T0)  # the first reading only sets the baseline
        clock.t += timedelta(minutes=30)
        rt.charger_energy("ac-01", 105.5, clock.now())
        rt.charger_power("ac-01", 11.0, clock.now())  # power alone adds nothing where a register exists
        clock.t += timedelta(minutes=30)
        rt.charger_power("ac-01", 0.0, clock.now())
        assert rt.delivered_kwh == {"v": pytest.approx(5.5)}
        # a charger without one: sampled power integrates, the sample before holding until the next
        rt.charger_power("ac-02", 10.0, clock.now())
        clock.t += timedelta(minutes=6)
        rt.charger_power("ac-02", 4.0, clock.now())
        assert rt.ev_energy_kwh == pytest.approx(5.5 + 1.0)
        assert "v" in rt.delivered_kwh and len(rt.delivered_kwh) == 1  # nothing on ac-02 to credit
        plan_inputs = rt.inputs(clock.now())
        assert [s.energy_kwh for s in plan_inputs.sessions] == [pytest.approx(14.5)]  # the plan asks only for the rest
        rt.charger_energy("ac-01", 3.0, clock.now())  # a meter reset is a new baseline, not negative energy
        assert rt.delivered_kwh["v"] == pytest.approx(5.5)
        rt.optimize()  # a plan keeps what was delivered in the journal
    finally:
        rt.close()
    # killed and restarted on its journal: what was delivered still counts (kept at the last plan)
    again = NodeRuntime(rt.config, ROOT / "examples" / "nodes", clock, AdapterRegistry())
    _made.append(again)
    assert again.delivered_kwh == {"v": pytest.approx(5.5)}
    assert [s.energy_kwh for s in again.inputs(clock.now()).sessions] == [pytest.approx(14.5)]


def test_transactions_are_timed_by_the_node_clock_not_the_chargers(tmp_path):
    rt, clock, _ = runtime(tmp_path)
    try:
        wall = datetime(2031, 3, 3, tzinfo=UTC)  # what a charger (or the OCPP layer's wall clock) says
        rt.upsert_session(
            EVSession(
                session_id="van",
                arrival=T0,
                departure=T0 + timedelta(hours=5),
                energy_kwh=20,
                max_kw=11,
                charger_id="ac-01",
            )
        )
        rt.charger_transaction("ac-01", 7, "tag", wall)
        assert [s.session_id for s in rt.journal.sessions()] == ["van"]  # the fleet's session: no walk-in
        rt.charger_transaction("ac-02", 8, "tag", wall)
        walk_in = next(s for s in rt.journal.sessions() if s.session_id == "ac-02-tx")
        assert walk_in.arrival == clock.now() and walk_in.charger_id == "ac-02"
        rt.charger_transaction("ac-02", None, "tag", wall)
        assert [s.session_id for s in rt.journal.sessions()] == ["van"] and rt.charger_kw["ac-02"] == 0.0
    finally:
        rt.close()


async def test_a_turn_of_the_loop_starts_a_plan_and_does_not_wait_for_it(tmp_path):
    rt, clock, _ = runtime(tmp_path)
    for k in range(8):  # sessions with no charger named: a MIP far longer than a turn of the loop
        rt.upsert_session(
            EVSession(session_id=f"v{k}", arrival=T0, departure=T0 + timedelta(hours=6), energy_kwh=30, max_kw=22)
        )
    await rt.step()
    assert rt.last_optimized_at is None and rt.mode(clock.now()) is Mode.FAILSAFE  # under way, in the worker
    await rt.plans_settled()
    assert rt.last_optimized_at == T0 and rt.mode(clock.now()) is Mode.LOCAL


async def test_a_change_during_a_plan_supersedes_it_and_the_newer_plan_is_put_in_force(tmp_path):
    from sitenode.planning import Superseded

    rt, clock, _ = runtime(tmp_path)
    for k in range(8):  # sessions with no charger named: the first plan, a MIP, is still running below
        rt.upsert_session(
            EVSession(session_id=f"v{k}", arrival=T0, departure=T0 + timedelta(hours=6), energy_kwh=30, max_kw=22)
        )
    await rt.step()
    first = rt._plan_task
    rt.upsert_session(
        EVSession(session_id="late", arrival=T0, departure=T0 + timedelta(hours=6), energy_kwh=30, max_kw=22)
    )
    await rt.step()
    assert rt._plan_task is not first
    with pytest.raises(Superseded):
        await first
    await rt.plans_settled()
    assert "ev_late_kw" in rt.schedule().frame.columns  # only the newer plan, which knows the session


async def test_a_plan_past_its_deadline_is_abandoned_reported_and_changes_nothing(tmp_path):
    from sitenode.events import EventType

    rt, clock, device = runtime(tmp_path, deadline_seconds=0.001)
    for k in range(8):  # sessions with no charger named: the charger-choice MIP, far longer than 1 ms
        rt.upsert_session(
            EVSession(session_id=f"v{k}", arrival=T0, departure=T0 + timedelta(hours=6), energy_kwh=30, max_kw=22)
        )
    events = rt.bus.subscribe([EventType.PLAN_ABANDONED, EventType.SCHEDULE_RECEIVED])
    await turn(rt)
    assert rt.schedule() is None and rt.last_plan is None
    seen = [events.queue.get_nowait() for _ in range(events.queue.qsize())]
    assert [e.type for e in seen] == [EventType.PLAN_ABANDONED]
    assert seen[0].payload.reason == "start" and rt.planner.abandoned == 1
    assert {c.source.split("-")[0] for c in device.sent} <= {"failsafe"}  # the failsafe holds, no plan's command
    assert rt._plan_due(clock.now(), False) is None  # not again at once, which would spin
    clock.t += timedelta(minutes=1)
    assert rt._plan_due(clock.now(), False) == "period"  # but after a minute of the node's clock


async def test_the_optimize_call_waits_for_its_plan_off_the_loop(tmp_path):
    rt, clock, _ = runtime(tmp_path)
    out = await rt.plan_now()
    assert out.plan.result.status == "optimal" and rt.schedule().version == out.version


def test_a_fast_clock_with_a_short_tick_does_not_spin_the_loop(tmp_path):
    from sitenode.clock import SimulatedClock
    from sitenode.runtime import MIN_TICK_REAL_SECONDS

    config, base = load_node_config(ROOT / "examples" / "nodes" / "depot.yaml")
    node = config.node.model_copy(update={"journal": str(tmp_path / "j.db"), "tick_seconds": 0.05})
    rt = NodeRuntime(config.model_copy(update={"node": node}), base, SimulatedClock(T0, 864.0))
    _made.append(rt)
    assert rt._tick_real_seconds() == MIN_TICK_REAL_SECONDS  # 0.05 / 864 would be 58 µs
    slow = config.node.model_copy(update={"journal": str(tmp_path / "k.db"), "tick_seconds": 1.0})
    rt2 = NodeRuntime(config.model_copy(update={"node": slow}), base, SimulatedClock(T0, 2.0))
    _made.append(rt2)
    assert rt2._tick_real_seconds() == 0.5


async def test_a_departed_session_is_closed_and_its_shortfall_reported_even_after_a_restart(tmp_path):
    from sitenode.events import EventType
    from sitenode.node_config import OcppCentralSystem

    rt, clock, _ = runtime(tmp_path)
    # chargers that report energy (an OCPP central system): deliveries are measured
    measured = rt.config.model_copy(
        update={"devices": rt.config.devices.model_copy(update={"ocpp": OcppCentralSystem()})}
    )
    rt.close()
    rt = NodeRuntime(measured, ROOT / "examples" / "nodes", clock, AdapterRegistry())
    _made.append(rt)
    for sid, charger in (("v", "ac-01"), ("w", "ac-02")):
        rt.upsert_session(
            EVSession(
                session_id=sid, arrival=T0, departure=T0 + timedelta(hours=2), energy_kwh=20, max_kw=11,
                charger_id=charger,
            )
        )  # fmt: skip
    rt.charger_energy("ac-01", 100.0, clock.now())
    clock.t += timedelta(minutes=30)
    rt.charger_energy("ac-01", 120.0, clock.now())  # v got all it needed
    rt.charger_energy("ac-02", 0.0, clock.now())
    clock.t += timedelta(minutes=30)
    rt.charger_energy("ac-02", 6.0, clock.now())  # w got 6 of 20
    await turn(rt)  # the plan keeps the deliveries in the journal
    rt.close()  # killed before the departure; back after it
    clock.t = T0 + timedelta(hours=3)
    again = NodeRuntime(measured, ROOT / "examples" / "nodes", clock, AdapterRegistry())
    _made.append(again)
    events = again.bus.subscribe([EventType.SESSION_CLOSED])
    await turn(again)
    assert again.journal.sessions() == []
    outcomes = {o.session_id: o for o in again.journal.session_outcomes()}
    assert outcomes["v"].shortfall_kwh == 0 and outcomes["w"].shortfall_kwh == pytest.approx(14.0)
    closed = {e.payload.session_id: e.payload.reason for e in [events.queue.get_nowait() for _ in range(2)]}
    assert closed == {"v": "", "w": "short by 14.00 kWh"}
    assert again.delivered_kwh == {}


async def test_a_dry_node_closes_departed_sessions_without_claiming_a_shortfall(tmp_path):
    rt, clock, _ = runtime(tmp_path)
    rt.upsert_session(
        EVSession(session_id="v", arrival=T0, departure=T0 + timedelta(hours=1), energy_kwh=20, max_kw=11)
    )
    clock.t += timedelta(hours=2)
    await turn(rt)
    (outcome,) = rt.journal.session_outcomes()
    assert rt.journal.sessions() == [] and not outcome.measured and outcome.shortfall_kwh == 0
