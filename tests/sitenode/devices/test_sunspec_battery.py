"""Our SunSpec adapter and an independent SunSpec client against the battery simulator,
over real Modbus TCP on loopback."""

import asyncio
import contextlib
from datetime import UTC, datetime

import pandas as pd
import pytest

from sitenode.devices.modbus_battery import SunSpecBattery
from sitenode.devices.sunspec import load_model
from sitenode.dispatch import (
    AdapterError,
    AdapterRegistry,
    AssetMap,
    AssetRating,
    Command,
    CommandState,
    CommandType,
    DispatchEngine,
    commands_from_schedule,
)
from sitenode.events import EventBus
from sitenode.journal import Journal
from sitenode.schedule import CHARGE, DISCHARGE
from sitenode.simulators.sunspec_battery import BatterySpec, SunSpecBatterySim

NOW = datetime(2025, 1, 15, tzinfo=UTC)
RATING = AssetRating("battery", "battery", 50.0, 50.0)


@pytest.fixture
async def sim():
    simulator = SunSpecBatterySim(BatterySpec(capacity_kwh=100, max_kw=80, soc_pct=50), step_seconds=0.02, speed=600)
    port = await simulator.start()
    yield simulator, port
    await simulator.stop()


def test_model_lengths_come_from_pysunspec2():
    assert (load_model(1).length, load_model(124).length, load_model(802).length) == (66, 24, 62)


async def test_scan_status_and_setpoints(sim):
    simulator, port = sim
    adapter = SunSpecBattery("127.0.0.1", port, RATING, revert_seconds=600)
    await adapter.connect()
    try:
        assert set(adapter.models) == {1, 802, 124}
        status = await adapter.status()
        assert (
            status.soc_pct == pytest.approx(50)
            and status.capacity_kwh == pytest.approx(100)
            and status.max_charge_kw == pytest.approx(80)
        )
        # 200 kW asked, 50 kW rated: the clamp holds whatever the caller sent
        await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 200.0, NOW))
        assert simulator.commanded_kw() == pytest.approx(50)
        await asyncio.sleep(0.3)
        assert (await adapter.status()).soc_pct > 50
        await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 0.0, NOW))
        await adapter.execute(Command.new("t", "battery", CommandType.SET_DISCHARGE_RATE, 20.0, NOW))
        assert simulator.commanded_kw() == pytest.approx(-20)
        with pytest.raises(AdapterError):
            await adapter.execute(Command.new("t", "battery", CommandType.START_CHARGING, None, NOW))
    finally:
        await adapter.close()


async def test_silence_reverts_the_battery_to_idle(sim):
    simulator, port = sim
    adapter = SunSpecBattery("127.0.0.1", port, RATING, revert_seconds=60)
    await adapter.connect()
    try:
        await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 30.0, NOW))
        assert simulator.commanded_kw() == pytest.approx(30)
        await asyncio.sleep(0.2)  # 120 simulated seconds without a write
        assert simulator.commanded_kw() == 0
    finally:
        await adapter.close()


@pytest.mark.parametrize("control", [124, 704])
async def test_a_polling_node_keeps_its_setpoint_past_the_reversion_timer(control):
    # a plan step (15 min) outlasts the timer: the node's polls keep the setpoint alive (the
    # chaos soak found the battery idle for the last 5 minutes of every 15-minute step)
    async with running(control) as (simulator, port):
        adapter = SunSpecBattery("127.0.0.1", port, RATING, revert_seconds=60)
        try:
            await adapter.execute(Command.new("t", "battery", CommandType.SET_DISCHARGE_RATE, 20.0, NOW))
            for _ in range(8):  # 240 simulated seconds, a poll every 30
                await asyncio.sleep(0.05)
                await adapter.status()
                assert simulator.commanded_kw() == pytest.approx(-20)
            await asyncio.sleep(0.2)  # then silence: it reverts
            assert simulator.commanded_kw() == 0
        finally:
            await adapter.close()


