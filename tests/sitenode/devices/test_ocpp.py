"""OCPP 1.6 between the node's central system and simulated charge points, over real
websockets with the `ocpp` library on both ends."""

import asyncio
import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sitenode.clock import RealClock
from sitenode.devices.ocpp_central import CentralSystem
from sitenode.devices.ocpp_status import path_to
from sitenode.dispatch import AdapterRegistry, CommandType
from sitenode.node_config import load_node_config
from sitenode.runtime import NodeRuntime
from sitenode.simulators.ocpp_charger import connect_charge_point, disconnect
from sitenode.state import CHARGER, StateMachine

ROOT = Path(__file__).resolve().parents[3]
IDS = ["ac-01", "ac-02", "dc-01"]


def test_status_paths_follow_legal_transitions():
    assert path_to("AVAILABLE", "CHARGING") == ["plug_in", "start_charge"]
    back = path_to("CHARGING", "AVAILABLE")
    machine = StateMachine(CHARGER, "cp", "CHARGING")
    for trigger in back:
        machine.fire(trigger)
    assert len(back) == 2 and machine.state == "AVAILABLE"
    assert path_to("FAULTED", "FAULTED") == []


@pytest.fixture
async def site(tmp_path):
    config, base = load_node_config(ROOT / "examples" / "nodes" / "depot.yaml")
    config = config.model_copy(update={"node": config.node.model_copy(update={"journal": str(tmp_path / "j.db")})})
    registry = AdapterRegistry()
    runtime = NodeRuntime(config, base, RealClock(), registry)
    central = CentralSystem(runtime, {i: f"pw-{i}" for i in IDS}, {i: 7000.0 for i in IDS}, response_timeout=2)
    for charger_id in IDS:
        registry.register(charger_id, central.adapter(charger_id))
    port = await central.start("127.0.0.1", 0)
    yield runtime, central, f"ws://127.0.0.1:{port}/ocpp"
    await central.stop()
    runtime.close()


async def test_boot_session_schedule_profile_and_meter_values(site):
    runtime, central, url = site
    cps = [await connect_charge_point(url, i, f"pw-{i}", 22.0 if i.startswith("ac") else 60.0) for i in IDS]
    try:
        for cp, _ in cps:
            await cp.boot()
        await asyncio.sleep(0.2)
        for cp, _ in cps:
            assert cp.limits_w["ChargePointMaxProfile"] == 7000.0  # the persistent default took
        assert all(central.links[i].default_profile_ok.is_set() for i in IDS)
        cp, _ = cps[0]
        await cp.plug_in(ev_kw=11.0)
        assert runtime.machines["ac-01"].state == "CHARGING"
        assert [s.session_id for s in runtime.journal.sessions()] == ["ac-01-tx"]
        out = runtime.optimize()
        await runtime.engine.tick(datetime.now(UTC))
        sent = [
            c for c in runtime.journal.commands() if c.asset_id == "ac-01" and c.type is CommandType.SET_CHARGE_RATE
        ]
        assert sent and sent[0].state == "COMPLETED"
        assert cp.limits_w["TxProfile"] == pytest.approx(sent[0].value_kw * 1000)
        assert out.plan.schedule["ev_ac-01-tx_kw"].iloc[0] == pytest.approx(sent[0].value_kw, abs=0.01)
        await cp.report_power()
        assert runtime.charger_kw["ac-01"] == pytest.approx(cp.power_kw())
        await cp.unplug()
        assert runtime.machines["ac-01"].state == "AVAILABLE" and runtime.journal.sessions() == []
    finally:
        for cp, task in cps:
            await disconnect(cp, task)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_bad_peers_are_refused_and_the_node_keeps_serving(site):
    runtime, central, url = site
    with pytest.raises(InvalidStatus) as exc:
        await connect(f"{url}/ac-01", subprotocols=["ocpp1.6"], additional_headers=basic("ac-01", "wrong"))
    assert exc.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as exc:
        await connect(f"{url}/cp-unknown", subprotocols=["ocpp1.6"], additional_headers=basic("cp-unknown", "x"))
    assert exc.value.response.status_code == 404
    good, task = await connect_charge_point(url, "ac-02", "pw-ac-02", 22.0)
    try:
        with pytest.raises(InvalidStatus) as exc:  # the id is taken: no hijack
            await connect(f"{url}/ac-02", subprotocols=["ocpp1.6"], additional_headers=basic("ac-02", "pw-ac-02"))
        assert exc.value.response.status_code == 409
        # a peer that sends garbage ends its own link, nobody else's
        bad = await connect(f"{url}/dc-01", subprotocols=["ocpp1.6"], additional_headers=basic("dc-01", "pw-dc-01"))
        for frame in (
            "not json",
            "[2]",
            '[2,"1",[],{}]',
            '[2,"2","StatusNotification",{"connectorId":-1,"errorCode":"NoError","status":"Charging"}]',
        ):
            await bad.send(frame)
        await asyncio.sleep(0.2)
        await bad.close()
        await good.boot()
        assert "ac-02" in central.links
        assert runtime.machines["dc-01"].state == "AVAILABLE"
    finally:
        await disconnect(good, task)


