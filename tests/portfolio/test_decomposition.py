"""The decomposed coupled solve against the monolithic one, on random coupled portfolios.

Every claim is read off the extracted per-site schedules (what the nodes would dispatch):
the coupling rows, each site's own rules, and the objective against the monolithic optimum.

The solver runs on the session's one Ray (tests/conftest.py's `ray_session`). The fixtures
live here, not in a conftest.py: a tests/portfolio/conftest.py would shadow tests/conftest.py
for the modules that import helpers from it by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from factories.problems import START, make_problem

from portfolio.coupled import MonolithicSolver, PortfolioPlan
from portfolio.decomposition import (
    CHECK_KW,
    FALLBACK,
    METHOD,
    DecompositionSolver,
    Link,
    SiteBatch,
    _Block,
)
from portfolio.model import Feeder, FlexEvent, FlexKind
from portfolio.solvers import (
    MONOLITHIC_MAX_SITES,
    MONOLITHIC_MAX_SITES_PEAK,
    AutoSolver,
    SolverConfig,
    make_solver,
)
from sitenode.errors import InvalidInput
from sitenode.model.problem import SiteProblem
from sitenode.optimizer.formulation import add_site
from sitenode.optimizer.lexicographic import OVER, SHORTFALL
from sitenode.optimizer.lp import LinearProgram
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import GRID_EXPORT, GRID_IMPORT, check_schedule

STEPS = 24
GAP = 1e-3


@pytest.fixture(scope="session")
def decomposition(ray_session: None) -> Iterator[DecompositionSolver]:
    """The session's decomposition solver: its worker (one Ray actor) serves every test."""
    solver = DecompositionSolver(gap=GAP, time_limit_seconds=60, workers=1)
    yield solver
    solver.close()


# a day's import price: cheap at night, dear in the evening
TOU = np.array([0.08] * 7 + [0.18] * 9 + [0.32] * 4 + [0.18] * 4)


def hours(n: float) -> Any:
    return (START + timedelta(hours=n)).to_pydatetime()


def prices(rng: np.random.Generator) -> list[float]:
    return list(np.round(TOU * rng.uniform(0.9, 1.1) + rng.uniform(0, 0.01, STEPS), 4))


def office(rng: np.random.Generator) -> SiteProblem:
    """Day load, PV, a battery that would charge at night, sometimes a demand charge."""
    hour = np.arange(STEPS)
    load = np.round(rng.uniform(10, 30) * (0.5 + 0.5 * ((hour >= 8) & (hour < 18))) * rng.uniform(0.9, 1.1, STEPS), 2)
    pv = np.round(rng.uniform(0, 40) * np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None), 2)
    cap = float(rng.uniform(20, 80))
    site = {
        "grid": {"import_limit_kw": 150},
        "pv": {"curtailable": True},
        "battery": {
            "capacity_kwh": round(cap, 1),
            "soc_initial_kwh": round(cap * 0.2, 1),
            "max_charge_kw": round(cap / 2, 1),
            "max_discharge_kw": round(cap / 2, 1),
            "charge_efficiency": 0.95,
            "discharge_efficiency": 0.95,
        },
    }
    run: dict[str, Any] = {}
    if rng.random() < 0.5:
        run["tariff"] = {
            "demand_charges": [
                {
                    "rate_per_kw": round(float(rng.uniform(1, 8)), 2),
                    "schedule": {"start_time": "16:00", "end_time": "19:59"},
                }
            ]
        }
    return make_problem(site, list(load), list(pv), prices=prices(rng), export_prices=[0.04] * STEPS, run=run)


