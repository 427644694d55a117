"""Fuzz targets 3 and 4: the node's OCPP central system and its SunSpec battery adapter.

OCPP: raw websocket charge points (HTTP Basic auth, 1.6 or 2.0.1) send frames mutated from
valid ones without waiting for answers; the server may close an offending connection, but a
well-behaved charge point connected alongside (the keeper) must stay connected and get its
Heartbeat answered after every batch.

SunSpec: a Modbus TCP server of our own answers every request from a mutated register image,
or with garbage registers, exception codes, short reads, a wrong function code, random bytes, a
broken header, a half frame, silence or a closed socket. The adapter must turn each into an
`AdapterError` (the monitor then keeps the battery UNAVAILABLE or FAULTED); any other
exception is a crash. A second adapter on the real simulator must keep reading its status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

from fuzz_common import JsonMutator, Report, rss_kb
from fuzz_grpc import depot_node
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from ocpp.v16 import call

from sitenode.devices.battery_monitor import BatteryMonitor
from sitenode.devices.modbus_battery import SunSpecBattery
from sitenode.devices.ocpp_central import CentralSystem
from sitenode.dispatch import AdapterError, AssetRating, Command, CommandType
from sitenode.simulators.ocpp_charger import connect_charge_point, disconnect
from sitenode.simulators.sunspec_battery import BASE, BatterySpec, SunSpecBatterySim

FRAMES_PER_CONNECTION = 40


def _now() -> str:
    return datetime.now(UTC).isoformat()


def ocpp_seeds() -> dict[str, list[list]]:
    t = _now()
    v16 = [
        [2, "b1", "BootNotification", {"chargePointVendor": "fuzz", "chargePointModel": "m"}],
        [2, "h1", "Heartbeat", {}],
        [2, "s1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}],
        [2, "a1", "Authorize", {"idTag": "tag"}],
        [2, "t1", "StartTransaction", {"connectorId": 1, "idTag": "tag", "meterStart": 0, "timestamp": t}],
        [2, "t2", "StopTransaction", {"meterStop": 10, "timestamp": t, "transactionId": 1}],
        [
            2,
            "m1",
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": 1,
                "meterValue": [
                    {
                        "timestamp": t,
                        "sampledValue": [
                            {"value": "7000", "measurand": "Power.Active.Import", "unit": "W"},
                            {"value": "12.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
                        ],
                    }
                ],
            },
        ],
        [2, "d1", "DataTransfer", {"vendorId": "fuzz", "data": "x"}],
        [3, "r1", {"status": "Accepted"}],
        [4, "e1", "InternalError", "boom", {}],
    ]
    v201 = [
        [2, "b1", "BootNotification", {"chargingStation": {"model": "m", "vendorName": "fuzz"}, "reason": "PowerUp"}],
        [2, "h1", "Heartbeat", {}],
        [
            2,
            "s1",
            "StatusNotification",
            {"timestamp": t, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
        ],
        [2, "a1", "Authorize", {"idToken": {"idToken": "tag", "type": "ISO14443"}}],
        [
            2,
            "x1",
            "TransactionEvent",
            {
                "eventType": "Started",
                "timestamp": t,
                "triggerReason": "CablePluggedIn",
                "seqNo": 1,
                "transactionInfo": {"transactionId": "tx-1", "chargingState": "Charging"},
                "meterValue": [
                    {
                        "timestamp": t,
                        "sampledValue": [
                            {"value": 7000, "measurand": "Power.Active.Import"},
                            {"value": 12000, "measurand": "Energy.Active.Import.Register"},
                        ],
                    }
                ],
                "evse": {"id": 1, "connectorId": 1},
            },
        ],
        [2, "n1", "NotifyEvent", {"generatedAt": t, "seqNo": 0, "eventData": []}],
        [3, "r1", {"status": "Accepted"}],
    ]
    return {"1.6": v16, "2.0.1": v201}


async def ocpp_connection(
    central: CentralSystem,
    url: str,
    charger_id: str,
    rng: Random,
    mutator: JsonMutator,
    seeds: dict[str, list[list]],
    report: Report,
) -> None:
    version = rng.choice(("1.6", "2.0.1"))
    own = seeds[version]
    everything = own + seeds["2.0.1" if version == "1.6" else "1.6"]
    deadline = time.monotonic() + 30
    while charger_id in central.links and time.monotonic() < deadline:  # its last connection still winding down
        await asyncio.sleep(0.01)
    token = base64.b64encode(f"{charger_id}:pw".encode()).decode()
    try:
        ws = await connect(
            f"{url}/{charger_id}",
            subprotocols=[Subprotocol(f"ocpp{version}")],
            additional_headers={"Authorization": f"Basic {token}"},
            max_size=None,
            open_timeout=10,
        )
    except InvalidStatus as exc:  # 409 while the server still holds this id's last connection
        report.outcomes[f"refused {exc.response.status_code}"] += 1
        await asyncio.sleep(0.05)
        return

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    reader = asyncio.create_task(drain())
    try:
        for _ in range(FRAMES_PER_CONNECTION):
            seed = rng.choice(own if rng.random() < 0.85 else everything)
            kind, frame = mutator.mutate(seed, everything)
            report.inputs += 1
            report.kinds[f"{version}:{kind}"] += 1
            await ws.send(frame)
        await ws.send(json.dumps([2, "last", "Heartbeat", {}]))
        await ws.close()
        report.outcomes["closed by us"] += 1
    except ConnectionClosed as exc:
        report.outcomes[f"closed by server {exc.rcvd.code if exc.rcvd else 'no close frame'}"] += 1
    except Exception as exc:  # noqa: BLE001
        report.crash(f"ocpp client: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await ws.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def ocpp_target(inputs: int, seed: int) -> Report:
    report = Report("ocpp_central")
    rng = Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        config, _, runtime, _ = depot_node(Path(folder))
        ids = [c.id for c in config.site.chargers]
        central = CentralSystem(runtime, {i: "pw" for i in ids}, {i: 11000.0 for i in ids}, response_timeout=1.0)
        port = await central.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/ocpp"
        keeper, keeper_task = await connect_charge_point(url, ids[0], "pw", 22.0)
        await keeper.boot()
        mutator, seeds = JsonMutator(rng), ocpp_seeds()
        pool = ids[1:]
        warm_at = max(400, inputs // 10)
        started = time.perf_counter()
        try:
            while report.inputs < inputs:
                await asyncio.gather(*(ocpp_connection(central, url, cid, rng, mutator, seeds, report) for cid in pool))
                try:
                    await asyncio.wait_for(keeper.call(call.Heartbeat()), 10)
                except Exception as exc:  # noqa: BLE001
                    report.other_session_alive = False
                    report.crash(f"keeper heartbeat: {type(exc).__name__}: {exc}")
                    break
                if ids[0] not in central.links:
                    report.other_session_alive = False
                    report.crash("the keeper's link is gone from the central system")
                    break
                if not report.rss_warm_kb and report.inputs >= warm_at:
                    report.rss_warm_kb = rss_kb()
            report.seconds = time.perf_counter() - started
            report.rss_end_kb = rss_kb()
            report.server_up = central.server is not None and central.server.is_serving()
        finally:
            await disconnect(keeper, keeper_task)
            await central.stop()
            runtime.close()
    return report


# -- SunSpec --------------------------------------------------------------------------------

BEHAVIOURS = (
    ("image", 30),
    ("mutated_image", 20),
    ("garbage_registers", 10),
    ("exception", 10),
    ("short_read", 8),
    ("long_read", 3),
    ("byte_count", 4),
    ("wrong_function", 3),
    ("random_pdu", 4),
    ("bad_header", 2),
    ("close", 2),
    ("half_frame", 0.3),
    ("silence", 0.3),
)


class GarbageModbus:
    """A Modbus TCP server that answers each request as `rng` picks from BEHAVIOURS."""

    def __init__(self, rng: Random, image: list[int], report: Report) -> None:
        self.rng, self.image, self.report = rng, image, report
        self.names = [n for n, _ in BEHAVIOURS]
        self.weights = [w for _, w in BEHAVIOURS]
        self.server: asyncio.Server | None = None
        self.open: dict[asyncio.Task, asyncio.StreamWriter] = {}

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task, writer in list(self.open.items()):  # connections a client left open end with the server
            writer.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.server is not None:
            await self.server.wait_closed()

    def _registers(self, address: int, count: int) -> list[int]:
        at = address - BASE
        return [self.image[at + i] if 0 <= at + i < len(self.image) else 0 for i in range(count)]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        r = self.rng
        me = asyncio.current_task()
        if me is not None:
            self.open[me] = writer
        try:
            while True:
                header = await reader.readexactly(7)
                tid, pid, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                fc = pdu[0]
                address, count = struct.unpack(">HH", pdu[1:5])
                kind = r.choices(self.names, self.weights)[0]
                self.report.inputs += 1
                self.report.kinds[kind] += 1
                if fc == 16 and kind in ("image", "mutated_image", "garbage_registers"):
                    body = struct.pack(">BHH", 16, address, count)
                elif kind in ("image", "mutated_image", "garbage_registers", "short_read", "long_read"):
                    regs = self._registers(address, count)
                    if kind == "mutated_image":
                        for _ in range(r.randint(1, 3)):
                            regs[r.randrange(len(regs))] = r.choice((0, 0x8000, 0xFFFF, 0x7FFF, r.getrandbits(16)))
                    elif kind == "garbage_registers":
                        regs = [r.getrandbits(16) for _ in regs]
                    elif kind == "short_read":
                        regs = regs[: r.randrange(len(regs))]
                    elif kind == "long_read":
                        regs = regs + [r.getrandbits(16) for _ in range(r.randint(1, 5))]
                    body = struct.pack(">BB", fc, 2 * len(regs)) + b"".join(struct.pack(">H", x) for x in regs)
                elif kind == "exception":
                    body = struct.pack(">BB", fc | 0x80, r.choice((1, 2, 3, 4, 6, 10, 11, 0, 255)))
                elif kind == "byte_count":
                    body = struct.pack(">BB", fc, r.randrange(256)) + r.randbytes(r.randrange(0, 2 * count + 4))
                elif kind == "wrong_function":
                    body = struct.pack(">BB", r.choice((1, 2, 4, 6, 15, 17, 43, 99)), 2) + b"\x00\x01"
                elif kind == "random_pdu":
                    body = r.randbytes(r.randint(1, 40))
                elif kind == "bad_header":
                    body = r.randbytes(4)
                    tid, pid = r.choice(((tid ^ 1, pid), (tid, 7), (tid, pid)))
                    writer.write(struct.pack(">HHHB", tid, pid, r.choice((0, 1, 300, 65535)), unit) + body)
                    await writer.drain()
                    continue
                elif kind == "close":
                    break
                elif kind == "half_frame":
                    writer.write(struct.pack(">HHHB", tid, 0, 40, unit) + b"\x03\x10")
                    await writer.drain()
                    continue
                else:  # silence
                    continue
                writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, struct.error, IndexError):
            pass
        finally:
            if me is not None:
                self.open.pop(me, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class MonitoredBattery:
    """The node's side of a monitor, reduced to the battery's state machine."""

    def __init__(self) -> None:
        self.state = "UNAVAILABLE"
        self.states: dict[str, int] = {}

    def record_battery(self, soc_kwh: float, at: datetime) -> None:
        pass

    def battery_state(self) -> str:
        return self.state

    def fire(self, asset_id: str, trigger: str) -> object:
        self.state = {
            "disable": "UNAVAILABLE",
            "enable": "IDLE",
            "fault": "FAULTED",
            "reset": "IDLE",
            "charge": "CHARGING",
            "discharge": "DISCHARGING",
            "stop": "IDLE",
        }[trigger]
        self.states[self.state] = self.states.get(self.state, 0) + 1
        return None


async def sunspec_target(inputs: int, seed: int) -> Report:
    report = Report("sunspec_adapter")
    rng = Random(seed)
    real = SunSpecBatterySim(BatterySpec(capacity_kwh=200, max_kw=100))
    real_port = await real.start()
    other = SunSpecBattery("127.0.0.1", real_port, AssetRating("battery", "battery", 100, 100))
    images = [list(real.regs), list(SunSpecBatterySim(BatterySpec(), control=704).regs)]
    servers = [GarbageModbus(rng, image, report) for image in images]
    ports = [await s.start() for s in servers]
    node = MonitoredBattery()
    warm_at = max(400, inputs // 10)
    started = time.perf_counter()
    k = 0
    try:
        while report.inputs < inputs:
            port = ports[k % 2]
            adapter = SunSpecBattery(
                "127.0.0.1", port, AssetRating("battery", "battery", 100, 100), timeout_seconds=0.1
            )
            monitor = BatteryMonitor(adapter, node, _Clock(), "battery")
            try:
                for _ in range(50):
                    k += 1
                    adapter._retry_at = 0.0  # noqa: SLF001 - no reconnect backoff: the next input now
                    try:
                        if k % 3 == 0:
                            value = rng.choice((0.0, 5.0, 50.0, 1e9, -3.0))
                            kind = rng.choice((CommandType.SET_CHARGE_RATE, CommandType.SET_DISCHARGE_RATE))
                            await adapter.execute(Command.new("fuzz", "battery", kind, value, datetime.now(UTC)))
                        else:
                            monitor.stale_after = _tiny
                            await monitor.poll()
                        report.outcomes["ok"] += 1
                    except AdapterError:
                        report.outcomes["AdapterError"] += 1
                    except Exception as exc:  # noqa: BLE001 - what the fuzz is after
                        report.crash(f"{type(exc).__name__}: {exc}")
                        report.outcomes[f"escaped {type(exc).__name__}"] += 1
            finally:
                await adapter.close()
            try:
                await other.ensure_connected()
                await other.status()
            except Exception as exc:  # noqa: BLE001
                report.other_session_alive = False
                report.crash(f"the real battery's adapter failed: {type(exc).__name__}: {exc}")
            if not report.rss_warm_kb and report.inputs >= warm_at:
                report.rss_warm_kb = rss_kb()
        report.seconds = time.perf_counter() - started
        report.rss_end_kb = rss_kb()
        report.outcomes.update({f"state {s}": n for s, n in node.states.items()})
        report.server_up = all(s.server is not None and s.server.is_serving() for s in servers)
    finally:
        await other.close()
        for s in servers:
            await s.stop()
        await real.stop()
    return report


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


_tiny = timedelta(seconds=0.05)  # a failed poll makes the battery stale at once
