"""The relaxation driver's order of stages, on a scripted engine (pure logic)."""

from __future__ import annotations

from sitenode.optimizer.lexicographic import (
    COST,
    OVER,
    RELAXATION_ORDER,
    SHORTFALL,
    solve_lexicographic,
)
from sitenode.optimizer.result import SolverStatus, StageOutcome


class Scripted:
    """Answers each run with the next scripted status; relaxation terms come out at 1.0."""

    def __init__(self, statuses: list[SolverStatus]) -> None:
        self.statuses = statuses
        self.runs: list[str] = []
        self.caps: list[str] = []

    def minimize(self, term: str) -> None:
        pass

    def hold_slacks_at_zero(self, held: bool) -> None:
        pass

    def cap(self, term: str, upper: float) -> None:
        self.caps.append(term)

    def run(self, stage: str, time_limit_seconds: float, warm_start: bool) -> StageOutcome:
        self.runs.append(stage)
        status = self.statuses[len(self.runs) - 1]
        value = 1.0 if status.has_solution else float("nan")
        return StageOutcome(stage, status, value, value, 0.0, 0.0)

    def current_value(self, term: str) -> float:
        return 1.0


def test_a_program_that_cannot_be_served_runs_every_stage_in_order() -> None:
    engine = Scripted([SolverStatus.INFEASIBLE] + [SolverStatus.OPTIMAL] * 4)
    stages, relaxed = solve_lexicographic(engine, 10.0)
    assert engine.runs == [COST, *RELAXATION_ORDER, COST]
    assert relaxed == RELAXATION_ORDER and engine.caps == list(RELAXATION_ORDER)
    assert [s.stage for s in stages] == engine.runs


def test_running_out_of_time_without_a_plan_is_not_a_reason_to_relax() -> None:
    # both engines report a time limit reached with no feasible plan as ERROR
    engine = Scripted([SolverStatus.ERROR])
    stages, relaxed = solve_lexicographic(engine, 10.0)
    assert engine.runs == [COST] and relaxed == () and stages[-1].status is SolverStatus.ERROR


def test_an_unknown_end_still_tries_the_relaxed_program() -> None:
    # HiGHS ends "unknown" on numerical trouble, not for lack of time: the relaxed program may solve
    engine = Scripted([SolverStatus.UNKNOWN] + [SolverStatus.OPTIMAL] * 4)
    _, relaxed = solve_lexicographic(engine, 10.0)
    assert engine.runs == [COST, *RELAXATION_ORDER, COST] and relaxed == RELAXATION_ORDER


def test_a_stage_without_a_plan_ends_the_order_there() -> None:
    engine = Scripted([SolverStatus.INFEASIBLE, SolverStatus.OPTIMAL, SolverStatus.ERROR])
    stages, relaxed = solve_lexicographic(engine, 10.0)
    assert engine.runs == [COST, OVER, SHORTFALL] and relaxed == (OVER,)
    assert stages[-1].status is SolverStatus.ERROR