async def test_a_map_without_suns_and_a_dead_device_are_adapter_errors(sim):
    simulator, port = sim
    # registers the device does not have: it answers with Modbus exception code 2
    adapter = SunSpecBattery("127.0.0.1", port, RATING, base=30000)
    with pytest.raises(AdapterError, match="exception reply.*exception_code=2"):
        await adapter.connect()
    await adapter.close()
    # registers it has, but no SunS marker there
    adapter = SunSpecBattery("127.0.0.1", port, RATING, base=40002)
    with pytest.raises(AdapterError, match="no SunS marker at 40002"):
        await adapter.connect()
    await adapter.close()
    dead = SunSpecBattery("127.0.0.1", 1, RATING, timeout_seconds=0.2)
    with pytest.raises(AdapterError):
        await dead.connect()
    await dead.close()


async def test_an_independent_sunspec_client_reads_what_we_read(sim):
    simulator, port = sim

    def scan() -> tuple[float, float, int]:
        _, battery, control = read_device(port, "storage_basic")
        return battery.WHRtg.cvalue, battery.SoC.cvalue, control.WChaMax.cvalue

    adapter = SunSpecBattery("127.0.0.1", port, RATING)
    await adapter.connect()
    ours = await adapter.status()
    await adapter.close()
    wh, soc, wchamax = await asyncio.to_thread(scan)  # the simulator keeps serving meanwhile
    assert wh == pytest.approx(ours.capacity_kwh * 1000)
    assert soc == pytest.approx(ours.soc_pct, abs=0.5)
    assert wchamax == pytest.approx(80_000)


async def test_reconnects_back_off_and_recover():
    adapter = SunSpecBattery("127.0.0.1", 1, RATING, timeout_seconds=0.2)
    with pytest.raises(AdapterError, match="cannot connect"):
        await adapter.status()
    with pytest.raises(AdapterError, match="next reconnect"):
        await adapter.status()  # no new attempt inside the back-off
    await adapter.close()
    simulator = SunSpecBatterySim(BatterySpec(capacity_kwh=100, max_kw=80, soc_pct=42))
    port = await simulator.start()
    try:
        adapter = SunSpecBattery("127.0.0.1", port, RATING)
        assert (await adapter.status()).soc_pct == pytest.approx(42)
        await adapter.close()
    finally:
        await simulator.stop()


# -- model 704 (DERCtlAC), the achieved value, and devices we cannot control --------------


@contextlib.asynccontextmanager
async def running(control=124, **spec):
    simulator = SunSpecBatterySim(
        BatterySpec(**{"capacity_kwh": 100, "max_kw": 80, "soc_pct": 50, **spec}),
        step_seconds=0.02,
        speed=600,
        control=control,
    )
    port = await simulator.start()
    try:
        yield simulator, port
    finally:
        await simulator.stop()


def wset_w(simulator):
    return simulator.get(simulator.control, "WSet") * 10  # WSet_SF = 1


@pytest.mark.parametrize("model_id", [1, 124, 704, 802])
def test_every_point_sits_where_pysunspec2_puts_it(model_id):
    import sunspec2.device as sunspec_device

    theirs = sunspec_device.Model(model_id=model_id)

    def offsets(group, prefix=""):
        out = {prefix + name: point.offset for name, point in group.points.items()}
        for name, sub in group.groups.items():
            out.update(offsets(sub, f"{prefix}{name}."))
        return out

    ours = load_model(model_id)
    assert {p.name: p.offset for p in ours.points.values()} == offsets(theirs)
    assert ours.length + 2 == theirs.len
    assert load_model(704).length == 65 and load_model(704).point("PFWAbsRvrt.Ext").offset == 66


async def test_an_independent_sunspec_client_reads_the_704_device_as_we_do():
    async with running(704, soc_pct=61) as (simulator, port):
        adapter = SunSpecBattery("127.0.0.1", port, RATING, revert_seconds=900)
        try:
            await adapter.connect()
            assert set(adapter.models) == {1, 802, 704} and adapter.control_id == 704
            took = await adapter.execute(Command.new("t", "battery", CommandType.SET_DISCHARGE_RATE, 20.0, NOW))
            await asyncio.sleep(0.2)
            ours = await adapter.status()
            ids, wh, soc, wcha, wset, ena, mod, rvrt_tms, ena_rvrt, rvrt_w, pf = await asyncio.to_thread(scan, port)
            after = await adapter.status()
        finally:
            await adapter.close()
    assert ids == [1, 704, 802] and took == 20.0
    assert wh == pytest.approx(ours.capacity_kwh * 1000) and wcha == pytest.approx(ours.max_charge_kw * 1000)
    assert (
        ours.soc_pct < 61 and after.soc_pct - 1e-9 <= soc <= ours.soc_pct + 1e-9
    )  # discharging while the client read it
    assert wset == pytest.approx(20_000)  # SunSpec: + injects, i.e. our discharge
    assert (ena, mod, rvrt_tms, ena_rvrt, rvrt_w) == (1, 1, 900, 1, 0)  # enabled, watts; idle when silent
    assert pf is None  # group points laid out, left unimplemented


