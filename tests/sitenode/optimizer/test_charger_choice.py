"""The fleet charge scheduler's charger choice: one charger per session for its whole stay."""

from collections import defaultdict

import pytest
from factories.problems import make_problem

from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import check_schedule, ev_column

AC_DC = [{"id": f"ac{i}", "max_kw": 11, "kind": "ac"} for i in range(3)] + [{"id": f"dc{i}", "max_kw": 50, "kind": "dc"} for i in range(2)]


def overlapping(a, b) -> bool:
    return a.first < b.stop and b.first < a.stop


def test_each_session_gets_one_charger_and_no_charger_is_shared_at_once():
    # 6 sessions, 5 chargers; two need DC power to finish in their short stays
    sessions = [
        {"session_id": "fast1", "arrival": 0, "departure": 2, "energy_kwh": 80, "max_kw": 50},
        {"session_id": "fast2", "arrival": 1, "departure": 3, "energy_kwh": 80, "max_kw": 50},
        {"session_id": "slow1", "arrival": 0, "departure": 8, "energy_kwh": 40, "max_kw": 11},
        {"session_id": "slow2", "arrival": 0, "departure": 8, "energy_kwh": 40, "max_kw": 11},
        {"session_id": "slow3", "arrival": 2, "departure": 8, "energy_kwh": 30, "max_kw": 11},
        {"session_id": "slow4", "arrival": 4, "departure": 8, "energy_kwh": 20, "max_kw": 22},
    ]
    p = make_problem({"chargers": AC_DC}, load=[0] * 8, prices=[0.3, 0.3, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2], sessions=sessions)
    plan = optimize_site(p)
    assert plan.result.num_integer > 0
    assert plan.result.gap <= p.solver.mip_rel_gap
    assert plan.relaxation.ev_shortfall_kwh == pytest.approx(0, abs=1e-6)
    assert check_schedule(p, plan.schedule) == []
    assignment = plan.charger_assignment
    assert set(assignment) == {w.session_id for w in p.sessions}
    assert assignment["fast1"].startswith("dc") and assignment["fast2"].startswith("dc")
    by_charger = defaultdict(list)
    for w in p.sessions:
        by_charger[assignment[w.session_id]].append(w)
        charger = next(c for c in AC_DC if c["id"] == assignment[w.session_id])
        assert plan.schedule[ev_column(w.session_id)].max() <= charger["max_kw"] + 1e-6
    for windows in by_charger.values():
        for i, a in enumerate(windows):
            for b in windows[i + 1 :]:
                assert not overlapping(a, b), (a.session_id, b.session_id)


def test_more_sessions_than_chargers_leaves_the_least_urgent_short():
    # one DC charger, two sessions present at once: the priority-1 session gets it
    chargers = [{"id": "dc0", "max_kw": 50, "kind": "dc"}, {"id": "ac0", "max_kw": 11, "kind": "ac"}]
    sessions = [
        {"session_id": "a", "arrival": 0, "departure": 2, "energy_kwh": 100, "max_kw": 50, "priority": 1},
        {"session_id": "b", "arrival": 0, "departure": 2, "energy_kwh": 100, "max_kw": 50, "priority": 3},
        {"session_id": "c", "arrival": 0, "departure": 2, "energy_kwh": 100, "max_kw": 50, "priority": 2},
    ]
    p = make_problem({"chargers": chargers}, load=[0, 0], sessions=sessions)
    plan = optimize_site(p)
    short = plan.relaxation.shortfall_by_session
    assert short["a"] == pytest.approx(0, abs=1e-6)
    assert plan.charger_assignment["a"] == "dc0"
    assert plan.charger_assignment["c"] == "ac0" and short["c"] == pytest.approx(100 - 22)
    assert "b" not in plan.charger_assignment and short["b"] == pytest.approx(100)


def test_one_kind_with_enough_chargers_needs_no_binaries():
    chargers = [{"id": f"ac{i}", "max_kw": 22, "kind": "ac"} for i in range(3)]
    sessions = [{"session_id": f"s{i}", "arrival": i, "departure": i + 4, "energy_kwh": 20, "max_kw": 22} for i in range(3)]
    p = make_problem({"chargers": chargers}, load=[0] * 8, sessions=sessions)
    plan = optimize_site(p)
    assert plan.result.num_integer == 0
    assert sorted(plan.charger_assignment.values()) == ["ac0", "ac1", "ac2"]


def test_named_chargers_share_their_rating_and_circuits_hold():
    chargers = [{"id": "a", "max_kw": 22}, {"id": "b", "max_kw": 22}]
    sessions = [
        {"session_id": "x", "arrival": 0, "departure": 2, "energy_kwh": 40, "max_kw": 22, "charger_id": "a"},
        {"session_id": "y", "arrival": 0, "departure": 2, "energy_kwh": 40, "max_kw": 22, "charger_id": "a"},
        {"session_id": "z", "arrival": 0, "departure": 2, "energy_kwh": 40, "max_kw": 22, "charger_id": "b"},
    ]
    circuits = [{"id": "panel", "max_kw": 30, "members": ["a", "b"]}]
    p = make_problem({"chargers": chargers, "circuits": circuits}, load=[0, 0], sessions=sessions)
    plan = optimize_site(p)
    s = plan.schedule
    assert check_schedule(p, s, assignment=plan.charger_assignment) == []
    broken = s.copy()
    broken[ev_column("z")] += 5.0  # over the panel's 30 kW wherever z charged
    assert any("circuit panel" in v for v in check_schedule(p, broken, limits=False, assignment=plan.charger_assignment))
    on_a = s[ev_column("x")] + s[ev_column("y")]
    assert (on_a <= 22 + 1e-6).all()
    assert ((on_a + s[ev_column("z")]) <= 30 + 1e-6).all()
    assert (on_a + s[ev_column("z")]).sum() == pytest.approx(60)
