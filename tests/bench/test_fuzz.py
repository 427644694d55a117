"""The fuzzer's short form: a few hundred malformed inputs per target, in this process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def fuzz():  # noqa: ANN201 - the bench modules, importable as the bench runs them
    sys.path.insert(0, str(BENCH))
    import benchpath  # noqa: F401
    import fuzz_devices
    import fuzz_grpc

    yield fuzz_grpc, fuzz_devices
    sys.path.remove(str(BENCH))


def check(report) -> None:  # noqa: ANN001
    assert report.crashes == 0, report.notes
    assert report.server_up and report.other_session_alive, report.as_dict()
    assert report.inputs >= 200


async def test_sitenode_grpc_survives_garbage(fuzz):
    check(await fuzz[0].sitenode_target(400, 7))


async def test_portfolio_grpc_and_link_survive_garbage(fuzz):
    check(await fuzz[0].portfolio_target(400, 7))


async def test_ocpp_central_survives_garbage_frames(fuzz):
    check(await fuzz[1].ocpp_target(200, 7))


async def test_sunspec_adapter_turns_garbage_into_device_errors(fuzz):
    check(await fuzz[1].sunspec_target(300, 7))


def test_fuzz_script_starts():
    import subprocess

    done = subprocess.run(
        [sys.executable, str(BENCH / "fuzz.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr and "--out" in done.stdout


# -- what the fuzzer found, pinned -----------------------------------------------------------


def test_a_timestamp_past_year_9999_is_invalid_input_naming_the_field():
    from google.protobuf.timestamp_pb2 import Timestamp

    from services.convert import session_in
    from services.portfolio_convert import check_telemetry
    from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2
    from sitenode.errors import InvalidInput

    with pytest.raises(InvalidInput) as exc:
        session_in(common_pb2.EVSession(session_id="x", arrival=Timestamp(seconds=2**40), energy_kwh=1, max_kw=1))
    assert exc.value.violations[0].field == "session.arrival"
    # a telemetry point the store cannot write is refused on the stream, not kept to fail every write after it
    with pytest.raises(InvalidInput) as exc:
        check_telemetry(portfolio_pb2.TelemetryPoint(seq=1, at=Timestamp(seconds=2**40)), 0)
    assert exc.value.violations[0].field == "telemetry.points[0].at"


async def test_short_reads_and_wild_scale_factors_are_device_errors():
    from types import SimpleNamespace

    from sitenode.devices.modbus_battery import SunSpecBattery
    from sitenode.dispatch import AdapterError, AssetRating

    battery = SunSpecBattery("127.0.0.1", 1, AssetRating("battery", "battery", 10, 10))

    async def short(address: int, count: int, device_id: int) -> SimpleNamespace:
        return SimpleNamespace(isError=lambda: False, registers=[1] * (count - 1))

    battery.client.read_holding_registers = short  # type: ignore[method-assign]
    with pytest.raises(AdapterError, match="asked for 2"):
        await battery.scan()
    with pytest.raises(AdapterError, match="outside -10..10"):
        battery._sf({"W_SF": 400}, "W_SF")
    assert battery._sf({"W_SF": -2}, "W_SF") == -2
    await battery.close()
