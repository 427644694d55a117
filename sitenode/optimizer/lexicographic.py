"""The relaxation order, once, for any engine that can swap objectives and add caps.

Order (shared/BUNDLE.md), each stage holding the optimum of the ones before it, so a
relaxation is never traded against cost:

0. ``over``      import/export beyond limit and margin (only when fixed load forces it),
1. ``shortfall`` energy not served, weighted by priority (`run_config.priorities`, see
                 `formulation`): EV energy short of a session's need, flexible loads
                 below their `min_kw`, the battery's final SOC below its target. One
                 weighted term, so the priorities decide who gives way *within* it (a
                 weighting, ten times per class, not a strict order: the portfolio sums
                 this term over sites whose priorities differ); fixed load and export
                 cannot fall short, so their priorities do not enter it,
2. ``breach``    import-limit breach within `breach_margin`,
3. ``cost``      the weighted objective.

The first attempt holds every slack at zero and minimizes cost directly: whenever a
plan without relaxation exists that single solve is the lexicographic optimum, and
only a site that cannot be served pays for the extra stages — so priorities never
change a plan that serves everyone. All stages of a MIP share one time budget; a first
attempt that runs out of it with no plan ends the solve there (status error: no plan in
time), since the program was not shown to need relaxing.
"""

from __future__ import annotations

import time
from typing import Protocol

from sitenode.optimizer.result import SolverStatus, StageOutcome

COST, OVER, SHORTFALL, BREACH = "cost", "over", "shortfall", "breach"
RELAXATION_ORDER = (OVER, SHORTFALL, BREACH)


class StagedModel(Protocol):
    """What an engine offers the driver. Objective terms are named as above."""

    def minimize(self, term: str) -> None: ...
    def hold_slacks_at_zero(self, held: bool) -> None: ...
    def cap(self, term: str, upper: float) -> None: ...
    def run(self, stage: str, time_limit_seconds: float, warm_start: bool) -> StageOutcome: ...
    def current_value(self, term: str) -> float: ...


def cap_for(optimum: float) -> float:
    # tight: whatever a stage leaves in its tolerance, a later stage may trade away
    return max(optimum, 0.0) + 1e-8 * max(1.0, abs(optimum))


def solve_lexicographic(
    model: StagedModel, time_limit_seconds: float, order: tuple[str, ...] = RELAXATION_ORDER
) -> tuple[list[StageOutcome], tuple[str, ...]]:
    """Run the stages; return every solver run and the terms that had to be relaxed.

    `order` names the relaxation terms, most important first; a site uses RELAXATION_ORDER,
    the portfolio appends its own terms (see `portfolio.coupled`).
    """
    started = time.perf_counter()

    def remaining() -> float:
        return time_limit_seconds - (time.perf_counter() - started)

    model.minimize(COST)
    model.hold_slacks_at_zero(True)
    stages = [model.run(COST, remaining(), False)]
    if stages[0].status.has_solution:
        return stages, ()
    if stages[0].status is SolverStatus.ERROR:
        # out of time before any plan is not "cannot be served": the stages below
        # would each start over on the same program with no time left, and a large MIP's
        # root work does not stop at a limit (a 100-site portfolio spent minutes past its own)
        return stages, ()
    model.hold_slacks_at_zero(False)
    relaxed: list[str] = []
    have_incumbent = False
    for term in order:
        if have_incumbent and model.current_value(term) <= 1e-9:
            # slacks are >= 0, so a plan that already needs none of this one is optimal for it
            model.cap(term, cap_for(0.0))
            continue
        model.minimize(term)
        outcome = model.run(term, remaining(), have_incumbent)
        stages.append(outcome)
        if not outcome.status.has_solution:
            return stages, tuple(relaxed)
        if outcome.objective > 1e-6:
            relaxed.append(term)
        have_incumbent = True
        model.cap(term, cap_for(outcome.objective))
    model.minimize(COST)
    stages.append(model.run(COST, remaining(), have_incumbent))
    return stages, tuple(relaxed)
