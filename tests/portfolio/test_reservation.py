"""A feeder's cap less the shares its absent members hold: what the sites in a solve may use.

A member whose link is down is left out of the solve, but its node keeps planning within the
import-limit share of the schedule it last acked; the solve keeps that share out of the cap
(`reserved_for_absent` -> `feeder_coupling`'s ``reserved_kw``), in both solvers.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from factories.problems import START
from test_coupled import TOL, net_import, portfolio

from portfolio.coupled import HeldShare, MonolithicSolver, feeder_coupling, reserved_for_absent
from portfolio.decomposition import FALLBACK, METHOD, DecompositionSolver
from portfolio.model import Feeder
from sitenode.errors import InvalidInput
from sitenode.optimizer.lexicographic import OVER

CAP = 50.0


def index(steps: int = 6) -> pd.DatetimeIndex:
    return pd.date_range(START, periods=steps, freq="1h")


def share(values: tuple[float, ...], offset_hours: float = 0.0, step_minutes: int = 60) -> HeldShare:
    return HeldShare((START + timedelta(hours=offset_hours)).to_pydatetime(), step_minutes, values)


def test_a_held_share_reads_like_the_nodes_import_limit():
    # steps before its start take its first value, steps past its end its last (as ImportLimit.over)
    held = share((10.0, 20.0, 30.0), offset_hours=1)
    assert held.over(index()).tolist() == [10.0, 10.0, 20.0, 30.0, 30.0, 30.0]
    quarter = share((4.0, 8.0), step_minutes=15)  # finer steps than the solve's: read at each step's start
    assert quarter.over(index(3)).tolist() == [4.0, 8.0, 8.0]
    from sitenode.runtime import ImportLimit

    limit = ImportLimit(held.start, held.step_minutes, held.values_kw)
    np.testing.assert_array_equal(held.over(index()), limit.over(index()))


def test_reservations_sum_the_absent_members_shares_per_feeder():
    feeders = [
        Feeder(feeder_id="f1", site_ids=["a", "x", "y", "new"], cap_kw=CAP),
        Feeder(feeder_id="f2", site_ids=["x", "b"], cap_kw=CAP),
        Feeder(feeder_id="all-here", site_ids=["a", "b"], cap_kw=CAP),
        Feeder(feeder_id="unlimited", site_ids=["a", "z"], cap_kw=CAP),
    ]
    held = {
        "x": share((5.0, 5.0, 7.0)),
        "y": share((1.0,), offset_hours=2),
        "a": share((99.0,)),  # present: its share is this solve's to give again
        "z": share((np.inf, 3.0)),  # no limit at a step: nothing to reserve there
    }
    # "new" never acked a schedule: it holds no share from the portfolio and is reserved nothing
    out = reserved_for_absent(feeders, {"a", "b"}, held, index())
    assert set(out) == {"f1", "f2", "unlimited"}  # a feeder with nothing reserved is left out
    assert out["f1"].tolist() == [6.0, 6.0, 8.0, 8.0, 8.0, 8.0]
    assert out["f2"].tolist() == [5.0, 5.0, 7.0, 7.0, 7.0, 7.0]  # a member of two feeders counts in both
    assert out["unlimited"].tolist() == [0.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    assert reserved_for_absent(feeders, {"a", "b"}, {}, index()) == {}


def test_the_feeder_row_is_bound_by_the_cap_less_the_reservation_never_clipped():
    problems = portfolio()
    feeder = Feeder(feeder_id="f", site_ids=["a", "b", "zz"], caps_kw=[50, 40])
    plain = feeder_coupling(feeder, problems, 6)
    assert plain.site_ids == ("a", "b") and plain.reserved is None
    reserved = np.array([10.0, 10.0, 45.0, 0.0, 0.0, 60.0])
    row = feeder_coupling(feeder, problems, 6, reserved)
    assert row.bound.tolist() == [40.0, 30.0, -5.0, 40.0, 40.0, -20.0]
    np.testing.assert_array_equal(row.reserved, reserved)
    for bad in (np.zeros(5), np.array([1.0, -1, 0, 0, 0, 0]), np.array([np.nan] * 6)):
        with pytest.raises(InvalidInput) as err:
            feeder_coupling(feeder, problems, 6, bad)
        assert err.value.violations[0].field == "reserved_kw"


@pytest.fixture(scope="module")
def solver() -> MonolithicSolver:
    return MonolithicSolver(time_limit_seconds=20)


# "zz" is away and holds 10 kW, then 5: the three present sites (61 and 93 kW alone in the
# first hours) get 60 kW of the feeder's 70 there
WIDE = 70.0
RESERVED = np.array([10.0, 10.0, 5.0, 5.0, 5.0, 5.0])
FEEDER = Feeder(feeder_id="f", site_ids=["a", "b", "c", "zz"], cap_kw=WIDE)


@pytest.mark.parametrize("method", ["monolithic", METHOD])
def test_the_present_sites_plan_within_the_cap_less_what_the_absent_member_holds(
    solver: MonolithicSolver, method: str
) -> None:
    # the decomposition (its workers in this process) builds its feeder rows with the same reservation
    coupled = (
        solver
        if method == "monolithic"
        else DecompositionSolver(use_ray=False, workers=1, time_limit_seconds=60, monolithic=solver)
    )
    present = ["a", "b", "c"]
    free = coupled.solve(portfolio(), [FEEDER], [])
    assert (net_import(free, present)[:2] > WIDE - RESERVED[:2] + 1).all()  # the whole cap is used then
    assert free.feeders[0].reserved_kw == 0
    plan = coupled.solve(portfolio(), [FEEDER], [], reserved_kw={"f": RESERVED})
    assert plan.method == method and plan.relaxed == ()
    net = net_import(plan, present)
    assert (net <= WIDE - RESERVED + TOL).all()
    assert (net[:2] >= WIDE - RESERVED[:2] - 1e-4).all()  # it binds where the whole cap was used
    (check,) = plan.feeders
    assert check.holds and check.reserved_kw == pytest.approx(10.0) and check.binding_steps >= 2
    # the shares handed to the present sites leave the absent member's share free
    assert (sum(plan.sites[s].import_share_kw for s in present) <= WIDE - RESERVED + TOL).all()


def test_a_reservation_beyond_the_cap_is_relaxed_as_overflow_and_reported(solver: MonolithicSolver) -> None:
    reserved = np.full(6, CAP + 10)
    tight = Feeder(feeder_id="f", site_ids=["a", "b", "c", "zz"], cap_kw=CAP)
    for s in (solver, DecompositionSolver(use_ray=False, workers=1, time_limit_seconds=60, monolithic=solver)):
        plan = s.solve(portfolio(), [tight], [], reserved_kw={"f": reserved})
        assert OVER in plan.relaxed and not plan.all_hold
        (check,) = plan.feeders
        net = net_import(plan, ["a", "b", "c"])
        assert not check.holds and check.max_excess_kw == pytest.approx((net + 10).max())
        assert check.reserved_kw == pytest.approx(CAP + 10)
        assert plan.method in ("monolithic", FALLBACK)