def read_device(port, control_name):
    """An independent SunSpec client (pysunspec2) scans the device and reads its battery
    model and the named control model (blocking: run it in a thread); model ids, battery, control."""
    import sunspec2.modbus.client as client

    device = client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port)
    try:
        device.scan()
        battery, control = device.models["battery"][0], device.models[control_name][0]
        battery.read()
        control.read()
        return sorted(k for k in device.models if isinstance(k, int)), battery, control
    finally:
        device.close()


def scan(port):
    """That client's view of a 704 device."""
    ids, battery, control = read_device(port, "DERCtlAC")
    return (
        ids,
        battery.WHRtg.cvalue,
        battery.SoC.cvalue,
        battery.WChaRteMax.cvalue,
        control.WSet.cvalue,
        control.WSetEna.value,
        control.WSetMod.value,
        control.WSetRvrtTms.value,
        control.WSetEnaRvrt.value,
        control.WSetRvrt.cvalue,
        control.PFWInj.PF.value,
    )


async def test_the_adapter_drives_a_704_device_both_ways():
    async with running(704) as (simulator, port):
        adapter = SunSpecBattery("127.0.0.1", port, RATING, revert_seconds=600)
        try:
            await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 30.0, NOW))
            assert wset_w(simulator) == -30_000 and simulator.commanded_kw() == pytest.approx(30)
            await asyncio.sleep(0.3)
            status = await adapter.status()
            assert status.soc_pct > 50 and status.charge_state == 4
            # the planner's two changes of one step, sent together: either order ends at -20 kW
            both = await asyncio.gather(
                adapter.execute(Command.new("t", "battery", CommandType.SET_DISCHARGE_RATE, 20.0, NOW)),
                adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 0.0, NOW)),
            )
            assert both == [20.0, 0.0] and wset_w(simulator) == 20_000
            before = (await adapter.status()).soc_pct
            await asyncio.sleep(0.3)
            status = await adapter.status()
            assert status.soc_pct < before and status.charge_state == 3
            # 200 kW asked, 50 kW rated: the clamp holds whatever the caller sent
            assert (
                await adapter.execute(Command.new("t", "battery", CommandType.SET_DISCHARGE_RATE, 200.0, NOW)) == 50.0
            )
            assert simulator.commanded_kw() == pytest.approx(-50)
        finally:
            await adapter.close()


async def test_silence_reverts_a_704_device_to_idle_and_the_adapter_follows():
    async with running(704) as (simulator, port):
        adapter = SunSpecBattery("127.0.0.1", port, RATING, revert_seconds=60)
        try:
            await adapter.execute(Command.new("t", "battery", CommandType.SET_DISCHARGE_RATE, 20.0, NOW))
            assert simulator.commanded_kw() == pytest.approx(-20)
            assert 0 < simulator.get(simulator.control, "WSetRvrtRem") <= 60
            await asyncio.sleep(0.2)  # 120 simulated seconds without a write
            assert simulator.commanded_kw() == 0 and simulator.get(simulator.control, "WSet") == 0
            assert simulator.get(simulator.control, "WSetRvrtRem") == 0
            await asyncio.sleep(0.1)
            soc = simulator.soc_pct
            await asyncio.sleep(0.1)
            assert simulator.soc_pct == soc  # idle
            # the device dropped the 20 kW discharge: a charge now is 10 kW in, not 10 - 20
            assert await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 10.0, NOW)) == 10.0
            assert simulator.commanded_kw() == pytest.approx(10)
        finally:
            await adapter.close()