async def test_repeated_failed_logins_are_slowed_down_and_a_good_one_resets_them(site):
    runtime, central, url = site
    waits = []
    for _ in range(4):
        started = asyncio.get_running_loop().time()
        with pytest.raises(InvalidStatus) as exc:
            await connect(f"{url}/ac-01", subprotocols=["ocpp1.6"], additional_headers=basic("ac-01", "guess"))
        assert exc.value.response.status_code == 401
        waits.append(asyncio.get_running_loop().time() - started)
    # each failure waits at least twice the one before (0.1, 0.2, 0.4, 0.8 s)
    assert waits[-1] >= 0.8 and waits[-1] > 2 * waits[0], waits
    assert central.failures["ac-01"] == 4
    cp, task = await connect_charge_point(url, "ac-01", "pw-ac-01", 22.0)
    try:
        assert "ac-01" not in central.failures
    finally:
        await disconnect(cp, task)


async def test_an_unanswered_profile_fails_the_command(site):
    runtime, central, url = site
    silent = await connect(f"{url}/ac-01", subprotocols=["ocpp1.6"], additional_headers=basic("ac-01", "pw-ac-01"))
    try:
        for _ in range(50):
            if "ac-01" in central.links:
                break
            await asyncio.sleep(0.02)
        from sitenode.dispatch import AdapterError, Command

        with pytest.raises(AdapterError, match="did not answer"):
            await central.adapter("ac-01").execute(
                Command.new("t", "ac-01", CommandType.SET_CHARGE_RATE, 5.0, datetime.now(UTC))
            )
    finally:
        await silent.close()


async def test_security_profile_2_over_tls(tmp_path):
    import ssl

    from factories.certs import make_server_cert

    files = make_server_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(files.cert, files.key)
    client_ctx = ssl.create_default_context(cafile=str(files.ca))

    class Node:
        statuses: list = []

        def charger_status(self, charger_id, ocpp_status):
            self.statuses.append(ocpp_status)

        def charger_transaction(self, *args):
            pass

        def charger_power(self, *args):
            pass

        def charger_energy(self, *args):
            pass

    node = Node()
    central = CentralSystem(node, {"ac-01": "pw"}, {"ac-01": 7000.0})
    port = await central.start("127.0.0.1", 0, ssl=server_ctx)
    try:
        cp, task = await connect_charge_point(f"wss://127.0.0.1:{port}/ocpp", "ac-01", "pw", 22.0, ssl=client_ctx)
        await cp.boot()
        assert node.statuses == ["Available"]
        await disconnect(cp, task)
        with pytest.raises(Exception):  # noqa: B017 - plaintext to a TLS listener fails one way or another
            await connect(
                f"ws://127.0.0.1:{port}/ocpp/ac-01",
                subprotocols=["ocpp1.6"],
                additional_headers=basic("ac-01", "pw"),
                open_timeout=2,
            )
    finally:
        await central.stop()


async def test_mixed_16_and_201_chargers_follow_the_plan(site):
    runtime, central, url = site
    versions = {"ac-01": "1.6", "ac-02": "2.0.1", "dc-01": "2.0.1"}
    cps = {i: await connect_charge_point(url, i, f"pw-{i}", 22.0, version=v) for i, v in versions.items()}
    try:
        for cp, _ in cps.values():
            await cp.boot()
        await asyncio.sleep(0.2)
        assert all(central.links[i].default_profile_ok.is_set() for i in versions)
        station, _ = cps["ac-02"]
        assert station.limits_w["ChargingStationMaxProfile"] == 7000.0
        await station.plug_in(ev_kw=11.0)
        assert runtime.machines["ac-02"].state == "CHARGING"
        assert [s.session_id for s in runtime.journal.sessions()] == ["ac-02-tx"]
        runtime.optimize()
        await runtime.engine.tick(datetime.now(UTC))
        sent = [c for c in runtime.journal.commands() if c.asset_id == "ac-02"]
        assert sent and sent[0].state == "COMPLETED"
        assert station.limits_w["TxProfile"] == pytest.approx(sent[0].value_kw * 1000)
        await station.report_power()
        assert runtime.charger_kw["ac-02"] == pytest.approx(station.power_kw())
        await station.unplug()
        assert runtime.machines["ac-02"].state == "AVAILABLE" and runtime.journal.sessions() == []
    finally:
        for cp, task in cps.values():
            await disconnect(cp, task)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_chargers_that_take_only_amps_get_amps(site, version):
    runtime, central, url = site
    central.watts_per_amp["ac-01"] = 230.0 * 3
    cp, task = await connect_charge_point(url, "ac-01", "pw-ac-01", 22.0, version=version)
    try:
        await cp.boot()
        await asyncio.sleep(0.1)
        max_profile = "ChargePointMaxProfile" if version == "1.6" else "ChargingStationMaxProfile"
        assert cp.units[max_profile] == "A"
        assert cp.limits_w[max_profile] == pytest.approx(7000, abs=35)  # 10.1 A x 690 W/A
        from sitenode.dispatch import Command

        await central.adapter("ac-01").execute(
            Command.new("t", "ac-01", CommandType.SET_CHARGE_RATE, 6.9, datetime.now(UTC))
        )
        assert cp.units["TxDefaultProfile"] == "A" and cp.limits_w["TxDefaultProfile"] == pytest.approx(6900)
    finally:
        await disconnect(cp, task)


