from datetime import UTC, datetime, timedelta

from sitenode.simulators.session_player import PlannedSession, SessionPlayer

T0 = datetime(2025, 1, 15, 18, tzinfo=UTC)


def s(sid, a, d, charger=None):
    return PlannedSession(sid, T0 + timedelta(hours=a), T0 + timedelta(hours=d), 11.0, charger)


def test_sessions_arrive_on_free_chargers_and_leave():
    player = SessionPlayer([s("a", 0, 2), s("b", 1, 3, "cp-2"), s("c", 1, 4), s("d", 2.5, 5)], ["cp-1", "cp-2"])
    arrivals, departures = player.step(T0)
    assert [(c, x.session_id) for c, x in arrivals] == [("cp-1", "a")] and departures == []
    arrivals, _ = player.step(T0 + timedelta(hours=1))
    assert [(c, x.session_id) for c, x in arrivals] == [("cp-2", "b")]  # c waits: no charger free
    arrivals, departures = player.step(T0 + timedelta(hours=2))
    assert departures == ["cp-1"] and [(c, x.session_id) for c, x in arrivals] == [("cp-1", "c")]
    arrivals, departures = player.step(T0 + timedelta(hours=3))
    assert departures == ["cp-2"] and [(c, x.session_id) for c, x in arrivals] == [("cp-2", "d")]
    assert player.step(T0 + timedelta(hours=10)) == ([], ["cp-1", "cp-2"])