@pytest.mark.parametrize("control", [124, 704])
async def test_a_ramp_step_is_reported_as_what_the_device_took(control):
    async with running(control) as (simulator, port):  # reversion after 6 s: longer than the test
        adapter = SunSpecBattery("127.0.0.1", port, RATING, revert_seconds=3600, ramp_kw_per_second=20.0)
        try:
            await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 0.0, NOW))
            await asyncio.sleep(0.5)
            took = await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 50.0, NOW))
            assert 5.0 <= took <= 14.0  # about 20 kW/s x 0.5 s, not the 50 asked
            assert simulator.commanded_kw() == pytest.approx(took, abs=0.1)
            await asyncio.sleep(2.0)
            assert await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 50.0, NOW)) == 50.0
        finally:
            await adapter.close()


@pytest.mark.parametrize("control", [124, 704])
async def test_the_engine_completes_with_what_the_device_took_and_the_next_plan_sends_again(control, tmp_path):
    async with running(control, accept_kw=25.0) as (simulator, port):  # a derated device stores 25 of the 40 kW
        adapter = SunSpecBattery("127.0.0.1", port, RATING, revert_seconds=600)
        journal = Journal(tmp_path / "journal.db")
        engine = DispatchEngine(AdapterRegistry(), EventBus(), journal, {"battery": RATING}, lambda _: "IDLE")
        engine.registry.register("battery", adapter)
        try:
            # to its resolution (0.08 kW at 124) the device holds 13.33 kW: what was asked, not a change
            assert await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 13.33, NOW)) == 13.33
            plan = pd.DataFrame(
                {CHARGE: [40.0, 40.0], DISCHARGE: [0.0, 0.0]}, index=pd.date_range(NOW, periods=2, freq="15min")
            )
            assets = AssetMap("battery")
            engine.submit(commands_from_schedule(plan, "p1", assets, engine.ratings, journal.last_setpoints()), NOW)
            done = {c.type: c for c in await engine.tick(NOW)}
            charge = done[CommandType.SET_CHARGE_RATE]
            assert charge.state is CommandState.COMPLETED and charge.value_kw == pytest.approx(25.0, abs=0.05)
            assert simulator.commanded_kw() == pytest.approx(25.0, abs=0.05)
            held = journal.last_setpoints()
            assert held[("battery", CommandType.SET_CHARGE_RATE)] == charge.value_kw
            # the next plan, a step on, sees 25 held and asks for 40 again
            later = plan.iloc[1:]
            again = commands_from_schedule(later, "p2", assets, engine.ratings, held)
            assert [(c.type, c.value_kw) for c in again] == [(CommandType.SET_CHARGE_RATE, 40.0)]
        finally:
            await adapter.close()
            journal.close()


async def test_a_device_without_storage_control_is_refused_and_the_engine_keeps_serving(tmp_path):
    async with running(None) as (_, bad_port), running(704) as (good, good_port):
        bad = SunSpecBattery("127.0.0.1", bad_port, RATING)
        fine = SunSpecBattery("127.0.0.1", good_port, AssetRating("b2", "battery", 50.0, 50.0))
        journal = Journal(tmp_path / "journal.db")
        registry = AdapterRegistry()
        registry.register("battery", bad)
        registry.register("b2", fine)
        engine = DispatchEngine(registry, EventBus(), journal, {"battery": RATING, "b2": fine.rating}, lambda _: "IDLE")
        try:
            with pytest.raises(
                AdapterError, match=r"neither 124 \(storage_basic\) nor 704 \(DERCtlAC\).*models: \[1, 802\]"
            ):
                await bad.connect()
            engine.submit(
                [
                    Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 10.0, NOW),
                    Command.new("t", "b2", CommandType.SET_CHARGE_RATE, 10.0, NOW),
                ],
                NOW,
            )
            done = await engine.tick(NOW)
            assert [(c.asset_id, c.state) for c in done] == [("b2", CommandState.COMPLETED)]
            assert good.commanded_kw() == pytest.approx(10)
            (waiting,) = engine.pending()
            assert waiting.asset_id == "battery" and "neither 124" in waiting.last_error
        finally:
            await bad.close()
            await fine.close()
            journal.close()
