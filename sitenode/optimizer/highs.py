"""The only module that touches highspy: load a `Matrix`, swap objectives, add caps, run;
and, for the portfolio's column generation, change costs, bounds, columns and rows in place.

One tolerance profile for every solve, set here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys

import highspy
import numpy as np

from sitenode.optimizer.lp import Matrix
from sitenode.optimizer.result import SolverStatus, StageOutcome

log = logging.getLogger(__name__)

_STATUS = {
    "Optimal": SolverStatus.OPTIMAL,
    "Time limit reached": SolverStatus.TIME_LIMIT,
    "Infeasible": SolverStatus.INFEASIBLE,
    "Primal infeasible or unbounded": SolverStatus.INFEASIBLE,
    "Unbounded": SolverStatus.UNBOUNDED,
}


def _first_instance_quietly() -> highspy.Highs:
    """Make the process's first Highs with file descriptor 1 pointed at /dev/null.

    highspy 1.16 writes its banner straight to the C stdout when the first instance of a
    process is built, before any option can turn output off; a service's stdout carries its
    own startup lines (which tests and supervisors read), so the banner must not reach it.
    """
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        return highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


VERSION = f"HiGHS {_first_instance_quietly().version()}"
_CAP_ROOM = 1e-7


class HighsModel:
    """A loaded program that can be re-solved under other objectives and extra cap rows."""

    def __init__(
        self, m: Matrix, *, time_limit_seconds: float | None = None, mip_rel_gap: float | None = None, threads: int = 1
    ) -> None:
        self._h = highspy.Highs()
        h = self._h
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", threads)
        h.setOptionValue("primal_feasibility_tolerance", 1e-7)
        h.setOptionValue("dual_feasibility_tolerance", 1e-7)
        # The MIP's own feasibility tolerance (1e-6 by default) must not be looser than the
        # LP's: with the tight caps a lexicographic stage adds (`add_cap`), HiGHS 1.16's MIP
        # without presolve then propagated the optimum away and proved a worse plan optimal
        # (a battery cycled for nothing, +10 % cost, on a 40-column site).
        h.setOptionValue("mip_feasibility_tolerance", 1e-7)
        if time_limit_seconds is not None:
            h.setOptionValue("time_limit", float(time_limit_seconds))
        if mip_rel_gap is not None:
            h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        self.has_integers = bool(m.integrality.any())
        args = (
            m.num_cols,
            m.num_rows,
            m.num_nonzeros,
            1,
            1,
            0.0,
            np.zeros(m.num_cols),
            np.ascontiguousarray(m.col_lower),
            np.ascontiguousarray(m.col_upper),
            np.ascontiguousarray(m.row_lower),
            np.ascontiguousarray(m.row_upper),
            m.starts[:-1].astype(np.int32),
            m.indices,
            m.values,
        )
        h.passModel(*args, m.integrality.astype(np.int32))
        self._upper = np.ascontiguousarray(m.col_upper, dtype=float)
        self._lower = np.ascontiguousarray(m.col_lower, dtype=float)
        self.num_cols = m.num_cols

    def set_objective(self, cost: np.ndarray) -> None:
        idx = np.arange(self.num_cols, dtype=np.int32)
        self._h.changeColsCost(self.num_cols, idx, np.ascontiguousarray(cost, dtype=float))

    def fix_zero(self, cols: np.ndarray) -> None:
        """Hold `cols` at 0 (slacks in the first, slack-free attempt)."""
        if len(cols):
            zero = np.zeros(len(cols))
            self._h.changeColsBounds(len(cols), cols.astype(np.int32), zero, zero)

    def release(self, cols: np.ndarray) -> None:
        if len(cols):
            c = cols.astype(np.int32)
            self._h.changeColsBounds(len(c), c, self._lower[c], self._upper[c])

    def add_cap(self, cost: np.ndarray, upper: float) -> None:
        """Row `cost·x <= upper`: a lexicographic stage's optimum held for the next stages.

        HiGHS keeps each row only to within its tolerance, so a stage's optimum read off its
        solution can lie a little below what the next solve can reach: held exactly, it has
        made the next stage "infeasible". The cap leaves room of _CAP_ROOM (relative), far
        below anything a plan reports.
        """
        nz = np.flatnonzero(cost)
        upper = float(upper) + _CAP_ROOM * max(1.0, abs(float(upper)))
        self._h.addRow(-highspy.kHighsInf, upper, len(nz), nz.astype(np.int32), cost[nz].astype(float))

    def run(self, stage: str, time_limit_seconds: float | None = None, start: np.ndarray | None = None) -> StageOutcome:
        """Solve under the current objective; `start` is a feasible point to begin from.

        A `start` comes with the caps that hold earlier stages' optima, tight by design.
        HiGHS's MIP presolve mishandles a start on such a program: it has called the program
        infeasible and handed the start back as "optimal" without a bound, and it has proved
        a wrong optimum. So a MIP re-solve skips presolve; an LP keeps it, and is solved
        once more without it if presolve calls infeasible what `start` satisfies.
        """
        keep_presolve = start is None or not self.has_integers
        outcome = self._solve(stage, time_limit_seconds, start, keep_presolve)
        if keep_presolve and start is not None and not outcome.status.has_solution:
            left = None if time_limit_seconds is None else time_limit_seconds - outcome.seconds
            again = self._solve(stage, left, start, False)
            outcome = dataclasses.replace(again, seconds=outcome.seconds + again.seconds)
        return outcome

    def _solve(
        self, stage: str, time_limit_seconds: float | None, start: np.ndarray | None, presolve: bool
    ) -> StageOutcome:
        h = self._h
        h.setOptionValue("presolve", "choose" if presolve else "off")
        if time_limit_seconds is not None:
            # HiGHS measures time_limit on its run clock, which keeps counting over every
            # run of this instance: the budget is set from where that clock stands now
            h.setOptionValue("time_limit", h.getRunTime() + max(float(time_limit_seconds), 0.05))
        if start is not None and self.has_integers:
            solution = highspy.HighsSolution()
            solution.col_value = list(start)
            solution.value_valid = True
            h.setSolution(solution)
        before = h.getRunTime()
        h.run()
        status = _STATUS.get(h.modelStatusToString(h.getModelStatus()), SolverStatus.UNKNOWN)
        info = h.getInfo()
        if status is SolverStatus.TIME_LIMIT and info.primal_solution_status != 2:
            status = SolverStatus.ERROR  # out of time without any feasible plan
        objective = float(info.objective_function_value) if status.has_solution else float("nan")
        if self.has_integers and status.has_solution:
            bound, gap = float(info.mip_dual_bound), float(info.mip_gap)
        else:
            bound, gap = objective, 0.0
        return StageOutcome(stage, status, objective, bound, gap, float(h.getRunTime() - before))

    def values(self) -> np.ndarray:
        return np.asarray(self._h.getSolution().col_value)

    # -- in place: what column generation needs (portfolio.decomposition) -------------------
    # A decomposition keeps one loaded model per site and per master for a whole solve and
    # changes it between re-solves; these keep highspy behind this module.

    def set_costs(self, cols: np.ndarray, cost: np.ndarray) -> None:
        """Change the objective coefficients of `cols` only (the rest stay)."""
        self._h.changeColsCost(len(cols), cols.astype(np.int32), np.ascontiguousarray(cost, dtype=float))

    def resolve(self, *, primal: bool = True) -> SolverStatus:
        """Re-solve an LP from the current basis (presolve would throw the basis away).

        Primal simplex after a cost change (the basis stays primal feasible), dual simplex
        after a bound change. OPTIMAL, INFEASIBLE or ERROR.

        No time limit: the caller bounds its own loop, and a limit left over from a staged
        solve of this model (`run`) counts on HiGHS's run clock, which keeps running over
        every re-solve: after enough rounds every re-solve would stop at once. A warm
        re-solve that ends neither optimal nor infeasible (HiGHS's "Unknown" after a stall)
        is solved once more from scratch before it counts as an error.
        """
        h = self._h
        h.setOptionValue("presolve", "off")
        h.setOptionValue("time_limit", math.inf)
        h.setOptionValue("simplex_strategy", 4 if primal else 1)
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        if status != "Optimal" and "nfeasible" not in status:
            log.warning("warm LP re-solve ended %r; solving from scratch", status)
            h.clearSolver()
            h.setOptionValue("simplex_strategy", 1)
            h.run()
            status = h.modelStatusToString(h.getModelStatus())
        return (
            SolverStatus.OPTIMAL
            if status == "Optimal"
            else SolverStatus.INFEASIBLE
            if "nfeasible" in status
            else SolverStatus.ERROR
        )

    def objective(self) -> float:
        """The objective of the last solve."""
        return float(self._h.getInfo().objective_function_value)

    def row_duals(self) -> np.ndarray:
        """HiGHS's row duals of the last LP solve: d(objective)/d(row bound)."""
        return np.asarray(self._h.getSolution().row_dual)

    def add_columns(self, cost: np.ndarray, starts: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
        """Columns >= 0 (unbounded above) with CSC entries in existing rows."""
        n = len(cost)
        self._h.addCols(
            n,
            np.ascontiguousarray(cost, dtype=float),
            np.zeros(n),
            np.full(n, np.inf),
            len(values),
            starts.astype(np.int32),
            indices.astype(np.int32),
            np.ascontiguousarray(values, dtype=float),
        )
        self.num_cols += n

    def add_rows(self, upper: np.ndarray, starts: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
        """Rows `a·x <= upper` (CSR entries over existing columns)."""
        n = len(upper)
        self._h.addRows(
            n,
            np.full(n, -np.inf),
            np.ascontiguousarray(upper, dtype=float),
            len(values),
            starts.astype(np.int32),
            indices.astype(np.int32),
            np.ascontiguousarray(values, dtype=float),
        )

    def num_rows(self) -> int:
        return int(self._h.getNumRow())

    def set_col_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """New bounds of `cols` (unlike `fix_zero`, `release` does not undo this)."""
        self._h.changeColsBounds(
            len(cols),
            cols.astype(np.int32),
            np.ascontiguousarray(lower, dtype=float),
            np.ascontiguousarray(upper, dtype=float),
        )

    def set_row_upper(self, rows: np.ndarray, upper: np.ndarray) -> None:
        """New upper bounds of "<=" rows (their lower bound stays -inf)."""
        n = len(rows)
        # highspy's stubs omit changeRowsBounds, which its _core binds (as changeColsBounds)
        self._h.changeRowsBounds(  # type: ignore[attr-defined]
            n, rows.astype(np.int32), np.full(n, -np.inf), np.ascontiguousarray(upper, dtype=float)
        )
