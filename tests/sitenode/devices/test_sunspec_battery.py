"""Our SunSpec adapter and an independent SunSpec client against the battery simulator,
over real Modbus TCP on loopback."""

import asyncio
from datetime import UTC, datetime

import pytest

from sitenode.devices.modbus_battery import SunSpecBattery
from sitenode.devices.sunspec import load_model
from sitenode.dispatch import AdapterError, AssetRating, Command, CommandType
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
        assert status.soc_pct == pytest.approx(50) and status.capacity_kwh == pytest.approx(100) and status.max_charge_kw == pytest.approx(80)
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


async def test_a_map_without_suns_and_a_dead_device_are_adapter_errors(sim):
    simulator, port = sim
    adapter = SunSpecBattery("127.0.0.1", port, RATING, base=30000)
    with pytest.raises(AdapterError):
        await adapter.connect()
    await adapter.close()
    dead = SunSpecBattery("127.0.0.1", 1, RATING, timeout_seconds=0.2)
    with pytest.raises(AdapterError):
        await dead.connect()
    await dead.close()


async def test_an_independent_sunspec_client_reads_what_we_read(sim):
    simulator, port = sim
    import sunspec2.modbus.client as client

    def scan() -> tuple[float, float, int]:
        device = client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port)
        try:
            device.scan()
            battery, control = device.models["battery"][0], device.models["storage_basic"][0]
            battery.read()
            control.read()
            return battery.WHRtg.cvalue, battery.SoC.cvalue, control.WChaMax.cvalue
        finally:
            device.close()

    adapter = SunSpecBattery("127.0.0.1", port, RATING)
    await adapter.connect()
    ours = await adapter.status()
    await adapter.close()
    wh, soc, wchamax = await asyncio.to_thread(scan)  # the simulator keeps serving meanwhile
    assert wh == pytest.approx(ours.capacity_kwh * 1000)
    assert soc == pytest.approx(ours.soc_pct, abs=0.5)
    assert wchamax == pytest.approx(80_000)


async def test_ramp_limit_bounds_each_step(sim):
    simulator, port = sim
    adapter = SunSpecBattery("127.0.0.1", port, RATING, revert_seconds=600, ramp_kw_per_second=20.0)
    await adapter.connect()
    try:
        await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 0.0, NOW))
        await asyncio.sleep(0.5)
        await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 50.0, NOW))
        first = simulator.commanded_kw()
        assert 5.0 <= first <= 14.0  # about 20 kW/s x 0.5 s, not the 50 asked
        await asyncio.sleep(2.0)
        await adapter.execute(Command.new("t", "battery", CommandType.SET_CHARGE_RATE, 50.0, NOW))
        assert simulator.commanded_kw() == pytest.approx(50)
    finally:
        await adapter.close()


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