def depot(rng: np.random.Generator) -> SiteProblem:
    """Vans over night choosing among AC and DC chargers (two pools: a charger-choice MIP)."""
    chargers = [{"id": f"ac{i}", "max_kw": 11, "kind": "ac"} for i in range(3)] + [
        {"id": "dc0", "max_kw": 40, "kind": "dc"}
    ]
    sessions = []
    for i in range(int(rng.integers(3, 6))):
        arrive = int(rng.integers(0, 4)) if rng.random() < 0.5 else int(rng.integers(17, 21))
        leave = min(STEPS, arrive + int(rng.integers(4, 8)))
        sessions.append(
            {
                "session_id": f"v{i}",
                "arrival": arrive,
                "departure": leave,
                "energy_kwh": round(float(rng.uniform(10, 40)), 1),
                "max_kw": float(rng.choice([11.0, 22.0, 40.0])),
                "priority": int(rng.integers(1, 4)),
            }
        )
    load = np.round(rng.uniform(5, 12, STEPS), 2)
    return make_problem(
        {"grid": {"import_limit_kw": 120}, "chargers": chargers}, list(load), prices=prices(rng), sessions=sessions
    )


def home(rng: np.random.Generator) -> SiteProblem:
    """A small site: fixed load, maybe PV, one car on its own charger."""
    load = np.round(rng.uniform(1, 6, STEPS), 2)
    pv = np.round(rng.uniform(0, 8) * np.clip(np.sin((np.arange(STEPS) - 6) / 12 * np.pi), 0, None), 2)
    arrive = int(rng.integers(0, 20))
    session = {
        "session_id": "car",
        "arrival": arrive,
        "departure": min(STEPS, arrive + int(rng.integers(4, 10))),
        "energy_kwh": round(float(rng.uniform(5, 25)), 1),
        "max_kw": 7.0,
        "charger_id": "wb",
    }
    return make_problem(
        {
            "grid": {"import_limit_kw": 30},
            "pv": {"curtailable": False},
            "chargers": [{"id": "wb", "max_kw": 7.0, "kind": "ac"}],
        },
        list(load),
        list(pv),
        prices=prices(rng),
        export_prices=[0.03] * STEPS,
        sessions=[session],
    )


def net(schedule: Any) -> np.ndarray:
    return schedule[GRID_IMPORT].to_numpy() - schedule[GRID_EXPORT].to_numpy()


