import pandas as pd
import pytest

from sitenode.dispatch import AssetMap, AssetRating, CommandType, clamp, commands_from_schedule
from sitenode.dispatch.commands import Command
from sitenode.schedule import CHARGE, DISCHARGE

INDEX = pd.date_range("2025-01-15T00:00Z", periods=4, freq="15min")
RATINGS = {"bat": AssetRating("bat", "battery", 50, 40), "cp-1": AssetRating("cp-1", "charger", 22)}


def schedule() -> pd.DataFrame:
    return pd.DataFrame(
        {
            CHARGE: [10.0, 10.0, 0.0, 0.0],
            DISCHARGE: [0.0, 0.0, 0.0, 30.0],
            "ev_a_kw": [7.0, 7.0, 7.0, 0.0],
            "ev_b_kw": [0.0, 11.0, 11.0, 11.0],
        },
        index=INDEX,
    )


def test_only_changes_become_commands_and_sessions_add_up_per_charger():
    cmds = commands_from_schedule(schedule(), "v1", AssetMap("bat", {"a": "cp-1", "b": "cp-1"}), RATINGS)
    got = [(c.due_at.minute, c.asset_id, c.type, c.value_kw) for c in cmds]
    assert got == [
        (0, "bat", CommandType.SET_CHARGE_RATE, 10.0),
        (0, "bat", CommandType.SET_DISCHARGE_RATE, 0.0),
        (0, "cp-1", CommandType.SET_CHARGE_RATE, 7.0),
        (15, "cp-1", CommandType.SET_CHARGE_RATE, 18.0),
        (30, "bat", CommandType.SET_CHARGE_RATE, 0.0),
        (45, "bat", CommandType.SET_DISCHARGE_RATE, 30.0),
        (45, "cp-1", CommandType.SET_CHARGE_RATE, 11.0),
    ]


def test_a_replan_repeats_nothing_the_devices_already_hold():
    assets = AssetMap("bat", {"a": "cp-1"})
    first = commands_from_schedule(schedule(), "v1", assets, RATINGS)
    last = {(c.asset_id, c.type): c.value_kw for c in first if c.due_at == INDEX[0]}
    again = commands_from_schedule(schedule(), "v2", assets, RATINGS, last_sent=last)
    assert all(c.due_at > INDEX[0] for c in again)


def test_ids_are_stable_and_setpoints_clamped_to_ratings():
    big = schedule()
    big[DISCHARGE] = [0, 0, 0, 90.0]
    a = commands_from_schedule(big, "v1", AssetMap("bat"), RATINGS)
    b = commands_from_schedule(big, "v1", AssetMap("bat"), RATINGS)
    assert [c.id for c in a] == [c.id for c in b] and len({c.id for c in a}) == len(a)
    assert max(c.value_kw for c in a if c.type is CommandType.SET_DISCHARGE_RATE) == 40.0
    unknown = Command.new("m", "ghost", CommandType.SET_CHARGE_RATE, 5.0, INDEX[0])
    assert clamp(unknown, None).value_kw == 0.0
    negative = Command.new("m", "cp-1", CommandType.SET_CHARGE_RATE, -3.0, INDEX[0])
    assert clamp(negative, RATINGS["cp-1"]).value_kw == pytest.approx(0.0)