async def test_callerror_replies_and_bad_timestamps(site):
    """A charger that answers a profile with CALLERROR fails the command; timestamps that
    pass the schema but are not dates change nothing."""
    from ocpp.routing import on as route
    from ocpp.v16 import call as call16
    from ocpp.v16 import enums as enums16

    from sitenode.dispatch import AdapterError, Command
    from sitenode.simulators.ocpp_charger import SimulatedChargePoint

    class Grumpy(SimulatedChargePoint):
        @route(enums16.Action.set_charging_profile)
        async def on_profile(self, connector_id, cs_charging_profiles):
            raise NotImplementedError("no profiles here")  # the library answers CALLERROR

    runtime, central, url = site
    cp, task = await connect_charge_point(url, "ac-01", "pw-ac-01", 22.0)
    grumpy = Grumpy("ac-01", cp._connection, 22.0)  # noqa: SLF001 - same socket, other handlers
    task.cancel()
    listener = asyncio.create_task(grumpy.start())
    try:
        await grumpy.call(
            call16.StatusNotification(
                connector_id=1, error_code="NoError", status="Preparing", timestamp="yesterday-ish"
            )
        )
        assert runtime.machines["ac-01"].state == "PREPARING"
        with pytest.raises(AdapterError):
            await central.adapter("ac-01").execute(
                Command.new("t", "ac-01", CommandType.SET_CHARGE_RATE, 5.0, datetime.now(UTC))
            )
        reply = await grumpy.call(call16.Heartbeat())
        assert reply.current_time  # the link is still up after the CALLERROR
    finally:
        await disconnect(grumpy, listener)


async def test_a_fleet_plays_sessions_onto_the_node(site, tmp_path):
    from sitenode.simulators.charger_fleet import read_planned_sessions, run_fleet

    class HandClock:
        def __init__(self, t):
            self.t = t

        def now(self):
            return self.t

    async def until(condition, seconds=5.0):
        for _ in range(int(seconds / 0.02)):
            if condition():
                return True
            await asyncio.sleep(0.02)
        return condition()

    runtime, central, url = site
    csv = tmp_path / "sessions.csv"
    csv.write_text(
        "session_id,arrival,departure,energy_kwh,max_kw,priority,charger_id\n"
        "v1,2025-01-15T18:00:00Z,2025-01-15T19:00:00Z,10,11,1,ac-02\n"
        "v2,2025-01-15T18:30:00,2025-01-15T23:00:00,10,11,1,\n"
    )  # naive times are UTC
    sessions = read_planned_sessions(csv)
    clock = HandClock(datetime(2025, 1, 15, 17, 59, tzinfo=UTC))
    central.passwords["ac-02"] = "pw-ac-01"  # the fleet uses one password
    stop, ready = asyncio.Event(), asyncio.Event()
    fleet = asyncio.create_task(
        run_fleet(
            url,
            ["ac-01", "ac-02"],
            "pw-ac-01",
            max_kw=22,
            version="1.6",
            clock=clock,
            stop=stop,
            sessions=sessions,
            tick_seconds=0.02,
            ready=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 5)
        assert runtime.machines["ac-02"].state == "AVAILABLE"
        clock.t = datetime(2025, 1, 15, 18, 0, tzinfo=UTC)
        assert await until(lambda: runtime.machines["ac-02"].state == "CHARGING")
        clock.t = datetime(2025, 1, 15, 18, 30, tzinfo=UTC)
        assert await until(lambda: runtime.machines["ac-01"].state == "CHARGING")  # v2 takes the free charger
        clock.t = datetime(2025, 1, 15, 19, 0, tzinfo=UTC)
        assert await until(lambda: runtime.machines["ac-02"].state == "AVAILABLE")  # v1 has left
        assert runtime.machines["ac-01"].state == "CHARGING"
    finally:
        stop.set()
        await fleet
