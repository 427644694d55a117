"""Solver outcomes as gridmesh's own types: nothing else in the project touches solver objects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class SolverStatus(StrEnum):
    OPTIMAL = "optimal"
    TIME_LIMIT = "time_limit"  # a feasible plan, not proven optimal within the gap
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    ERROR = "error"
    UNKNOWN = "unknown"

    @property
    def has_solution(self) -> bool:
        return self in (SolverStatus.OPTIMAL, SolverStatus.TIME_LIMIT)


@dataclass(frozen=True)
class StageOutcome:
    """One solver run: which objective it minimized and what came back."""

    stage: str
    status: SolverStatus
    objective: float
    bound: float
    gap: float
    seconds: float


@dataclass(frozen=True)
class SolveResult:
    """How a plan was found, and what each part of finding it cost."""

    status: SolverStatus
    objective: float
    bound: float
    gap: float
    build_seconds: float  # formulation, matrix assembly and hand-over to the solver
    solve_seconds: float  # wall time of the solver calls
    extract_seconds: float  # solution back to a schedule
    highs_seconds: float  # HiGHS's own run time (getRunTime), summed over stages
    num_cols: int
    num_rows: int
    num_nonzeros: int
    num_integer: int
    engine: str
    solver_version: str
    time_limit_seconds: float | None = None
    mip_rel_gap: float | None = None
    stages: tuple[StageOutcome, ...] = field(default_factory=tuple)

    @property
    def total_seconds(self) -> float:
        return self.build_seconds + self.solve_seconds + self.extract_seconds

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = str(self.status)
        out["stages"] = [{**asdict(s), "status": str(s.status)} for s in self.stages]
        out["total_seconds"] = self.total_seconds
        return out
