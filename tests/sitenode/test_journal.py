import sqlite3
from datetime import UTC, datetime

import pandas as pd

from sitenode.dispatch import Command, CommandState, CommandType
from sitenode.journal import Journal
from sitenode.model.sessions import EVSession

T0 = datetime(2025, 1, 15, tzinfo=UTC)


def test_durability_settings(tmp_path):
    Journal(tmp_path / "j.db").close()
    db = sqlite3.connect(tmp_path / "j.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    journal = Journal(tmp_path / "j.db")
    assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_schedules_keep_version_source_and_frame(tmp_path):
    journal = Journal(tmp_path / "j.db")
    assert journal.current_schedule() is None
    index = pd.date_range(T0, periods=3, freq="15min", name="timestamp")
    frame = pd.DataFrame({"grid_import_kw": [1.0, 2.0, 3.0]}, index=index)
    journal.save_schedule("v1", "local", frame, T0)
    journal.save_schedule("p7", "portfolio", frame * 2, T0)
    journal.close()
    current = Journal(tmp_path / "j.db").current_schedule()
    assert (current.version, current.source) == ("p7", "portfolio")
    assert current.frame["grid_import_kw"].tolist() == [2.0, 4.0, 6.0]
    assert current.valid_from == T0 and current.valid_until == T0 + pd.Timedelta(minutes=45)


def test_commands_and_last_setpoints(tmp_path):
    journal = Journal(tmp_path / "j.db")
    a = Command.new("v1", "cp-1", CommandType.SET_CHARGE_RATE, 7, T0)
    b = Command.new("v1", "cp-1", CommandType.SET_CHARGE_RATE, 9, T0.replace(minute=15))
    journal.save_commands([a.evolve(state=CommandState.COMPLETED), b])
    assert [c.id for c in journal.open_commands()] == [b.id]
    assert journal.last_setpoints() == {("cp-1", CommandType.SET_CHARGE_RATE): 7.0}
    assert journal.known_ids([a.id, "nope"]) == {a.id}


def test_last_setpoint_is_the_one_that_ran_last_not_the_latest_due(tmp_path):
    # two plans' commands for the same step: the newer plan's ran after the older one's, so
    # the device holds its value, whichever way the ids happen to sort
    journal = Journal(tmp_path / "j.db")
    for first, then in ((7.0, 0.0), (0.0, 7.0)):
        older = Command.new(f"plan-a{first}", "cp-1", CommandType.SET_CHARGE_RATE, first, T0)
        newer = Command.new(f"plan-b{then}", "cp-1", CommandType.SET_CHARGE_RATE, then, T0)
        journal.save_commands([older.evolve(state=CommandState.COMPLETED)])
        journal.save_commands([newer.evolve(state=CommandState.COMPLETED)])
        assert journal.last_setpoints() == {("cp-1", CommandType.SET_CHARGE_RATE): then}


def test_sessions_upsert_and_end(tmp_path):
    journal = Journal(tmp_path / "j.db")
    s = EVSession(session_id="ev-1", arrival=T0, departure=T0.replace(hour=8), energy_kwh=30, max_kw=11)
    journal.upsert_session(s)
    journal.upsert_session(s.model_copy(update={"energy_kwh": 40}))
    assert [x.energy_kwh for x in journal.sessions()] == [40]
    assert journal.end_session("ev-1") and not journal.end_session("ev-1")
    assert journal.sessions() == []