def random_portfolio(
    seed: int, sites: int, depots: int
) -> tuple[dict[str, SiteProblem], list[Feeder], list[FlexEvent]]:
    """`sites` sites (`depots` of them depots), two or three feeders whose caps bind, maybe flex events."""
    rng = np.random.default_rng(seed)
    kinds = ["depot"] * depots + [str(k) for k in rng.choice(["office", "home"], sites - depots)]
    build = {"depot": depot, "office": office, "home": home}
    problems = {f"{k}{i:02d}": build[k](rng) for i, k in enumerate(kinds)}
    alone = {sid: optimize_site(p).schedule for sid, p in problems.items()}
    ids = list(problems)
    rng.shuffle(ids)
    feeders = []
    for k, members in enumerate(np.array_split(np.array(ids), int(rng.integers(2, 4)))):
        total = sum(net(alone[s]) for s in members)
        cap = max(float(rng.uniform(0.6, 0.85)) * float(total.max()), 1.0)
        feeders.append(Feeder(feeder_id=f"f{k}", site_ids=[str(s) for s in members], cap_kw=round(cap, 1)))
    events = []
    if seed % 2:
        some = [str(s) for s in rng.choice(ids, max(2, sites // 3), replace=False)]
        window = sum(alone[s][GRID_IMPORT].to_numpy()[17:20] for s in some)
        events.append(
            FlexEvent(
                event_id="cap",
                kind=FlexKind.CAP_AT,
                kw=round(0.8 * float(window.max()), 1),
                start=hours(17),
                end=hours(20),
                site_ids=some,
            )
        )
        events.append(
            FlexEvent(event_id="dr", kind=FlexKind.REDUCE_BY, kw=2.0, start=hours(1), end=hours(3), site_ids=some[:2])
        )
    return problems, feeders, events


def cost_term(plan: PortfolioPlan) -> float:
    """The coupled "cost" term the solve minimized (Σ of the sites' weighted objectives)."""
    return next(iter(plan.sites.values())).plan.result.objective


def assert_plan_keeps_everything(
    problems: dict[str, SiteProblem], feeders: list[Feeder], events: list[FlexEvent], plan: PortfolioPlan
) -> None:
    frames = {sid: part.plan.schedule for sid, part in plan.sites.items()}
    for f in feeders:
        members = [s for s in f.site_ids if s in problems]
        excess = sum(net(frames[s]) for s in members) - np.array([f.cap_at(t) for t in range(STEPS)])
        assert excess.max() <= CHECK_KW, (f.feeder_id, excess.max())
    for e in events:
        window = np.flatnonzero([e.covers(t.to_pydatetime()) for t in plan.index])
        members = e.site_ids or list(problems)
        got = sum(frames[s][GRID_IMPORT].to_numpy()[window] for s in members)
        if e.kind is FlexKind.CAP_AT:
            bound = np.full(len(window), e.kw)
        else:
            bound = sum(optimize_site(problems[s]).schedule[GRID_IMPORT].to_numpy()[window] for s in members) - e.kw
        assert (got - bound).max() <= CHECK_KW, (e.event_id, (got - bound).max())
    assert plan.all_hold
    for sid, problem in problems.items():
        part = plan.sites[sid].plan
        floors = SHORTFALL not in part.relaxation.stages  # a floor or final SOC given way is reported there
        assert check_schedule(problem, part.schedule, assignment=part.charger_assignment, floors=floors) == [], sid


@pytest.mark.parametrize(
    ("seed", "sites", "depots"), [(1, 5, 1), (2, 8, 0), (3, 12, 2), (4, 16, 1), (5, 20, 2), (6, 10, 3)]
)
def test_random_portfolios_reach_the_monolithic_optimum_within_the_gap(
    decomposition: DecompositionSolver, seed: int, sites: int, depots: int
) -> None:
    problems, feeders, events = random_portfolio(seed, sites, depots)
    mono = MonolithicSolver(time_limit_seconds=60).solve(problems, feeders, events)
    plan = decomposition.solve(problems, feeders, events)
    if mono.relaxed:  # not servable as asked: the relaxation order is the monolithic solve's
        assert plan.method == FALLBACK and plan.relaxed == mono.relaxed
        return
    assert plan.method == METHOD, decomposition.stats.fallback_reason
    optimum = cost_term(mono)
    # the monolithic solve itself stops at its MIP gap: its bound is where the optimum may lie
    assert plan.bound <= optimum + 1e-6 * abs(optimum)  # a certified bound never passes the optimum
    assert cost_term(plan) >= mono.bound - 1e-6 * abs(optimum)  # a feasible plan never beats it
    assert (cost_term(plan) - optimum) / abs(optimum) <= GAP + mono.gap
    # the bound is certified: an LP portfolio reaches the gap; a depot's charger choice may leave
    # more (its bound comes from the relaxation), and the status says so
    assert plan.status == ("optimal" if plan.gap <= GAP else "time_limit") and plan.relaxed == ()
    assert plan.gap <= GAP or depots
    assert plan.gap == pytest.approx((cost_term(plan) - plan.bound) / abs(cost_term(plan)), abs=1e-12)
    assert plan.iterations >= 1 and decomposition.stats.max_coupling_violation_kw <= CHECK_KW
    assert plan.objective == pytest.approx(sum(s.coupled_cost for s in plan.sites.values()))
    assert plan.alone_objective == pytest.approx(mono.alone_objective, rel=1e-9)
    assert_plan_keeps_everything(problems, feeders, events, plan)


def test_the_depots_are_charger_choice_mips() -> None:
    lp = LinearProgram()
    add_site(lp, depot(np.random.default_rng(1)))
    assert lp.matrix().integrality.any()


def test_caps_that_bind_are_priced_into_the_plan(decomposition: DecompositionSolver) -> None:
    problems, feeders, _ = random_portfolio(7, 10, 2)
    tight = [Feeder(feeder_id=f.feeder_id, site_ids=f.site_ids, cap_kw=round(0.9 * f.cap_kw, 1)) for f in feeders]
    plan = decomposition.solve(problems, tight, [])
    assert plan.method == METHOD and plan.iterations > 1
    assert plan.coupling_cost > 0  # the caps cost something...
    assert sum(c.binding_steps for c in plan.feeders) > 0  # ...and the plan runs at them
    assert decomposition.stats.resolved_sites > 0
    assert_plan_keeps_everything(problems, tight, [], plan)


def test_caps_that_do_not_bind_leave_every_site_at_its_own_optimum(decomposition: DecompositionSolver) -> None:
    problems, feeders, _ = random_portfolio(8, 6, 1)
    loose = [Feeder(feeder_id=f.feeder_id, site_ids=f.site_ids, cap_kw=10_000) for f in feeders]
    plan = decomposition.solve(problems, loose, [])
    assert plan.method == METHOD and plan.iterations == 1 and decomposition.stats.resolved_sites == 0
    assert abs(plan.coupling_cost) <= 1e-6 * abs(plan.alone_objective)
    for sid, problem in problems.items():
        alone = optimize_site(problem).schedule
        np.testing.assert_allclose(plan.sites[sid].plan.schedule.to_numpy(), alone.to_numpy(), atol=1e-9)


def test_an_impossible_cap_goes_to_the_monolithic_solve_and_is_relaxed(decomposition: DecompositionSolver) -> None:
    problems, feeders, _ = random_portfolio(9, 6, 1)
    tiny = [Feeder(feeder_id="tiny", site_ids=list(problems), cap_kw=1.0)]
    plan = decomposition.solve(problems, tiny, [])
    assert plan.method == FALLBACK and OVER in plan.relaxed and not plan.all_hold
    assert "coupling rows" in decomposition.stats.fallback_reason


def test_a_site_alone_in_no_coupling_keeps_its_own_relaxation(decomposition: DecompositionSolver) -> None:
    problems, feeders, _ = random_portfolio(10, 6, 1)
    # a car that cannot get its energy before it leaves: EV shortfall, in a site no feeder holds
    late = make_problem(
        {"grid": {"import_limit_kw": 30}, "chargers": [{"id": "wb", "max_kw": 7.0, "kind": "ac"}]},
        [2.0] * STEPS,
        sessions=[
            {"session_id": "late", "arrival": 10, "departure": 12, "energy_kwh": 40, "max_kw": 7.0, "charger_id": "wb"}
        ],
    )
    problems = {**problems, "late": late}
    plan = decomposition.solve(problems, feeders, [])
    mono = MonolithicSolver(time_limit_seconds=60).solve(problems, feeders, [])
    assert plan.method == METHOD, decomposition.stats.fallback_reason
    assert plan.relaxed == mono.relaxed == ("shortfall",)
    assert plan.sites["late"].plan.relaxation.ev_shortfall_kwh == pytest.approx(
        mono.sites["late"].plan.relaxation.ev_shortfall_kwh
    )
    assert (cost_term(plan) - cost_term(mono)) / abs(cost_term(mono)) <= GAP + mono.gap


def test_mismatched_horizons_are_invalid_input(decomposition: DecompositionSolver) -> None:
    problems, feeders, _ = random_portfolio(11, 5, 0)
    short = make_problem({"grid": {}}, [1.0] * (STEPS - 1))
    with pytest.raises(InvalidInput):
        decomposition.solve({**problems, "short": short}, feeders, [])


def test_workers_keep_their_models_between_rounds() -> None:
    """Pricing changes only the prices: the models loaded once are the ones re-solved."""
    problems, _, _ = random_portfolio(12, 4, 1)
    batch = SiteBatch()
    alone = batch.load(list(problems.items()))
    models = {sid: id(site.pricing) for sid, site in batch.sites.items()}
    rows = np.arange(STEPS)
    batch.link({a.site_id: (i, (Link(rows, np.arange(STEPS), True),), a.bound) for i, a in enumerate(alone)})
    unchanged = batch.price(np.zeros(STEPS))
    assert len(unchanged.solved) == 0  # no price moved: nothing is re-solved
    mu = np.zeros(STEPS)
    mu[:7] = 0.5  # night import now dear
    priced = batch.price(mu)
    assert len(priced.solved) == len(problems)
    assert {sid: id(site.pricing) for sid, site in batch.sites.items()} == models
    for k, gid in enumerate(priced.solved):
        sid = batch.linked[int(gid)]
        before = next(a for a in alone if a.site_id == sid)
        # the optimum at higher prices costs no less, and draws no more at the dear steps
        assert priced.z[list(priced.ids).index(gid)] >= before.bound - 1e-9
        assert (priced.imports[k][:7] - priced.exports[k][:7]).sum() <= (
            before.grid_import[:7] - before.grid_export[:7]
        ).sum() + 1e-6


# -- choosing the solver ----------------------------------------------------------------------


def test_the_config_names_the_solver() -> None:
    assert isinstance(make_solver(SolverConfig(method="monolithic")), MonolithicSolver)
    decomposed = make_solver(
        SolverConfig(method="decomposition", gap=0.01, max_iterations=7, ray_address="ray://nowhere:10001")
    )
    assert isinstance(decomposed, DecompositionSolver)
    assert (decomposed.gap, decomposed.max_iterations, decomposed.address) == (0.01, 7, "ray://nowhere:10001")
    auto = make_solver()
    assert (
        isinstance(auto, AutoSolver)
        and auto.max_sites == MONOLITHIC_MAX_SITES
        and auto.max_sites_peak == MONOLITHIC_MAX_SITES_PEAK
    )
    with pytest.raises(ValueError):
        SolverConfig(method="admm")
    with pytest.raises(ValueError):
        SolverConfig(gap=0)
    with pytest.raises(ValueError):
        SolverConfig(threads=4)  # unknown keys are refused


def test_auto_picks_the_monolithic_solve_up_to_the_threshold() -> None:
    built: list[DecompositionSolver] = []

    def decomposition() -> DecompositionSolver:
        built.append(DecompositionSolver(use_ray=False))
        return built[-1]

    auto = AutoSolver(MonolithicSolver(), decomposition, max_sites=3)
    assert isinstance(auto.pick(3), MonolithicSolver) and not built  # Ray never started for small portfolios
    assert auto.pick(4) is built[0] and auto.pick(400) is built[0]
    problems, feeders, _ = random_portfolio(13, 5, 0)
    assert auto.solve(problems, feeders, []).method == METHOD
    small = dict(list(problems.items())[:3])
    assert auto.solve(small, [], []).method == "monolithic"
    # a coincident-peak charge couples every site: its threshold is its own
    peaked = AutoSolver(MonolithicSolver(), decomposition, max_sites=3, max_sites_peak=5)
    assert isinstance(peaked.pick(5, peak=True), MonolithicSolver) and peaked.pick(4) is peaked.decomposition
    assert (
        peaked.solve(dict(list(problems.items())[:5]), [], [], coincident_peak_price_per_kw=2.0).method == "monolithic"
    )


# -- the coincident-peak charge ---------------------------------------------------------------


def portfolio_peak_of(plan: PortfolioPlan) -> float:
    return max(0.0, float(sum(net(part.plan.schedule) for part in plan.sites.values()).max()))


@pytest.mark.parametrize(
    ("seed", "sites", "depots", "price", "with_feeders"),
    [
        (33, 5, 1, 2.0, True),
        (14, 6, 1, 2.0, True),
        (2, 8, 0, 0.5, True),
        (25, 9, 1, 5.0, False),
        (6, 10, 3, 10.0, True),
        (21, 12, 1, 5.0, True),
        (4, 16, 1, 0.3, True),
        (17, 18, 2, 5.0, True),
        (16, 20, 0, 3.0, False),
    ],
)
def test_random_portfolios_with_a_peak_charge_reach_the_monolithic_optimum_within_the_gap(
    decomposition: DecompositionSolver, seed: int, sites: int, depots: int, price: float, with_feeders: bool
) -> None:
    problems, feeders, events = random_portfolio(seed, sites, depots)
    feeders = feeders if with_feeders else []
    events = [e for e in events if e.kind is FlexKind.CAP_AT]  # a REDUCE_BY at night is rarely servable here
    mono = MonolithicSolver(time_limit_seconds=60).solve(problems, feeders, events, coincident_peak_price_per_kw=price)
    assert mono.relaxed == (), "the case must be servable to compare the decomposition itself"
    plan = decomposition.solve(problems, feeders, events, coincident_peak_price_per_kw=price)
    assert plan.method == METHOD, decomposition.stats.fallback_reason
    optimum = cost_term(mono)
    # as without the charge: a certified bound below the optimum, a plan no better than it
    assert plan.bound <= optimum + 1e-6 * abs(optimum)
    assert cost_term(plan) >= mono.bound - 1e-6 * abs(optimum)
    assert (cost_term(plan) - optimum) / abs(optimum) <= GAP + mono.gap
    assert plan.status == ("optimal" if plan.gap <= GAP else "time_limit")
    assert plan.gap <= GAP or depots
    assert plan.gap == pytest.approx((cost_term(plan) - plan.bound) / abs(cost_term(plan)), abs=1e-12)
    # the charge is the one of the pushed schedules, and every objective carries it
    assert plan.peak_kw == pytest.approx(portfolio_peak_of(plan), abs=1e-9)
    assert plan.peak_charge == pytest.approx(price * plan.peak_kw)
    assert plan.objective == pytest.approx(sum(s.coupled_cost for s in plan.sites.values()) + plan.peak_charge)
    assert plan.objective == pytest.approx(cost_term(plan), rel=1e-9)  # every site weighs cost alone
    assert plan.alone_objective == pytest.approx(mono.alone_objective, rel=1e-9)
    assert plan.alone_peak_kw == pytest.approx(mono.alone_peak_kw, rel=1e-9)
    # the charge is worth paying attention to here: the sites alone would peak well above the plan
    assert plan.peak_kw < 0.95 * plan.alone_peak_kw and plan.coupling_cost < 0
    assert decomposition.stats.max_coupling_violation_kw <= CHECK_KW
    assert_plan_keeps_everything(problems, feeders, events, plan)


def test_a_peak_coupled_lp_site_keeps_its_own_relaxation(decomposition: DecompositionSolver) -> None:
    """The peak couples every site, the late car's too; an LP site in no cap or target row keeps
    its own relaxation (as in the monolithic order) instead of sending the solve there."""
    problems, feeders, _ = random_portfolio(10, 6, 1)
    late = make_problem(
        {"grid": {"import_limit_kw": 30}, "chargers": [{"id": "wb", "max_kw": 7.0, "kind": "ac"}]},
        [2.0] * STEPS,
        sessions=[
            {"session_id": "late", "arrival": 10, "departure": 12, "energy_kwh": 40, "max_kw": 7.0, "charger_id": "wb"}
        ],
    )
    problems = {**problems, "late": late}
    plan = decomposition.solve(problems, feeders, [], coincident_peak_price_per_kw=2.0)
    mono = MonolithicSolver(time_limit_seconds=60).solve(problems, feeders, [], coincident_peak_price_per_kw=2.0)
    assert plan.method == METHOD, decomposition.stats.fallback_reason
    assert plan.relaxed == mono.relaxed == ("shortfall",)
    assert plan.sites["late"].plan.relaxation.ev_shortfall_kwh == pytest.approx(
        mono.sites["late"].plan.relaxation.ev_shortfall_kwh, rel=1e-6
    )
    assert (cost_term(plan) - cost_term(mono)) / abs(cost_term(mono)) <= GAP + mono.gap
    assert plan.bound <= cost_term(mono) + 1e-6 * abs(cost_term(mono))


def test_smoothed_peak_prices_are_scaled_into_the_set_where_the_bound_is_valid() -> None:
    """min over P >= 0 of (p − Σ π)·P is −inf once the peak rows' prices sum past p: the block
    scales them back before pricing, and a point outside never yields a finite bound."""
    rows = np.arange(4)
    block = _Block(
        np.array([0]),
        rows,
        np.array([50.0, 0.0, 0.0, 0.0]),
        {0: rows},
        np.zeros(1),
        peak=np.array([1, 2, 3]),
        price=2.0,
    )
    mu = np.array([0.7, 1.5, 0.5, 2.0])  # the peak rows' sum to 4: twice the price
    fixed = block.dual_feasible(mu)
    assert fixed[0] == 0.7  # a cap row's price is left alone
    np.testing.assert_allclose(fixed[1:], [0.75, 0.25, 1.0])  # same shape, sum p
    assert block.dual_feasible(fixed) is fixed  # inside: unchanged
    assert block._peak_term(fixed) == 0.0 and block._peak_term(mu) == -math.inf
